"""The close path under real servers: refusals that are not departures, sessions the app never closed,
departures counted once (issue 16, items 2, 4 and 8).

Real servers (``SERVER_KINDS``), the real ``websockets`` client; what the servers do without
ws_diag is pinned in ``tests/test_server_facts.py``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException
from harness import SessionLog, ws_scope
from prometheus_client import CollectorRegistry
from servers import SERVER_KINDS, run_server
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect

from clients import CLIENT_TIMEOUT, talk
from ws_diag import Component, DiagnosticsMiddleware
from ws_diag.integrations.prometheus import PrometheusMetrics

pytestmark = pytest.mark.asyncio

SURROGATE = "\ud800"  # a lone surrogate: UTF-8 cannot encode it
# granian where the behaviour concerned is the same; it sends a lone surrogate's text frame as an empty
# frame instead of refusing it (tests/test_server_facts.py), so ws_diag has nothing to see there.
WITH_GRANIAN = [*SERVER_KINDS, "granian"]


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Records at ERROR or above, from any logger (the servers' included)."""
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


def loud_ws_diag(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """ws_diag's records above DEBUG."""
    return [r for r in caplog.records if r.name.startswith("ws_diag") and r.levelno > logging.DEBUG]


# -- item 2: a refused send is a departure only when the server says the peer is gone -------------


@pytest.mark.parametrize("kind", WITH_GRANIAN)
async def test_http_exception_after_accept_gets_frame_and_failure_code(kind: str) -> None:
    """FastAPI: an HTTPException raised after accept (the server refuses Starlette's HTTP answer) gives the
    live client the frame and a failure close, not a dropped connection or a bare 1011."""
    app = FastAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        raise HTTPException(status_code=503, detail="maintenance")

    async with run_server(DiagnosticsMiddleware(app), kind) as url:
        session = await talk(url + "/ws", outgoing=())
    frame = session.frame
    assert session.code == frame["code"] == Component.GENERIC.code
    assert frame["component"] == "Generic Internal"
    assert "maintenance" not in session.messages[-1]  # never the exception's text


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_unencodable_text_frame_is_the_message_handlers(kind: str) -> None:
    """A text frame with a lone surrogate (the server's send raises UnicodeEncodeError, client connected):
    frame and Message Handler's code, source exception."""

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("model output " + SURROGATE)

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
    async with run_server(DiagnosticsMiddleware(app), kind) as url:
        session = await talk(url + "/ws", outgoing=())
    frame = session.frame
    assert session.code == frame["code"] == Component.HANDLER.code
    assert (frame["component"], frame["source"]) == ("Message Handler", "exception")


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_app_close_with_surrogate_reason_is_diagnosed(kind: str) -> None:
    """The app catches the UnicodeEncodeError and closes 1011 with the surrogate in its reason: diagnosed as
    Message Handler, the frame's message is the reason made valid (U+FFFD), the close reason valid UTF-8."""

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        text = "model output " + SURROGATE
        try:
            await websocket.send_text(text)
        except UnicodeEncodeError:
            await websocket.close(code=1011, reason="could not send " + text)

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
    async with run_server(DiagnosticsMiddleware(app), kind) as url:
        session = await talk(url + "/ws", outgoing=())
    frame = session.frame
    assert session.code == frame["code"] == Component.HANDLER.code
    assert frame["message"] == "could not send model output \ufffd"
    assert session.reason == f"Message Handler failure (incident {frame['incident_id']})"


@pytest.mark.parametrize("kind", WITH_GRANIAN)
async def test_app_close_reason_with_surrogate_is_made_valid(kind: str) -> None:
    """An app's normal close whose reason holds a lone surrogate reaches the client with U+FFFD in its place."""

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close(code=1000, reason="bye " + SURROGATE)

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
    async with run_server(DiagnosticsMiddleware(app), kind) as url:
        session = await talk(url + "/ws", outgoing=())
    assert (session.code, session.reason) == (1000, "bye \ufffd")
    assert not session.frames


# -- item 4: no session ends with a dropped connection when ws_diag could have closed it -----------


@pytest.mark.parametrize("kind", WITH_GRANIAN)
async def test_loop_that_just_ends_gets_1000(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """A handler whose loop ends and returns without closing: the client gets 1000 (not 1006 or a bare 1011)."""
    sessions = SessionLog()

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        for n in range(2):
            await websocket.send_text(str(n))

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
    async with run_server(DiagnosticsMiddleware(app, listeners=[sessions]), kind) as url:
        session = await talk(url + "/ws", outgoing=())
        (ended,) = await sessions.wait(1)
    assert (session.messages, session.code) == (["0", "1"], 1000)
    assert ended.outcome == "normal"
    assert not loud_ws_diag(caplog)


@pytest.mark.parametrize("kind", WITH_GRANIAN)
async def test_broadcast_handler_returning_after_peer_left_gets_1000(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """B's handler catches its peer's departure during a broadcast and returns: B's client gets 1000; A's
    departure (its handler returned after its client left) is quiet on every server."""
    peers: dict[str, WebSocket] = {}
    a_left = asyncio.Event()
    sessions = SessionLog()

    async def endpoint(websocket: WebSocket) -> None:
        name = websocket.path_params["name"]
        await websocket.accept()
        if name == "a":  # only listens; the bug: it stays among the peers after its client left
            peers["a"] = websocket
            try:
                await websocket.receive_text()
            except WebSocketDisconnect:
                a_left.set()
            return
        text = await websocket.receive_text()
        await asyncio.wait_for(a_left.wait(), CLIENT_TIMEOUT)
        try:
            await peers["a"].send_text(text)
        except (WebSocketDisconnect, RuntimeError):  # uvicorn's legacy implementation: RuntimeError
            del peers["a"]  # the peer left; this handler returns without closing its own session

    app = Starlette(routes=[WebSocketRoute("/{name}", endpoint)])
    async with run_server(DiagnosticsMiddleware(app, listeners=[sessions]), kind) as url:
        async with asyncio.timeout(CLIENT_TIMEOUT), connect(f"{url}/a"):
            pass  # A's client leaves
        session = await talk(f"{url}/b", outgoing=("hello",))
        ended = await sessions.wait(2)
    assert (session.messages, session.code) == ([], 1000)
    assert {c.scope["path"]: c.outcome for c in ended}["/b"] == "normal"
    assert not errors(caplog)
    assert not loud_ws_diag(caplog)


# What ws_diag learns when the client left and the app then returns without closing: the closing 1000
# refused (wsproto: OSError, legacy: RuntimeError) is a departure; sansio accepts it, hypercorn discards it.
RETURNED_AFTER_CLIENT_LEFT = {
    "hypercorn": "normal",
    "uvicorn": "normal",
    "uvicorn-wsproto": "client_gone",
    "uvicorn-websockets": "client_gone",
    "granian": "normal",  # accepts the close
}


@pytest.mark.parametrize("kind", WITH_GRANIAN)
async def test_app_returning_after_client_left_is_quiet(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """The client leaves, the app returns without closing: ws_diag's closing 1000 is refused or discarded
    quietly (no ERROR from ws_diag or the server); a refusal is one client_gone event and outcome."""
    caplog.set_level(logging.DEBUG, logger="ws_diag")
    sessions = SessionLog()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    async with run_server(DiagnosticsMiddleware(app, listeners=[sessions]), kind) as url:
        async with asyncio.timeout(CLIENT_TIMEOUT), connect(url) as ws:
            await ws.send("hi")
        (ended,) = await sessions.wait(1)
    assert ended.outcome == RETURNED_AFTER_CLIENT_LEFT[kind]
    assert len(sessions.gone_events) == (ended.outcome == "client_gone")
    assert not errors(caplog)
    assert not loud_ws_diag(caplog)


# -- item 8: every departure is one client_gone event and outcome ---------------------------------


@pytest.mark.parametrize("kind", WITH_GRANIAN)
async def test_tracked_disconnect_is_one_client_gone_event_and_outcome(kind: str) -> None:
    """With track_disconnect, a websocket.disconnect the app receives is one client_gone event, outcome
    client_gone, counted in sessions_closed_total{outcome="client_gone"}; after the app's own close, none."""
    sessions = SessionLog()
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry=registry)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        if scope["path"] == "/closes":
            await send({"type": "websocket.close", "code": 1000})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    wrapped = DiagnosticsMiddleware(app, settings={"track_disconnect": True}, listeners=[sessions, metrics])
    async with run_server(wrapped, kind) as url:
        async with asyncio.timeout(CLIENT_TIMEOUT), connect(url + "/leaves") as ws:
            await ws.send("hi")
        await sessions.wait(1)
        assert (await talk(url + "/closes", outgoing=())).code == 1000
        ended = await sessions.wait(2)
    assert [(c.scope["path"], c.outcome) for c in ended] == [("/leaves", "client_gone"), ("/closes", "normal")]
    assert [c.scope["path"] for c in sessions.gone_events] == ["/leaves"]
    for outcome, count in (("client_gone", 1), ("normal", 1), ("error", 0), ("diagnosed", 0)):
        assert registry.get_sample_value("ws_diag_sessions_closed_total", {"outcome": outcome}) == count


class LegacyLikeServer:
    """One connection of a server that refuses every message with RuntimeError once its client left."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self.gone = False

    async def receive(self) -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.got.append(dict(message))
        if self.gone:
            msg = "Unexpected ASGI message"
            raise RuntimeError(msg)


async def close_after_silent_departure(wrap: bool) -> tuple[list[dict[str, Any]], BaseException | None]:
    """Accept; the client leaves unnoticed; the app closes 1005. What the server got, what the close raised."""
    server = LegacyLikeServer()
    raised: list[BaseException] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        server.gone = True
        try:
            await send({"type": "websocket.close", "code": 1005})
        except RuntimeError as exc:
            raised.append(exc)

    asgi: Any = DiagnosticsMiddleware(app) if wrap else app
    await asgi(ws_scope(), server.receive, server.send)
    return server.got, raised[0] if raised else None


async def test_app_close_after_refused_frame_reaches_the_server_unchanged() -> None:
    """The server refused ws_diag's first message (the client is gone): the app's close being diagnosed (1005)
    is handed over unchanged, not repaired, and the app meets the server's answer with the chain it would
    meet without ws_diag."""
    bare_got, bare_raised = await close_after_silent_departure(wrap=False)
    got, raised = await close_after_silent_departure(wrap=True)
    assert [m["type"] for m in got] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert got[-1] == bare_got[-1] == {"type": "websocket.close", "code": 1005}
    assert type(raised) is type(bare_raised) is RuntimeError
    assert raised.__context__ is bare_raised.__context__ is None
