"""Litestar under real servers: its own error close (4500) diagnosed by the exception it handles.

Litestar catches every exception a websocket handler raises and closes with its own
4500 "Internal Server Error" (HTTP status + 4000), or a ``WebSocketException``'s code and
detail; before accept that close becomes HTTP 403 (pinned in ``tests/test_server_facts.py``).
ws_diag reads a 4500 sent while an exception is being handled as the framework's generic
error close: diagnosed by that exception, like an app's ``except X: close(1011)``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
import redis.exceptions
from litestar import Litestar, WebSocket, websocket
from litestar.exceptions import WebSocketException
from servers import run_server
from websockets.asyncio.client import connect

from clients import CLIENT_TIMEOUT, Session, talk
from ws_diag import Component, DiagnosticsMiddleware, DiagSettings, WebSocketComponentError
from ws_diag.health.probes import CallableProbe, ProbeFailed
from ws_diag.lifecycle import Connection, ConnectionListener

pytestmark = [pytest.mark.asyncio, pytest.mark.parametrize("kind", ["uvicorn", "hypercorn"])]

SECRET = "redis://:hunter2@cache:6379"


@websocket("/redis")
async def redis_down(socket: WebSocket[Any, Any, Any]) -> None:
    """Redis' own exception, after accept."""
    await socket.accept()
    await socket.receive_text()
    raise redis.exceptions.ConnectionError(f"Error connecting to {SECRET}")


@websocket("/component")
async def component_error(socket: WebSocket[Any, Any, Any]) -> None:
    """The app names the component and writes the client's message."""
    await socket.accept()
    await socket.receive_text()
    raise WebSocketComponentError.redis_failure("Redis pub/sub unavailable")


@websocket("/plain")
async def plain_error(socket: WebSocket[Any, Any, Any]) -> None:
    """A bug: nothing names a component."""
    await socket.accept()
    await socket.receive_text()
    msg = f"password={SECRET}"
    raise RuntimeError(msg)


@websocket("/pre-auth")
async def preaccept_auth(socket: WebSocket[Any, Any, Any]) -> None:
    """A failure before accept."""
    raise WebSocketComponentError.auth_failure("Token expired")


@websocket("/pre-plain")
async def preaccept_plain(socket: WebSocket[Any, Any, Any]) -> None:
    """A bug before accept."""
    msg = "no session"
    raise LookupError(msg)


@websocket("/litestar-4500")
async def litestar_exception(socket: WebSocket[Any, Any, Any]) -> None:
    """Litestar's own idiom: WebSocketException, whose code defaults to 4500, with the app's words."""
    await socket.accept()
    await socket.receive_text()
    raise WebSocketException(detail="Redis pub/sub unavailable")


@websocket("/litestar-4503")
async def litestar_specific(socket: WebSocket[Any, Any, Any]) -> None:
    """A specific status the app chose (503 + 4000): its own word."""
    await socket.accept()
    await socket.receive_text()
    raise WebSocketException(detail="maintenance", code=4503)


@websocket("/own-4500")
async def own_4500(socket: WebSocket[Any, Any, Any]) -> None:
    """The app closes 4500 itself, handling nothing."""
    await socket.accept()
    await socket.receive_text()
    await socket.close(code=4500, reason="shutting down the room")


@websocket("/hand-written-1011")
async def hand_written(socket: WebSocket[Any, Any, Any]) -> None:
    """The app catches the component error and closes 1011 with its own reason."""
    await socket.accept()
    await socket.receive_text()
    try:
        raise WebSocketComponentError.redis_failure("Redis pub/sub unavailable")
    except WebSocketComponentError:
        await socket.close(code=1011, reason="room closed, try again")


@websocket("/own-4000")
async def own_4000(socket: WebSocket[Any, Any, Any]) -> None:
    """The app closes with a code the deployment lists in rewrite_codes."""
    await socket.accept()
    await socket.receive_text()
    await socket.close(code=4000)


@websocket("/echo")
async def echo(socket: WebSocket[Any, Any, Any]) -> None:
    """Echo until the client leaves."""
    await socket.accept()
    while True:
        await socket.send_text(await socket.receive_text())


HANDLERS = [
    redis_down,
    component_error,
    plain_error,
    preaccept_auth,
    preaccept_plain,
    litestar_exception,
    litestar_specific,
    own_4500,
    hand_written,
    own_4000,
    echo,
]


def wrapping(**options: Any) -> Any:
    """ws_diag around the whole Litestar app (one middleware, one health checker)."""
    return DiagnosticsMiddleware(Litestar(HANDLERS), **options)


def in_litestar(**options: Any) -> Any:
    """ws_diag as Litestar middleware (an ASGI middleware factory, wrapped around each route)."""

    def factory(app: Any) -> Any:
        return DiagnosticsMiddleware(app, **options)

    return Litestar(HANDLERS, middleware=[factory])


PLACEMENTS: dict[str, Callable[..., Any]] = {"wrapping": wrapping, "middleware": in_litestar}


def redis_probe_failing() -> CallableProbe:
    """A Redis probe that fails."""

    async def check() -> None:
        raise ProbeFailed("redis down")

    return CallableProbe("redis", Component.REDIS, check)


async def session(app: Any, kind: str, path: str) -> Session:
    """One real client session; nothing sent before accept for the pre-accept paths."""
    async with run_server(app, kind) as url:
        return await talk(url + path, () if path.startswith("/pre") else ("hi",))


@pytest.mark.parametrize("placement", PLACEMENTS)
async def test_redis_exception_gives_4007_and_frame(kind: str, placement: str) -> None:
    """A handler raising redis' ConnectionError: Litestar's 4500 becomes 4007 with the Redis frame, wherever
    ws_diag sits; the exception's text stays on the server."""
    got = await session(PLACEMENTS[placement](), kind, "/redis")
    assert got.code == got.frame["code"] == 4007
    assert (got.frame["component"], got.frame["source"]) == ("Redis", "exception")
    assert got.frame["message"] == "Internal Server Error"  # Litestar's reason: the framework's words
    assert SECRET not in json.dumps(got.messages) + (got.reason or "")


@pytest.mark.parametrize("placement", PLACEMENTS)
async def test_component_error_message_wins_over_litestar_reason(kind: str, placement: str) -> None:
    """A WebSocketComponentError: its component, and its own message rather than Litestar's generic reason."""
    got = await session(PLACEMENTS[placement](), kind, "/component")
    assert got.code == 4007
    assert got.frame["message"] == "Redis pub/sub unavailable"
    assert got.reason == f"Redis failure (incident {got.frame['incident_id']})"


async def test_plain_exception_is_generic(kind: str) -> None:
    """A plain exception: Generic Internal, 1011 and the frame instead of Litestar's bare 4500."""
    got = await session(wrapping(), kind, "/plain")
    assert got.code == got.frame["code"] == 1011
    assert got.frame["component"] == "Generic Internal"
    assert SECRET not in json.dumps(got.messages) + (got.reason or "")


async def test_preaccept_failure_gets_the_frame(kind: str) -> None:
    """A failure before accept: instead of Litestar's HTTP 403, the client gets the frame and 4002."""
    got = await session(wrapping(), kind, "/pre-auth")
    assert got.code == got.frame["code"] == 4002
    assert got.frame["message"] == "Token expired"
    got = await session(wrapping(), kind, "/pre-plain")
    assert got.code == 1011
    assert got.frame["component"] == "Generic Internal"


async def test_websocket_exception_4500_keeps_the_apps_words(kind: str) -> None:
    """Litestar's WebSocketException (code 4500 by default): diagnosed by the probes, its detail the message."""
    got = await session(wrapping(probes=[redis_probe_failing()]), kind, "/litestar-4500")
    assert got.code == 4007
    assert (got.frame["component"], got.frame["message"]) == ("Redis", "Redis pub/sub unavailable")


async def test_specific_status_and_own_4500_untouched(kind: str) -> None:
    """A specific status the app raised (4503) and a 4500 sent while handling nothing are the app's own word."""
    got = await session(wrapping(), kind, "/litestar-4503")
    assert (got.code, got.reason, got.frames) == (4503, "maintenance", [])
    got = await session(wrapping(), kind, "/own-4500")
    assert (got.code, got.reason, got.frames) == (4500, "shutting down the room", [])


async def test_rewrite_codes_behaviour_unchanged(kind: str) -> None:
    """An app's hand-written 1011 reason still wins over the component error it handles; a code listed in
    rewrite_codes is still diagnosed with no exception in hand."""
    got = await session(wrapping(), kind, "/hand-written-1011")
    assert got.code == 4007
    assert got.frame["message"] == "room closed, try again"
    got = await session(wrapping(settings=DiagSettings(rewrite_codes=[1011, 4000])), kind, "/own-4000")
    assert got.code == got.frame["code"] == 1011
    got = await session(wrapping(), kind, "/own-4000")
    assert (got.code, got.frames) == (4000, [])


class Outcomes(ConnectionListener):
    """Records how connections ended."""

    def __init__(self) -> None:
        self.outcomes: list[str] = []
        self.ended = asyncio.Event()

    def closed(self, connection: Connection) -> None:
        self.outcomes.append(connection.outcome)
        self.ended.set()


async def test_client_leaving_is_quiet(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """A client that leaves an echo session: Litestar closes with the departure's code; ws_diag diagnoses
    nothing and says nothing above DEBUG."""
    caplog.set_level(logging.DEBUG, logger="ws_diag")
    outcomes = Outcomes()
    async with run_server(wrapping(listeners=[outcomes]), kind) as url:
        async with asyncio.timeout(CLIENT_TIMEOUT), connect(url + "/echo") as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
        await asyncio.wait_for(outcomes.ended.wait(), CLIENT_TIMEOUT)  # the session ends after the client left
    # Litestar closes with the code the departure carried: 1000 on uvicorn (the app's own normal close),
    # 1006 on hypercorn (its code for any departure): a departure, not a failure.
    assert outcomes.outcomes == (["normal"] if kind == "uvicorn" else ["client_gone"])
    assert not [r for r in caplog.records if r.name.startswith("ws_diag") and r.levelno > logging.DEBUG]
