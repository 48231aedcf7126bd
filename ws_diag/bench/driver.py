"""Driving an ASGI app's websocket in memory: a scope, one session of N messages, the app's lifespan.

No sockets and no server: plain async ``receive``/``send`` callables, the way uvicorn's own
websocket benchmarks drive an app.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from .._types import ASGIApp, Message, Scope

__all__ = ["LifespanError", "Session", "lifespan", "run_session", "websocket_scope"]


class LifespanError(Exception):
    """The app's lifespan startup failed or did not answer."""


def websocket_scope(path: str = "/ws", *, state: dict[str, Any] | None = None) -> Scope:
    """A websocket scope as uvicorn builds one for ``ws://127.0.0.1:8000{path}``."""
    raw_path, _, query = path.partition("?")
    scope: Scope = {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": "ws",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "root_path": "",
        "path": raw_path,
        "raw_path": raw_path.encode(),
        "query_string": query.encode(),
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"connection", b"Upgrade"),
            (b"upgrade", b"websocket"),
            (b"sec-websocket-version", b"13"),
            (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        "subprotocols": [],
        "extensions": {},
    }
    if state is not None:
        scope["state"] = state
    return scope


@dataclass
class Session:
    elapsed_ns: int
    received: int  # websocket.receive messages the app took
    sent: int  # websocket.send messages the app sent
    accepted: bool
    error: str | None


async def run_session(app: ASGIApp, scope: Scope, messages: int, text: str, limit_s: float) -> Session:
    """One websocket session: connect, ``messages`` text messages, then disconnect; timed."""
    delivered = 0
    connected = False
    gone = False
    sent = 0
    accepted = False

    async def receive() -> Message:
        nonlocal delivered, connected, gone
        if delivered < messages and connected:
            delivered += 1
            return {"type": "websocket.receive", "text": text}
        if not connected:
            connected = True
            return {"type": "websocket.connect"}
        gone = True
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: Message) -> None:
        nonlocal sent, accepted
        if message["type"] == "websocket.send":
            sent += 1
        elif message["type"] == "websocket.accept":
            accepted = True

    error: str | None = None
    started = time.perf_counter_ns()
    try:
        async with asyncio.timeout(limit_s):
            await app(scope, receive, send)
    except TimeoutError:
        error = f"the session did not end within {limit_s} s"
    except Exception as exc:
        # An exception after the disconnect is how some frameworks end a session.
        if not gone:
            error = f"the app raised {type(exc).__name__}: {exc}"
    elapsed = time.perf_counter_ns() - started
    if error is None and not accepted:
        error = f"the app did not accept the websocket at {scope['path']}"
    return Session(elapsed, delivered, sent, accepted, error)


# -- lifespan ---------------------------------------------------------------------


@contextlib.asynccontextmanager
async def lifespan(app: ASGIApp, limit_s: float = 10.0) -> AsyncIterator[dict[str, Any] | None]:
    """Run the app's lifespan startup and shutdown around the block, like uvicorn's ``lifespan="auto"``.

    Yields the lifespan state (to copy into websocket scopes), or ``None`` when
    the app does not support lifespan (it returned or raised at once).

    Raises:
        LifespanError: startup failed, or an answer did not come within ``limit_s`` seconds.
    """
    state: dict[str, Any] = {}
    to_app: asyncio.Queue[Message] = asyncio.Queue()
    from_app: asyncio.Queue[Message] = asyncio.Queue()

    async def receive() -> Message:
        return await to_app.get()

    async def send(message: Message) -> None:
        await from_app.put(message)

    scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": state}
    task: asyncio.Future[None] = asyncio.ensure_future(app(scope, receive, send))
    try:
        to_app.put_nowait({"type": "lifespan.startup"})
        reply = await _lifespan_reply(from_app, task, limit_s)
        if reply is None:  # no lifespan support
            yield None
            return
        if reply["type"] != "lifespan.startup.complete":
            msg = f"lifespan startup failed: {reply.get('message') or reply['type']}"
            raise LifespanError(msg)
        try:
            yield state
        finally:
            to_app.put_nowait({"type": "lifespan.shutdown"})
            await _lifespan_reply(from_app, task, limit_s)
    finally:
        await _settle(task, limit_s)


async def _lifespan_reply(
    replies: asyncio.Queue[Message], task: asyncio.Future[None], limit_s: float
) -> Message | None:
    """The app's next lifespan message, or ``None`` if the app ended first."""
    getter: asyncio.Future[Message] = asyncio.ensure_future(replies.get())
    waiting: set[asyncio.Future[Any]] = {getter, task}
    try:
        done, _ = await asyncio.wait(waiting, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not getter.done():
            getter.cancel()
    if getter in done:
        return getter.result()
    if task in done:
        return None
    msg = f"the app did not answer a lifespan event within {limit_s} s"
    raise LifespanError(msg)


async def _settle(task: asyncio.Future[None], limit_s: float) -> None:
    if not task.done():
        await asyncio.wait({task}, timeout=limit_s)
    if not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=limit_s)
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: an app without lifespan support may raise on the scope
