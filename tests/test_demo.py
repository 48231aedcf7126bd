"""The demo app (the README's "try it" command) under a real server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

import pytest
from servers import SERVER_KINDS, run_server
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ws_diag import DiagSettings
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


async def test_demo_break_state_names_the_embedded_probes() -> None:
    """GET /break lists the probes the page may break and those broken; POST and DELETE answer the same shape."""
    async with run_server(build_app(), "hypercorn") as url:
        port = int(url.rsplit(":", 1)[1])
        status, body = await http(port, "GET", "/break")
        assert (status, json.loads(body)) == (200, {"breakable": ["database", "redis"], "broken": []})
        status, body = await http(port, "POST", "/break/redis")
        assert (status, json.loads(body)) == (200, {"breakable": ["database", "redis"], "broken": ["redis"]})
        status, body = await http(port, "DELETE", "/break/redis")
        assert (status, json.loads(body)) == (200, {"breakable": ["database", "redis"], "broken": []})
        status, body = await http(port, "POST", "/break/nothing")
        assert status == 404
        assert json.loads(body) == {"error": "no embedded probe by that name"}  # the path is not echoed


async def test_demo_cannot_break_a_configured_real_server() -> None:
    """With a real Redis configured the page may break only the database probe; /break/redis is refused (404)."""
    settings = DiagSettings(health_path="/health", cache_ttl=0.5, redis_url="redis://127.0.0.1:1/0")
    async with run_server(build_app(settings), "hypercorn") as url:
        port = int(url.rsplit(":", 1)[1])
        status, body = await http(port, "GET", "/break")
        assert (status, json.loads(body)) == (200, {"breakable": ["database"], "broken": []})
        assert (await http(port, "POST", "/break/redis"))[0] == 404


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


async def wait_for_records(caplog: pytest.LogCaptureFixture, text: str, count: int, limit_s: float = 10) -> None:
    """Poll the captured records until ``count`` of them contain ``text``, for at most ``limit_s`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while sum(text in r.getMessage() for r in caplog.records) < count:
        assert loop.time() < deadline, f"fewer than {count} records with {text!r}: {caplog.text}"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_demo_sessions_log_no_errors(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """A healthy echo session and a client that drops its connection end without an ERROR record or traceback."""
    caplog.set_level(logging.DEBUG)
    async with run_server(build_app(), kind) as url:
        async with connect(f"{url}/ws", open_timeout=10, close_timeout=10) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "hello"
            await ws.send("ping")
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "echo", "text": "ping"}
        async with connect(f"{url}/ws", open_timeout=10, close_timeout=10) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "hello"
            ws.transport.abort()  # the client vanishes: no close frame
        await wait_for_records(caplog, "session ended: the client left", 2)
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert bad == [], caplog.text


# -- the demo as a person runs it: ``ws-diag demo`` in a terminal ------------------------------------

START_S = 30  # imports on a cold, busy machine
STOP_S = 10


class Terminal:
    """``python -m ws_diag demo ARGS`` in a subprocess; its stdout and stderr, merged, read by a thread."""

    def __init__(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WS_DIAG_")}
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._ended = False
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ws_diag", "demo", *args],
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, name="demo-terminal", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        try:
            for line in self.process.stdout:
                with self._changed:
                    self.lines.append(line.rstrip("\n"))
                    self._changed.notify_all()
        finally:
            with self._changed:
                self._ended = True
                self._changed.notify_all()

    def wait_for(self, pattern: str, count: int = 1, limit_s: float = 10) -> re.Match[str]:
        """The ``count``-th line matching ``pattern``, waiting at most ``limit_s`` seconds for it."""
        compiled = re.compile(pattern)
        found: list[re.Match[str]] = []

        def seen() -> bool:
            found[:] = [m for m in map(compiled.search, self.lines) if m]
            return len(found) >= count or self._ended

        with self._changed:
            self._changed.wait_for(seen, limit_s)
        assert len(found) >= count, f"no {pattern!r} (x{count}) in the terminal:\n" + "\n".join(self.lines)
        return found[count - 1]

    def stop(self) -> int:
        """Ctrl+C, as a person would; SIGKILL if it has not exited in time. Returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(STOP_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_S)
        self._reader.join(STOP_S)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode


async def test_demo_terminal_stays_clean() -> None:
    """ws-diag demo: an echo session and a client leaving print timestamped lines, no ERROR and no traceback."""
    terminal = Terminal("--port", "0")
    try:
        url = await asyncio.to_thread(terminal.wait_for, r"open (http://127\.0\.0\.1:\d+)/", 1, START_S)
        ws_url = url.group(1).replace("http", "ws", 1)
        async with connect(f"{ws_url}/ws", open_timeout=10, close_timeout=10) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "hello"
            await ws.send("ping")
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "echo"
        async with connect(f"{ws_url}/ws", open_timeout=10, close_timeout=10) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "hello"
            ws.transport.abort()
        await asyncio.to_thread(terminal.wait_for, r"session ended: the client left", 2)
    finally:
        status = await asyncio.to_thread(terminal.stop)
    output = "\n".join(terminal.lines)
    assert status == 0, output
    assert "ERROR" not in output
    assert "Traceback" not in output
    logged = terminal.lines[1:]  # after the "open http://..." line
    assert len(logged) >= 4, output  # the server's start, two sessions opened, two ended
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (INFO|WARNING) ", line) for line in logged), output


async def test_demo_busy_port_says_use_port() -> None:
    """On a port already in use, ws-diag demo exits 1 with one line suggesting --port, not a traceback."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "ws_diag", "demo", "--port", str(port)],
            env={k: v for k, v in os.environ.items() if not k.startswith("WS_DIAG_")},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=START_S,
            check=False,
        )
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert f"port {port}" in line
    assert "--port" in line
