"""Fidelity to real applications: the shapes chat apps, frameworks and servers take (issue 9).

Every test runs a real server with a real ``websockets`` client. The recorder
wraps the server's ``send`` outermost, so a test sees every message ws_diag
attempted (even refused ones) and the exception that reached the server.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.exceptions
from harness import SessionLog
from servers import SERVER_KINDS, run_daphne, run_server
from starlette.applications import Starlette
from starlette.exceptions import WebSocketException
from starlette.middleware import Middleware
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect

from clients import CLIENT_TIMEOUT, talk
from ws_diag import DiagnosticsMiddleware, DiagSettings

pytestmark = pytest.mark.asyncio

UVICORN_KINDS = [kind for kind in SERVER_KINDS if kind.startswith("uvicorn")]


@dataclass
class Seen:
    """What one connection handed to the server, and what reached the server."""

    sent: list[dict[str, Any]] = field(default_factory=list)
    refused: list[BaseException] = field(default_factory=list)
    escaped: BaseException | None = None


class Recorder:
    """An outermost ASGI wrapper recording each websocket connection's sends and escaping exception."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.connections: list[Seen] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        seen = Seen()
        self.connections.append(seen)

        async def recording_send(message: Any) -> None:
            seen.sent.append(dict(message))
            try:
                await send(message)
            except Exception as exc:
                seen.refused.append(exc)
                raise

        try:
            await self.app(scope, receive, recording_send)
        except Exception as exc:
            seen.escaped = exc
            raise


def loud_ws_diag_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """ws_diag's records above DEBUG."""
    return [r for r in caplog.records if r.name.startswith("ws_diag") and r.levelno > logging.DEBUG]


def chain(exc: BaseException | None) -> list[type[BaseException]]:
    """The types along ``__cause__``/``__context__``: what a traceback would show."""
    types = []
    while exc is not None and len(types) < 10:
        types.append(type(exc))
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return types


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture every record, DEBUG included."""
    caplog.set_level(logging.DEBUG)
    return caplog


# -- 1. Whose disconnect is it? ------------------------------------------------------------------


def chat_app(*, close_peer_on_failure: bool) -> tuple[Starlette, asyncio.Event]:
    """A chat room that forgets to drop departed clients; 'listener' clients only listen."""
    clients: list[WebSocket] = []
    listener_left = asyncio.Event()

    async def chat(websocket: WebSocket) -> None:
        await websocket.accept()
        clients.append(websocket)
        if websocket.query_params.get("role") == "listener":
            try:
                await websocket.receive_text()
            except WebSocketDisconnect:
                listener_left.set()
            return  # the bug: still in `clients`
        text = await websocket.receive_text()
        for peer in list(clients):
            try:
                await peer.send_text(text)
            except WebSocketDisconnect:
                if not close_peer_on_failure:
                    raise
                await peer.close()  # refused: the peer's socket is already closed

    return Starlette(routes=[WebSocketRoute("/chat", chat)]), listener_left


@pytest.mark.parametrize("kind", UVICORN_KINDS)
@pytest.mark.parametrize("close_peer", [False, True], ids=["raise", "close-peer"])
async def test_broadcast_to_departed_peer_is_diagnosed_for_the_sender(
    kind: str, close_peer: bool, debug_logs: pytest.LogCaptureFixture
) -> None:
    """B's send to departed A fails in B's handler: B's live client gets the frame and 1011, not 1006."""
    app, listener_left = chat_app(close_peer_on_failure=close_peer)
    async with run_server(DiagnosticsMiddleware(app, settings=DiagSettings()), kind) as url:
        async with connect(f"{url}/chat?role=listener"):
            pass  # A's client vanishes
        await asyncio.wait_for(listener_left.wait(), CLIENT_TIMEOUT)
        session = await talk(f"{url}/chat")
    assert session.code == 1011
    assert session.frame["component"] == "Generic Internal"
    assert session.reason == f"Generic Internal failure (incident {session.frame['incident_id']})"
    lines = [r for r in debug_logs.records if getattr(r, "ws_diag_event", None) == "diagnosis"]
    assert [r.incident_id for r in lines] == [session.frame["incident_id"]]  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_own_client_leaving_is_silent(kind: str, debug_logs: pytest.LogCaptureFixture) -> None:
    """B's own client leaves and the endpoint lets WebSocketDisconnect escape: nothing attempted, nothing loud."""

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:
            await websocket.receive_text()

    ended = SessionLog()
    recorder = Recorder(
        DiagnosticsMiddleware(
            Starlette(routes=[WebSocketRoute("/ws", endpoint)]), settings=DiagSettings(), listeners=[ended]
        )
    )
    async with run_server(recorder, kind) as url:
        async with connect(f"{url}/ws") as ws:
            await ws.send("hello")
        (connection,) = await ended.wait(1)
    (seen,) = recorder.connections
    assert [m["type"] for m in seen.sent] == ["websocket.accept"]
    assert isinstance(seen.escaped, WebSocketDisconnect)
    assert connection.outcome == "client_gone"
    assert ended.diagnoses == 0
    assert loud_ws_diag_records(debug_logs) == []


@pytest.mark.parametrize("kind", UVICORN_KINDS)
async def test_own_send_failure_is_silent(kind: str, debug_logs: pytest.LogCaptureFixture) -> None:
    """B's client left while B waited elsewhere; B's own send then fails: silent, the app's error reaches the server."""
    client_left = asyncio.Event()

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await asyncio.wait_for(client_left.wait(), CLIENT_TIMEOUT)  # busy with an upstream call
        await websocket.send_text("late answer")

    ended = SessionLog()
    recorder = Recorder(
        DiagnosticsMiddleware(
            Starlette(routes=[WebSocketRoute("/ws", endpoint)]), settings=DiagSettings(), listeners=[ended]
        )
    )
    async with run_server(recorder, kind) as url:
        async with connect(f"{url}/ws"):
            pass
        client_left.set()
        (connection,) = await ended.wait(1)
    (seen,) = recorder.connections
    assert [m["type"] for m in seen.sent] == ["websocket.accept", "websocket.send"]
    assert seen.escaped is not None
    assert connection.outcome == "client_gone"
    assert loud_ws_diag_records(debug_logs) == []


# -- 2. A server refusing a message is not an error of ws_diag's ---------------------------------


def swallowing_app(then: str) -> Any:
    """Accept, swallow the client's disconnect, then raise (inside an except) or close with 1011."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await receive()
            await send({"type": "websocket.accept"})
            while (await receive())["type"] != "websocket.disconnect":
                pass
            if then == "raise":
                try:
                    raise ValueError("the app was handling this")
                except ValueError:
                    raise KeyError("the app's own bug")  # noqa: B904 - the context is the point
            try:
                await send({"type": "websocket.close", "code": 1011})
            except Exception as exc:
                scope["state"]["refusal"] = exc
                raise
        finally:
            scope["state"]["done"].set()

    return app


async def run_departed(app: Any, kind: str) -> tuple[Seen, Any]:
    """Serve ``app`` (recorded), let a client connect and leave, wait until the app ended."""
    state: dict[str, Any] = {}
    recorder = Recorder(app)
    done = asyncio.Event()

    async def with_state(scope: Any, receive: Any, send: Any) -> None:
        scope["state"] = {**state, "done": done}
        try:
            await recorder(scope, receive, send)
        finally:
            state.update(scope["state"])

    async with run_server(with_state, kind) as url:
        async with connect(url):
            pass
        await asyncio.wait_for(done.wait(), CLIENT_TIMEOUT)
    return recorder.connections[0], state


@pytest.mark.parametrize("kind", UVICORN_KINDS)
async def test_refused_first_frame_means_client_gone(kind: str, debug_logs: pytest.LogCaptureFixture) -> None:
    """ws_diag's frame to a departed client is refused: DEBUG, nothing more sent, the app's chain untouched."""
    bare, _ = await run_departed(swallowing_app("raise"), kind)
    debug_logs.clear()
    seen, _ = await run_departed(DiagnosticsMiddleware(swallowing_app("raise"), settings=DiagSettings()), kind)
    assert [m["type"] for m in seen.sent] == ["websocket.accept", "websocket.send"]  # the frame, refused
    assert len(seen.refused) == 1
    assert isinstance(seen.escaped, KeyError)
    assert chain(seen.escaped) == chain(bare.escaped) == [KeyError, ValueError]
    assert loud_ws_diag_records(debug_logs) == []
    assert any(getattr(r, "ws_diag_event", None) == "client_gone" for r in debug_logs.records)


@pytest.mark.parametrize("kind", UVICORN_KINDS)
async def test_app_close_after_departure_meets_the_servers_own_answer(
    kind: str, debug_logs: pytest.LogCaptureFixture
) -> None:
    """The app's close after its client left reaches the server as without ws_diag: same refusal, same chain."""
    bare, bare_state = await run_departed(swallowing_app("close"), kind)
    debug_logs.clear()
    seen, state = await run_departed(DiagnosticsMiddleware(swallowing_app("close"), settings=DiagSettings()), kind)
    assert chain(state.get("refusal")) == chain(bare_state.get("refusal"))
    assert chain(seen.escaped) == chain(bare.escaped)
    ours = [m for m in seen.sent if m["type"] == "websocket.send"]
    assert len(ours) == 1  # the frame, refused; then only the app's own close
    assert seen.sent[-1] == {"type": "websocket.close", "code": 1011}
    assert loud_ws_diag_records(debug_logs) == []


async def close_with_path_code(scope: Any, receive: Any, send: Any) -> None:
    """Accept, then close with the code the path names (a Channels consumer's ``self.close(code)``)."""
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": int(scope["path"].strip("/")), "reason": "bye"})


daphne_app = DiagnosticsMiddleware(close_with_path_code, settings=DiagSettings())


async def test_strict_server_gets_the_apps_own_close_in_the_private_range() -> None:
    """daphne refuses an app's 1008/1012: ws_diag retries as code + 3000 (4008, 4012) instead of daphne's bare 1011."""
    async with run_daphne(f"{__name__}:daphne_app") as daphne:
        seen = {code: await talk(f"{daphne.url}/{code}", ()) for code in (1000, 1008, 1012, 4321)}
        await daphne.await_line(r"server refused close code 1012; closed with 4012 instead")
    assert {code: session.code for code, session in seen.items()} == {1000: 1000, 1008: 4008, 1012: 4012, 4321: 4321}
    assert all(session.frames == [] for session in seen.values())  # the app's close, not a failure


# -- 3. Use what the app knew -----------------------------------------------------------------------


def starlette_endpoint(behaviour: Any) -> Starlette:
    """A Starlette app whose /ws endpoint accepts, reads one message, then runs ``behaviour``."""

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()
        await behaviour(websocket)

    return Starlette(routes=[WebSocketRoute("/ws", endpoint)])


async def close_1011_on_redis_error(websocket: WebSocket) -> None:
    """The most common hand-written failure path."""
    try:
        raise redis.exceptions.ConnectionError("Error 111 connecting to redis:6379")
    except redis.exceptions.ConnectionError:
        await websocket.close(code=1011)


async def raise_websocket_exception(websocket: WebSocket) -> None:
    """Starlette's way: WebSocketException, turned into a close by its exception middleware."""
    try:
        raise redis.exceptions.ConnectionError("Error 111 connecting to redis:6379")
    except redis.exceptions.ConnectionError as err:
        raise WebSocketException(code=1011, reason="upstream gone") from err


@pytest.mark.parametrize("kind", SERVER_KINDS)
@pytest.mark.parametrize(
    ("behaviour", "message"),
    [(close_1011_on_redis_error, "Redis unavailable"), (raise_websocket_exception, "upstream gone")],
    ids=["close-in-except", "WebSocketException"],
)
async def test_app_close_is_classified_by_the_exception_it_handled(
    kind: str, behaviour: Any, message: str, debug_logs: pytest.LogCaptureFixture
) -> None:
    """close(1011) while handling a redis error: 4007 Redis by type (no probe), the app's reason as the message."""
    app = DiagnosticsMiddleware(starlette_endpoint(behaviour), settings=DiagSettings())
    async with run_server(app, kind) as url:
        session = await talk(f"{url}/ws")
    assert session.code == 4007
    assert (session.frame["component"], session.frame["message"]) == ("Redis", message)
    (line,) = [r for r in debug_logs.records if getattr(r, "ws_diag_event", None) == "diagnosis"]
    assert line.diagnosis_source == "exception"  # type: ignore[attr-defined]
    assert "6379" not in str(session.messages)


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_app_close_reason_is_the_frames_message(kind: str) -> None:
    """An app's close(1011, reason) without an exception: Generic, with the app's own words as the message."""

    async def behaviour(websocket: WebSocket) -> None:
        await websocket.close(code=1011, reason="Model quota exhausted")

    app = DiagnosticsMiddleware(starlette_endpoint(behaviour), settings=DiagSettings())
    async with run_server(app, kind) as url:
        session = await talk(f"{url}/ws")
    assert session.code == 1011
    assert session.frame["message"] == "Model quota exhausted"


@pytest.mark.parametrize("kind", SERVER_KINDS)
@pytest.mark.parametrize("scheme", ["private", "legacy"])
async def test_seed_close_codes_are_failures_never_normal(kind: str, scheme: str) -> None:
    """close(1005) is a diagnosed failure in both schemes; legacy reads it as Database (frame 1005, wire 4005)."""

    async def behaviour(websocket: WebSocket) -> None:
        await websocket.close(code=1005, reason="db pool closed")

    app = DiagnosticsMiddleware(starlette_endpoint(behaviour), settings=DiagSettings(code_scheme=scheme))
    async with run_server(app, kind) as url:
        session = await talk(f"{url}/ws")
    if scheme == "legacy":
        assert (session.code, session.frame["code"], session.frame["component"]) == (4005, 1005, "Database")
    else:
        assert (session.code, session.frame["component"]) == (1011, "Generic Internal")
    assert session.frame["message"] == "db pool closed"


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_policy_violation_close_is_the_apps_in_legacy_scheme(kind: str) -> None:
    """A framework's 1008 (validation) arrives untouched and without a frame, even in the legacy scheme."""

    async def behaviour(websocket: WebSocket) -> None:
        await websocket.close(code=1008, reason="invalid payload")

    app = DiagnosticsMiddleware(starlette_endpoint(behaviour), settings=DiagSettings(code_scheme="legacy"))
    async with run_server(app, kind) as url:
        session = await talk(f"{url}/ws")
    assert (session.code, session.reason, session.frames) == (1008, "invalid payload", [])


# -- 4. Wrapping twice -------------------------------------------------------------------------------


async def failing_endpoint(websocket: WebSocket) -> None:
    """Accept, read, fail with an unclassified error."""
    await websocket.accept()
    await websocket.receive_text()
    raise RuntimeError("boom")


@pytest.mark.parametrize("kind", SERVER_KINDS)
@pytest.mark.parametrize("how", ["wrapped-twice", "add_middleware-and-wrap"])
async def test_two_layers_send_one_frame(kind: str, how: str, debug_logs: pytest.LogCaptureFixture) -> None:
    """Two ws_diag layers on one app: exactly one frame, one close, one diagnosis line."""
    routes = [WebSocketRoute("/ws", failing_endpoint)]
    if how == "wrapped-twice":
        app: Any = DiagnosticsMiddleware(DiagnosticsMiddleware(Starlette(routes=routes), settings=DiagSettings()))
    else:
        inner = Starlette(routes=routes, middleware=[Middleware(DiagnosticsMiddleware, settings=DiagSettings())])
        app = DiagnosticsMiddleware(inner, settings=DiagSettings())
    async with run_server(app, kind) as url:
        session = await talk(f"{url}/ws")
    assert session.code == 1011
    lines = [r for r in debug_logs.records if getattr(r, "ws_diag_event", None) == "diagnosis"]
    assert [r.incident_id for r in lines] == [session.frame["incident_id"]]  # type: ignore[attr-defined]
