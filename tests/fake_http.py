"""A fake HTTP dependency for tests: real sockets on loopback, answers chosen by path.

``/status/N/...`` answers status N with a JSON error body in the shape the LLM
SDKs parse; ``/redirect`` answers 302 to the ``to`` query parameter; anything
else answers 200. Every request's path is recorded in ``hits``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from servers import run_server

__all__ = ["FakeHttp", "fake_http", "garbage_http"]


@dataclass
class FakeHttp:
    """A running fake server: its base URL and the requests it saw."""

    url: str = ""
    hits: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The ASGI app."""
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        while (await receive()).get("more_body"):
            pass
        path: str = scope["path"]
        self.hits.append(path)
        self.headers.append({k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]})
        parts = path.split("/")
        status = int(parts[2]) if len(parts) > 2 and parts[1] == "status" else 200
        headers = [(b"content-type", b"application/json")]
        if parts[1] == "redirect":
            status = 302
            target = parse_qs(scope["query_string"].decode())["to"][0]
            headers.append((b"location", target.encode()))
        body = json.dumps({"type": "error", "error": {"type": "test_error", "message": "fake", "code": None}}).encode()
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def fake_http() -> AsyncIterator[FakeHttp]:
    """Serve a :class:`FakeHttp` with hypercorn on a free loopback port."""
    app = FakeHttp()
    async with run_server(app, "hypercorn") as url:
        app.url = url.replace("ws://", "http://")
        yield app


@contextlib.asynccontextmanager
async def garbage_http() -> AsyncIterator[str]:
    """A TCP server that answers any request with bytes that are not HTTP, then closes; yields its URL."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()
