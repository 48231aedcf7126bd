"""The demo app (the README's "try it" command) under a real server."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from servers import run_server
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ws_diag.demo import DEMO_SECRET, build_app

pytestmark = pytest.mark.asyncio


async def http(port: int, method: str, path: str) -> tuple[int, bytes]:
    """A minimal HTTP/1.1 request."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
    response = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def session(url: str) -> tuple[int | None, list[Any]]:
    """Send one message; collect JSON messages until the close."""
    messages = []
    async with connect(url, open_timeout=10, close_timeout=10) as ws:
        with contextlib.suppress(ConnectionClosed):  # a pre-accept failure may close first
            await ws.send("hello")
        try:
            while True:
                messages.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        except ConnectionClosed:
            pass
        return ws.close_code, messages


@pytest.mark.parametrize(
    ("fail", "code", "component"),
    [
        ("database", 4005, "Database"),
        ("auth", 4002, "Authentication"),
        ("crash", 1011, "Generic Internal"),
        ("probe", 1011, "Generic Internal"),
    ],
)
async def test_demo_failures(fail: str, code: int, component: str) -> None:
    """Each demo failure reaches the client as the documented code and component, with no secret."""
    async with run_server(build_app(), "hypercorn") as url:
        close_code, messages = await session(f"{url}/ws?fail={fail}")
    assert close_code == code
    frames = [m["error"] for m in messages if m.get("type") == "error"]
    assert [f["component"] for f in frames] == [component]
    assert DEMO_SECRET not in json.dumps(messages)


async def test_demo_broken_probe_is_blamed() -> None:
    """After breaking the database probe from the page, an ambiguous failure is diagnosed as 4005."""
    async with run_server(build_app(), "hypercorn") as url:
        port = int(url.rsplit(":", 1)[1])
        assert (await http(port, "POST", "/break/database"))[0] == 200
        status, body = await http(port, "GET", "/health")
        assert status == 503
        assert json.loads(body)["failed_components"] == ["database"]
        close_code, _ = await session(f"{url}/ws?fail=probe")
        assert close_code == 4005
        assert (await http(port, "DELETE", "/break/database"))[0] == 200


async def test_demo_serves_page_and_helper() -> None:
    """The page and the browser helper module are served."""
    async with run_server(build_app(), "hypercorn") as url:
        port = int(url.rsplit(":", 1)[1])
        status, page = await http(port, "GET", "/")
        assert status == 200
        assert b"ws_diag demo" in page
        status, script = await http(port, "GET", "/ws-diag.js")
        assert status == 200
        assert b"export function explain" in script


async def test_demo_healthy_echo() -> None:
    """The healthy mode echoes and is not touched."""
    async with run_server(build_app(), "uvicorn-wsproto") as url, connect(f"{url}/ws", open_timeout=10) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
        await ws.send("ping")
        assert json.loads(await ws.recv()) == {"type": "echo", "text": "ping"}
