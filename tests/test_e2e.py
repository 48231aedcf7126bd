"""End to end: real servers (hypercorn, uvicorn with websockets and wsproto, granian), real client."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from servers import SERVER_KINDS, run_server
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.exceptions import InvalidStatus

from clients import CLIENT_TIMEOUT, talk
from ws_diag import Component, DiagnosticsMiddleware, DiagSettings, WebSocketComponentError
from ws_diag.health.probes import CallableProbe, ProbeFailed

# granian joins the matrix here: what it does without ws_diag is pinned in tests/test_server_facts.py.
E2E_KINDS = [*SERVER_KINDS, "granian"]

pytestmark = [pytest.mark.asyncio, pytest.mark.parametrize("kind", E2E_KINDS)]

SECRET = "s3cret-in-the-exception"


def raw_app(behaviour: Any) -> Any:
    """A raw ASGI app: receive connect, then run ``behaviour(receive, send)``."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        await receive()
        await behaviour(receive, send)

    return app


async def accept_then_raise(exc: BaseException, receive: Any, send: Any) -> None:
    """Accept, wait for one message, raise."""
    await send({"type": "websocket.accept"})
    await receive()
    raise exc


def wrapped(app: Any, **settings: Any) -> DiagnosticsMiddleware:
    """Wrap with explicit settings."""
    return DiagnosticsMiddleware(app, settings=DiagSettings(**settings))


async def test_component_error_gives_4005_and_frame(kind: str) -> None:
    """A raw ASGI app raising database_failure: the client gets the frame and 4005."""
    error = WebSocketComponentError.database_failure("Database session factory unavailable", user_id="user123")
    app = wrapped(raw_app(lambda r, s: accept_then_raise(error, r, s)))
    async with run_server(app, kind) as url:
        session = await talk(url)
    assert session.code == 4005
    assert session.frame["component"] == "Database"
    assert session.frame["message"] == "Database session factory unavailable"
    assert session.frame["user_id"] == "user123"
    assert session.reason == f"Database failure (incident {session.frame['incident_id']})"


async def test_starlette_app_component_error(kind: str) -> None:
    """A Starlette endpoint raising database_failure: 4005 with the frame on every server."""

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()
        raise WebSocketComponentError.database_failure("Database session factory unavailable")

    app = wrapped(Starlette(routes=[WebSocketRoute("/ws", endpoint)]))
    async with run_server(app, kind) as url:
        session = await talk(url + "/ws")
    assert session.code == 4005
    assert session.frame["code"] == 4005


async def test_unhandled_exception_is_closed_by_the_middleware(kind: str) -> None:
    """An arbitrary exception after accept gives 1011 plus a frame (uvicorn alone gives 1006)."""
    app = wrapped(raw_app(lambda r, s: accept_then_raise(RuntimeError(f"password={SECRET}"), r, s)))
    async with run_server(app, kind) as url:
        session = await talk(url)
    assert session.code == 1011
    assert session.frame["component"] == "Generic Internal"
    assert SECRET not in json.dumps(session.messages) + (session.reason or "")


# What a client sees when the app raises after accept, without ws_diag.
BARE_CRASH = {"hypercorn": 1011, "granian": 1005}  # uvicorn, every implementation: 1006


async def test_bare_uvicorn_really_gives_1006(kind: str) -> None:
    """Without ws_diag the same failure is 1011 on hypercorn, 1006 on uvicorn and an empty close (1005) on
    granian (the problem we solve)."""
    app = raw_app(lambda r, s: accept_then_raise(RuntimeError("x"), r, s))
    async with run_server(app, kind) as url:
        session = await talk(url)
    assert session.code == BARE_CRASH.get(kind, 1006)
    assert session.messages == []


async def test_app_exception_logged_once_with_traceback(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """The app's exception is logged with its traceback exactly once (by the server), never replaced."""
    caplog.set_level(logging.INFO)

    class AppBug(Exception):
        pass

    escaped: list[BaseException] = []
    ended = asyncio.Event()
    app = wrapped(raw_app(lambda r, s: accept_then_raise(AppBug("the app's own bug"), r, s)))

    async def server_side(scope: Any, receive: Any, send: Any) -> None:
        # What reaches the server. granian logs it through pyo3-log, whose cached logger levels make its
        # records depend on the servers this process ran before: the exception that reaches it is checked.
        if scope["type"] != "websocket":
            return  # hypercorn's lifespan
        try:
            await app(scope, receive, send)
        except BaseException as exc:
            escaped.append(exc)
            raise
        finally:
            ended.set()

    async with run_server(server_side, kind) as url:
        session = await talk(url)
        await asyncio.wait_for(ended.wait(), CLIENT_TIMEOUT)  # the app may end just after the client saw the close
    assert session.code == 1011
    assert [type(exc) for exc in escaped] == [AppBug]
    with_traceback = [r for r in caplog.records if r.exc_info and r.exc_info[0] is AppBug]
    assert len(with_traceback) == (0 if kind == "granian" else 1)
    assert not [r for r in with_traceback if r.name.startswith("ws_diag")]
    incident = session.frame["incident_id"]
    assert any(getattr(r, "incident_id", None) == incident for r in caplog.records)


async def test_app_close_1011_is_rewritten(kind: str) -> None:
    """An app that closes with 1011 gets its failure diagnosed by the probes: 4007 when Redis fails."""

    async def behaviour(receive: Any, send: Any) -> None:
        await send({"type": "websocket.accept"})
        await receive()
        await send({"type": "websocket.close", "code": 1011})

    async def redis_down() -> None:
        raise ProbeFailed("redis down")

    app = DiagnosticsMiddleware(
        raw_app(behaviour),
        settings=DiagSettings(),
        probes=[CallableProbe("redis", Component.REDIS, redis_down)],
    )
    async with run_server(app, kind) as url:
        session = await talk(url)
    assert session.code == 4007
    assert session.frame["component"] == "Redis"


async def test_preaccept_failure_accept_close(kind: str) -> None:
    """A failure before accept: the browser-friendly default accepts, sends the frame, closes with 4002."""

    async def behaviour(receive: Any, send: Any) -> None:
        raise WebSocketComponentError.auth_failure("Token expired")

    async with run_server(wrapped(raw_app(behaviour)), kind) as url:
        session = await talk(url, ())
    assert session.code == 4002
    assert session.frame["message"] == "Token expired"


async def test_preaccept_failure_http_denial(kind: str) -> None:
    """With http_denial and a server offering the extension, the handshake fails with 503 and the JSON body."""
    seen: dict[str, Any] = {}

    async def behaviour(receive: Any, send: Any) -> None:
        raise WebSocketComponentError.database_failure("Database down")

    inner = raw_app(behaviour)

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        seen["extensions"] = dict(scope.get("extensions") or {})
        await inner(scope, receive, send)

    async with run_server(wrapped(spy, preaccept="http_denial"), kind) as url:
        if_offered = None
        try:
            session = await talk(url, ())
        except InvalidStatus as exc:
            if_offered = exc.response
    if "websocket.http.response" in seen["extensions"]:
        assert if_offered is not None
        assert if_offered.status_code == 503
        assert json.loads(if_offered.body)["error"]["code"] == 4005
    else:
        assert if_offered is None
        assert session.code == 4005


async def test_preaccept_passthrough_is_http_500(kind: str) -> None:
    """With preaccept=passthrough a failure before accept stays the server's answer: HTTP 500 (granian: 403)."""

    async def behaviour(receive: Any, send: Any) -> None:
        raise WebSocketComponentError.database_failure()

    async with run_server(wrapped(raw_app(behaviour), preaccept="passthrough"), kind) as url:
        with pytest.raises(InvalidStatus) as info:
            await talk(url, ())
    assert info.value.response.status_code == (403 if kind == "granian" else 500)


async def test_deliberate_preaccept_close_is_403(kind: str) -> None:
    """A deliberate close before accept with a non-rewrite code stays the server's HTTP 403."""

    async def behaviour(receive: Any, send: Any) -> None:
        await send({"type": "websocket.close", "code": 1008})

    async with run_server(wrapped(raw_app(behaviour)), kind) as url:
        with pytest.raises(InvalidStatus) as info:
            await talk(url, ())
    assert info.value.response.status_code == 403


@pytest.mark.parametrize(("sent", "seen"), [(1004, 1011), (1005, 1011), (1006, 1011), (999, 1011), (5000, 1011)])
async def test_undeliverable_app_codes_are_repaired(kind: str, sent: int, seen: int) -> None:
    """Codes a server cannot deliver are repaired instead of becoming 1006 or a dropped connection."""

    async def behaviour(receive: Any, send: Any) -> None:
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": sent})

    async with run_server(wrapped(raw_app(behaviour)), kind) as url:
        session = await talk(url, ())
    assert session.code == seen


async def test_long_reason_is_cut_not_dropped(kind: str) -> None:
    """A 200-character multi-byte reason arrives cut to 123 bytes (uvicorn-websockets would drop the TCP)."""

    async def behaviour(receive: Any, send: Any) -> None:
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000, "reason": "é" * 200})

    async with run_server(wrapped(raw_app(behaviour)), kind) as url:
        session = await talk(url, ())
    assert session.code == 4000
    assert session.reason == "é" * 61


async def test_happy_path_untouched(kind: str) -> None:
    """A working echo session sees its messages and its own close, and no frame."""

    async def behaviour(receive: Any, send: Any) -> None:
        await send({"type": "websocket.accept"})
        for _ in range(3):
            message = await receive()
            await send({"type": "websocket.send", "text": message["text"]})
        await send({"type": "websocket.close", "code": 1000, "reason": "bye"})

    async with run_server(wrapped(raw_app(behaviour)), kind) as url:
        session = await talk(url, ("a", "b", "c"))
    assert session.messages == ["a", "b", "c"]
    assert (session.code, session.reason) == (1000, "bye")


async def test_legacy_scheme_on_the_wire(kind: str) -> None:
    """In the legacy scheme the frame says 1005 and the wire still carries deliverable 4005."""
    error = WebSocketComponentError.database_failure()
    app = wrapped(raw_app(lambda r, s: accept_then_raise(error, r, s)), code_scheme="legacy")
    async with run_server(app, kind) as url:
        session = await talk(url)
    assert session.frame["code"] == 1005
    assert session.code == 4005
