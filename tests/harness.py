"""An in-memory websocket "server" for driving ASGI apps without sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from clients import CLIENT_TIMEOUT
from ws_diag.lifecycle import Connection, ConnectionListener

Message = dict[str, Any]

CONNECT: Message = {"type": "websocket.connect"}


def text(value: str) -> Message:
    """A client text message."""
    return {"type": "websocket.receive", "text": value}


def disconnect(code: int = 1000) -> Message:
    """The client went away."""
    return {"type": "websocket.disconnect", "code": code}


def ws_scope(*, denial: bool = False, path: str = "/ws") -> dict[str, Any]:
    """A websocket scope; with ``denial`` the server offers the HTTP denial extension."""
    extensions: dict[str, Any] = {"websocket.http.response": {}} if denial else {}
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [],
        "scheme": "ws",
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "subprotocols": [],
        "extensions": extensions,
    }


@dataclass
class Run:
    """What an app sent, and what it raised."""

    sent: list[Message] = field(default_factory=list)
    error: BaseException | None = None
    received_after_end: int = 0

    def of_type(self, kind: str) -> list[Message]:
        """The sent messages of one type."""
        return [m for m in self.sent if m["type"] == kind]

    @property
    def close(self) -> Message | None:
        """The single close message, if any."""
        closes = self.of_type("websocket.close")
        assert len(closes) <= 1, closes
        return closes[0] if closes else None


async def drive(
    app: Any,
    incoming: Iterable[Message] = (CONNECT,),
    *,
    scope: dict[str, Any] | None = None,
    raise_after_disconnect: bool = True,
) -> Run:
    """Run ``app`` once; feed it ``incoming`` then a disconnect; record what it sends.

    Like uvicorn, a send after the client disconnected raises an ``OSError``
    subclass when ``raise_after_disconnect`` is set.
    """
    run = Run()
    pending = list(incoming)
    disconnected = False

    async def receive() -> Message:
        nonlocal disconnected
        if pending:
            message = pending.pop(0)
        else:
            run.received_after_end += 1
            message = disconnect(1006)
        if message["type"] == "websocket.disconnect":
            disconnected = True
        return message

    async def send(message: Message) -> None:
        if disconnected and raise_after_disconnect:
            raise ConnectionResetError("client disconnected")
        run.sent.append(dict(message))

    try:
        await app(scope if scope is not None else ws_scope(), receive, send)
    except Exception as exc:  # recorded for the test to assert on
        run.error = exc
    return run


async def http_request(
    app: Any, path: str, *, method: str = "GET", headers: Iterable[tuple[bytes, bytes]] = (), query: str = ""
) -> tuple[int, dict[str, str], bytes]:
    """One in-process HTTP request to ``app``: status, headers (decoded), body (the first body message)."""
    scope = {"type": "http", "method": method, "path": path, "query_string": query.encode(), "headers": list(headers)}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, body = sent[0], next((m for m in sent[1:] if m["type"] == "http.response.body"), {"body": b""})
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body["body"]


def bearer(token: str | None) -> list[tuple[bytes, bytes]]:
    """An Authorization header with ``token``, or none."""
    return [(b"authorization", f"Bearer {token}".encode())] if token else []


def failing(exc: BaseException) -> Any:
    """An app that accepts, then raises ``exc``."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        raise exc

    return app


class FakeProbe:
    """A probe whose behaviour the test scripts: a value to return, or an async callable to await."""

    def __init__(self, name: str, behaviour: Any = None, *, component: Any = None, required: bool = True) -> None:
        from ws_diag import Component

        self.name = name
        self.component = Component.DATABASE if component is None else component
        self.required = required
        self.behaviour = behaviour
        self.calls = 0

    async def check(self) -> Any:
        self.calls += 1
        if callable(self.behaviour):
            return await self.behaviour()
        return self.behaviour


class SessionLog(ConnectionListener):
    """A listener recording diagnoses, departures and ended connections; a test waits, bounded, for the ends."""

    def __init__(self) -> None:
        self.ended: list[Connection] = []
        self.gone_events: list[Connection] = []
        self.diagnoses = 0
        self._changed = asyncio.Event()

    def diagnosed(self, connection: Connection, event: Any) -> None:
        self.diagnoses += 1

    def client_gone(self, connection: Connection) -> None:
        self.gone_events.append(connection)

    def closed(self, connection: Connection) -> None:
        self.ended.append(connection)
        self._changed.set()

    async def wait(self, count: int) -> list[Connection]:
        """Wait until ``count`` connections ended (within CLIENT_TIMEOUT)."""
        async with asyncio.timeout(CLIENT_TIMEOUT):
            while len(self.ended) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.ended
