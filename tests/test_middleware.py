"""The middleware in-process: what it sends, passes through, and re-raises."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import asyncpg
import pytest
import starlette.websockets
from harness import CONNECT, Run, disconnect, drive, text, ws_scope

from ws_diag import Classifier, Component, DiagnosticsMiddleware, DiagSettings, WebSocketComponentError
from ws_diag.diagnosis import Diagnosis

pytestmark = pytest.mark.asyncio

SECRET = "s3cret-pa55word"


def wrap(app: Any, **settings: Any) -> DiagnosticsMiddleware:
    """Wrap ``app`` with explicit settings (never the environment's)."""
    return DiagnosticsMiddleware(app, settings=DiagSettings(**settings))


def frame_of(run: Run) -> dict[str, Any]:
    """The single diagnostic frame the run sent."""
    frames = [
        json.loads(m["text"]) for m in run.of_type("websocket.send") if m.get("text", "").startswith('{"type":"error"')
    ]
    assert len(frames) == 1, run.sent
    return frames[0]["error"]  # type: ignore[no-any-return]


async def echo(scope: Any, receive: Any, send: Any) -> None:
    """Accept, echo text until the client leaves."""
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message["text"]})


def raising(exc: BaseException, *, accept: bool = True) -> Any:
    """An app that optionally accepts, then raises ``exc``."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        if accept:
            await send({"type": "websocket.accept"})
        raise exc

    return app


def closing(code: int, reason: str | None = None, *, accept: bool = True) -> Any:
    """An app that optionally accepts, then closes with ``code``."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        if accept:
            await send({"type": "websocket.accept"})
        message: dict[str, Any] = {"type": "websocket.close", "code": code}
        if reason is not None:
            message["reason"] = reason
        await send(message)

    return app


async def test_non_websocket_scopes_pass_through_untouched() -> None:
    """HTTP and lifespan scopes get the very same receive and send callables."""
    seen: list[tuple[Any, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((receive, send))

    async def receive() -> dict[str, Any]:
        return {}

    async def send(message: Any) -> None:
        pass

    middleware = wrap(app)
    for kind in ("http", "lifespan"):
        await middleware({"type": kind}, receive, send)
    assert seen == [(receive, send), (receive, send)]


async def test_happy_path_messages_are_identical() -> None:
    """A working echo session sends exactly what the bare app sends."""
    incoming = [CONNECT, text("a"), text("b"), disconnect()]
    bare = await drive(echo, incoming)
    wrapped = await drive(wrap(echo), incoming)
    assert wrapped.sent == bare.sent
    assert wrapped.error is None


async def test_receive_is_not_wrapped_by_default() -> None:
    """Without track_disconnect the app gets the server's own receive callable."""
    seen = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(receive)

    async def receive() -> dict[str, Any]:
        return CONNECT

    async def send(message: Any) -> None:
        pass

    await wrap(app)(ws_scope(), receive, send)
    assert seen == [receive]


async def test_close_1011_after_accept_is_rewritten() -> None:
    """An app's 1011 close becomes a frame and a close carrying the diagnosed code."""
    run = await drive(wrap(closing(1011, "internal")))
    body = frame_of(run)
    assert body["component"] == "Generic Internal"
    assert run.close is not None
    assert run.close["code"] == 1011
    assert run.close["reason"].startswith("Generic Internal failure (incident ")
    assert [m["type"] for m in run.sent] == ["websocket.accept", "websocket.send", "websocket.close"]


async def test_component_error_after_accept() -> None:
    """A WebSocketComponentError names the component: 4005 with the app's message."""
    error = WebSocketComponentError.database_failure("Database session factory unavailable", user_id="u1")
    run = await drive(wrap(raising(error)))
    body = frame_of(run)
    assert (body["code"], body["component"], body["message"], body["user_id"]) == (
        4005,
        "Database",
        "Database session factory unavailable",
        "u1",
    )
    assert run.close is not None
    assert run.close["code"] == 4005
    assert run.error is error


async def test_wrapped_component_error_is_found() -> None:
    """A component error wrapped in another exception still names the component."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            raise WebSocketComponentError.redis_failure("Cache down")
        except WebSocketComponentError as exc:
            raise RuntimeError("handler failed") from exc

    run = await drive(wrap(app))
    assert frame_of(run)["code"] == 4007
    assert isinstance(run.error, RuntimeError)


async def test_driver_exception_is_classified_without_its_text() -> None:
    """An asyncpg error gives 4005 with the standard message, never the exception's text."""
    exc = asyncpg.exceptions.TooManyConnectionsError(f"sorry, too many clients; dsn postgresql://u:{SECRET}@db")
    run = await drive(wrap(raising(exc)))
    body = frame_of(run)
    assert body["code"] == 4005
    assert body["message"] == Component.DATABASE.description
    assert body["root_cause"] is None
    assert SECRET not in json.dumps(run.sent)
    assert run.error is exc


async def test_unknown_exception_is_generic_and_secret_free() -> None:
    """An unclassifiable exception gives Generic 1011 with a frame and no exception text."""
    exc = ValueError(f"password={SECRET}")
    run = await drive(wrap(raising(exc)))
    assert frame_of(run)["component"] == "Generic Internal"
    assert run.close is not None
    assert run.close["code"] == 1011
    assert SECRET not in json.dumps(run.sent)
    assert run.error is exc


async def test_expose_details_sends_redacted_root_cause() -> None:
    """With expose_details the root cause is included, still without credentials."""
    exc = ValueError(f"postgresql://u:{SECRET}@db failed")
    run = await drive(wrap(raising(exc), expose_details=True))
    body = frame_of(run)
    assert body["root_cause"] == "ValueError: postgresql://u:***@db failed"
    assert SECRET not in json.dumps(run.sent)


async def test_legacy_scheme() -> None:
    """In the legacy scheme the frame says 1005 and the wire carries deliverable 4005."""
    run = await drive(wrap(raising(WebSocketComponentError.database_failure()), code_scheme="legacy"))
    assert frame_of(run)["code"] == 1005
    assert run.close is not None
    assert run.close["code"] == 4005
    run = await drive(wrap(raising(WebSocketComponentError.redis_failure()), code_scheme="legacy"))
    assert frame_of(run)["code"] == 1007
    assert run.close is not None
    assert run.close["code"] == 1007


async def test_preaccept_raise_accept_close() -> None:
    """Before accept, accept_close accepts, sends the frame and closes with the component code."""
    error = WebSocketComponentError.auth_failure("Token expired")
    run = await drive(wrap(raising(error, accept=False)))
    assert [m["type"] for m in run.sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert frame_of(run)["code"] == 4002
    assert run.close is not None
    assert run.close["code"] == 4002
    assert run.error is error


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (WebSocketComponentError.auth_failure(), 403),
        (WebSocketComponentError.database_failure(), 503),
        (WebSocketComponentError.handler_failure(), 500),
        (RuntimeError("x"), 500),
    ],
)
async def test_preaccept_http_denial(error: Exception, status: int) -> None:
    """With the denial extension, http_denial answers with a status and the JSON body."""
    run = await drive(wrap(raising(error, accept=False), preaccept="http_denial"), scope=ws_scope(denial=True))
    start, body = run.sent
    assert start["type"] == "websocket.http.response.start"
    assert start["status"] == status
    assert (b"content-type", b"application/json") in start["headers"]
    assert body["type"] == "websocket.http.response.body"
    assert json.loads(body["body"])["type"] == "error"
    assert run.error is error


async def test_http_denial_falls_back_without_extension() -> None:
    """Without the extension, http_denial behaves like accept_close."""
    run = await drive(wrap(raising(WebSocketComponentError.database_failure(), accept=False), preaccept="http_denial"))
    assert [m["type"] for m in run.sent] == ["websocket.accept", "websocket.send", "websocket.close"]


async def test_preaccept_passthrough_changes_nothing() -> None:
    """passthrough leaves pre-accept failures to the server: nothing sent, exception raised."""
    error = WebSocketComponentError.database_failure()
    run = await drive(wrap(raising(error, accept=False), preaccept="passthrough"))
    assert run.sent == []
    assert run.error is error
    run = await drive(wrap(closing(1011, accept=False), preaccept="passthrough"))
    assert run.sent == [{"type": "websocket.close", "code": 1011}]


async def test_preaccept_close_with_rewrite_code_is_diagnosed() -> None:
    """A pre-accept close with 1011 is diagnosed and delivered after an accept."""
    run = await drive(wrap(closing(1011, accept=False)))
    assert [m["type"] for m in run.sent] == ["websocket.accept", "websocket.send", "websocket.close"]


@pytest.mark.parametrize("code", [1000, 1008, 4001])
async def test_deliberate_preaccept_close_stays(code: int) -> None:
    """A deliberate pre-accept close with another code is passed on unchanged (HTTP 403)."""
    run = await drive(wrap(closing(code, "nope", accept=False)))
    assert run.sent == [{"type": "websocket.close", "code": code, "reason": "nope"}]


@pytest.mark.parametrize("code", [1000, 1001, 1008, 3000, 4000, 4999])
async def test_valid_app_close_passes_unchanged(code: int) -> None:
    """A deliverable close that is not a rewrite code reaches the server unchanged."""
    run = await drive(wrap(closing(code, "bye")))
    assert run.sent[-1] == {"type": "websocket.close", "code": code, "reason": "bye"}


async def test_undeliverable_app_codes_are_repaired() -> None:
    """1004-1006 and other undeliverable codes become a diagnosed 1011, never a normal closure."""
    for code in (1004, 1005, 1006, 1015, 999, 5000):
        run = await drive(wrap(closing(code)))
        assert run.close is not None
        assert run.close["code"] == 1011
        assert frame_of(run)["component"] == "Generic Internal"


@pytest.mark.parametrize("code", [1004, 1005, 1006])
async def test_seed_codes_are_failures_whatever_rewrite_codes_say(code: int) -> None:
    """An app's 1004/1005/1006 is diagnosed even when rewrite_codes names no code."""
    run = await drive(wrap(closing(code), rewrite_codes=[]))
    assert run.close is not None
    assert run.close["code"] == 1011
    assert frame_of(run)["component"] == "Generic Internal"


@pytest.mark.parametrize(
    ("code", "component", "wire"),
    [(1004, "Message Handler", 4004), (1005, "Database", 4005), (1006, "Dependencies", 4006)],
)
async def test_legacy_scheme_reads_seed_codes_as_components(code: int, component: str, wire: int) -> None:
    """In the legacy scheme an app's 1004/1005/1006 names Handler/Database/Dependency: frame legacy, wire private."""
    run = await drive(wrap(closing(code, "db pool closed"), code_scheme="legacy"))
    assert run.close is not None
    assert run.close["code"] == wire
    frame = frame_of(run)
    assert (frame["component"], frame["code"], frame["message"]) == (component, code, "db pool closed")


@pytest.mark.parametrize("code", [1002, 1003, 1007, 1008, 1009, 1010])
async def test_deliverable_legacy_codes_pass_in_every_scheme(code: int) -> None:
    """The deliverable legacy codes are the app's (1008 for validation errors): untouched in both schemes."""
    for scheme in ("private", "legacy"):
        run = await drive(wrap(closing(code, "bye"), code_scheme=scheme))
        assert run.sent[-1] == {"type": "websocket.close", "code": code, "reason": "bye"}


async def test_long_reason_is_cut() -> None:
    """A close reason over 123 bytes is cut on a character boundary."""
    run = await drive(wrap(closing(4000, "é" * 100)))
    assert run.close is not None
    assert run.close["reason"] == "é" * 61


async def test_rewrite_codes_setting() -> None:
    """Only codes in rewrite_codes are diagnosed."""
    run = await drive(wrap(closing(1011), rewrite_codes=[4321]))
    assert run.close == {"type": "websocket.close", "code": 1011}
    run = await drive(wrap(closing(4321), rewrite_codes=[4321]))
    frame_of(run)


async def test_nothing_after_the_apps_own_close() -> None:
    """An app that closes and then raises gets its exception back, and nothing more is sent."""
    exc = RuntimeError("after close")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})
        raise exc

    run = await drive(wrap(app))
    assert [m["type"] for m in run.sent] == ["websocket.accept", "websocket.close"]
    assert run.error is exc


async def test_client_gone_exception_sends_nothing() -> None:
    """WebSocketDisconnect raised with the received websocket.disconnect in hand: the client left, nothing sent."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        if message["type"] == "websocket.disconnect":
            raise starlette.websockets.WebSocketDisconnect(message["code"])

    run = await drive(wrap(app))
    assert [m["type"] for m in run.sent] == ["websocket.accept"]
    assert isinstance(run.error, starlette.websockets.WebSocketDisconnect)


async def test_disconnect_type_without_evidence_is_diagnosed() -> None:
    """An endpoint raising WebSocketDisconnect itself, no disconnect received: its client still gets the frame."""
    exc = starlette.websockets.WebSocketDisconnect(1011)
    run = await drive(wrap(raising(exc)))
    assert frame_of(run)["component"] == "Generic Internal"
    assert run.error is exc


async def test_tracked_disconnect_sends_nothing() -> None:
    """With track_disconnect, a failure after websocket.disconnect sends nothing."""
    exc = KeyError("text")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        raise exc if message["type"] == "websocket.disconnect" else AssertionError(message)

    run = await drive(wrap(app, track_disconnect=True), [CONNECT, disconnect(1011)])
    assert [m["type"] for m in run.sent] == ["websocket.accept"]
    assert run.error is exc


async def test_send_failure_stops_delivery() -> None:
    """When sending the frame fails with OSError, no close follows and the app's exception stands."""
    exc = RuntimeError("boom")
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return CONNECT

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            raise ConnectionResetError
        sent.append(message)

    with pytest.raises(RuntimeError) as info:
        await wrap(raising(exc))(ws_scope(), receive, send)
    assert info.value is exc
    assert [m["type"] for m in sent] == ["websocket.accept"]


async def test_server_refusal_does_not_replace_the_app_exception() -> None:
    """A server that rejects ws_diag's messages with a non-OSError still sees the app's own exception."""
    exc = RuntimeError("boom")

    async def receive() -> dict[str, Any]:
        return CONNECT

    async def send(message: dict[str, Any]) -> None:
        if message["type"] != "websocket.accept":
            raise RuntimeError("Unexpected ASGI message")

    with pytest.raises(RuntimeError) as info:
        await wrap(raising(exc))(ws_scope(), receive, send)
    assert info.value is exc


class _BrokenClassifier(Classifier):
    def classify_one(self, exc: BaseException) -> Any:
        raise ZeroDivisionError("classifier bug")


async def test_diagnosis_failure_falls_back_to_plain_close() -> None:
    """If diagnosing fails, the app's exception gets a plain 1011 and is still raised."""
    exc = ValueError("app")
    middleware = DiagnosticsMiddleware(raising(exc), settings=DiagSettings(), classifier=_BrokenClassifier())
    run = await drive(middleware)
    assert run.sent[-1] == {"type": "websocket.close", "code": 1011, "reason": ""}
    assert run.of_type("websocket.send") == []
    assert run.error is exc


async def test_diagnosis_failure_on_close_keeps_the_apps_close() -> None:
    """If diagnosing an app's close fails, the app's own close goes out."""
    middleware = DiagnosticsMiddleware(closing(1011, "x"), settings=DiagSettings(), classifier=_BrokenClassifier())
    # A close carries no exception, so the classifier is not consulted; break the diagnoser instead.

    async def broken(exc: BaseException | None, *, failure_at: float | None = None) -> Diagnosis | None:
        raise ZeroDivisionError

    middleware.diagnoser.diagnose = broken  # type: ignore[method-assign]
    run = await drive(middleware)
    assert run.sent[-1] == {"type": "websocket.close", "code": 1011, "reason": "x"}


async def test_hanging_diagnosis_is_cut_at_the_deadline() -> None:
    """A diagnosis that hangs is abandoned at the backstop; the client still gets a Generic frame and 1011."""
    exc = ValueError("app")
    middleware = wrap(raising(exc), probe_timeout=0.05)

    async def hang(exc: BaseException | None, *, failure_at: float | None = None) -> Diagnosis | None:
        await asyncio.Event().wait()
        raise AssertionError

    middleware.diagnoser.diagnose = hang  # type: ignore[method-assign]
    run = await asyncio.wait_for(drive(middleware), timeout=5)
    assert run.sent[-1]["code"] == 1011
    assert frame_of(run)["component"] == "Generic Internal"
    assert run.error is exc


async def test_slow_client_is_bounded_by_send_timeout() -> None:
    """A send that never completes is abandoned after send_timeout; the app's exception stands."""
    exc = ValueError("app")

    async def receive() -> dict[str, Any]:
        return CONNECT

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            await asyncio.Event().wait()

    with pytest.raises(ValueError, match="app") as info:
        await asyncio.wait_for(wrap(raising(exc), send_timeout=0.05)(ws_scope(), receive, send), timeout=5)
    assert info.value is exc


async def test_cancellation_is_a_service_restart_not_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    """A server cancelling an open session (a shutdown): frame and 1012, cancellation re-raised, no diagnosis."""
    caplog.set_level(logging.DEBUG, logger="ws_diag")
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return CONNECT

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    cancelled = asyncio.CancelledError()
    with pytest.raises(asyncio.CancelledError) as info:
        await wrap(raising(cancelled))(ws_scope(), receive, send)
    assert info.value is cancelled
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert sent[-1]["code"] == 1012
    frame = json.loads(sent[1]["text"])["error"]
    assert (frame["component"], frame["source"], frame["retryable"]) == ("Service Restart", "shutdown", True)
    assert not [r for r in caplog.records if getattr(r, "ws_diag_event", None) == "diagnosis"]


async def test_cancellation_before_accept_sends_nothing() -> None:
    """A session cancelled before accept gets nothing from ws_diag: the cancellation propagates untouched."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return CONNECT

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await wrap(app)(ws_scope(), receive, send)
    assert sent == []


async def test_odd_sequences_pass_through() -> None:
    """Sends before accept and a second close are passed on unchanged for the server to judge."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.send", "text": "early"})
        await send({"type": "websocket.close", "code": 1000})
        await send({"type": "websocket.close", "code": 1011})

    run = await drive(wrap(app))
    assert run.sent == [
        {"type": "websocket.send", "text": "early"},
        {"type": "websocket.close", "code": 1000},
        {"type": "websocket.close", "code": 1011},
    ]


async def test_log_lines_carry_the_incident_id(caplog: pytest.LogCaptureFixture) -> None:
    """The diagnosis log line has the frame's incident id, component, code and timing."""
    caplog.set_level(logging.DEBUG, logger="ws_diag")
    run = await drive(wrap(raising(WebSocketComponentError.database_failure())))
    incident = frame_of(run)["incident_id"]
    records = [r for r in caplog.records if getattr(r, "ws_diag_event", None) == "diagnosis"]
    assert len(records) == 1
    record = records[0]
    assert record.incident_id == incident  # type: ignore[attr-defined]
    assert (record.component, record.code) == ("database", 4005)  # type: ignore[attr-defined]
    assert record.took_ms >= 0  # type: ignore[attr-defined]
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("websocket connect") for m in messages)
    assert any(m.startswith("websocket accepted") for m in messages)
    assert any(m.startswith("websocket failure intercepted") for m in messages)
    assert any(m.startswith("close sent") for m in messages)
    events = [getattr(r, "ws_diag_event", None) for r in caplog.records if r.name == "ws_diag"]
    assert events == ["connect", "accept", "intercepted", "diagnosis", "close_sent"]
    # The app's traceback is the server's to log, once; ws_diag logs none.
    assert not any(r.exc_info for r in caplog.records)


def strict_server_send(sent: list[dict[str, Any]]) -> Any:
    """A send like daphne's: close codes other than 1000 and 3000-4999 are refused."""

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "websocket.close" and not (message["code"] == 1000 or 3000 <= message["code"] <= 4999):
            raise Exception(f"invalid close code {message['code']} (must be 1000 or from [3000, 4999])")
        sent.append(message)

    return send


@pytest.mark.parametrize(
    ("app", "code"),
    [
        (raising(RuntimeError("x")), 4011),
        (closing(1011), 4011),
        (raising(WebSocketComponentError.database_failure()), 4005),
    ],
)
async def test_strict_server_gets_private_range_codes(app: Any, code: int) -> None:
    """On a server refusing registered codes (daphne), 1011 is retried as 4011; 4xxx codes pass as they are."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return CONNECT

    with contextlib.suppress(Exception):
        await wrap(app)(ws_scope(), receive, strict_server_send(sent))
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert sent[-1]["code"] == code


async def test_strict_server_legacy_codes() -> None:
    """In the legacy scheme a refused 1002 is retried as 4002, the private auth code."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return CONNECT

    app = wrap(raising(WebSocketComponentError.auth_failure()), code_scheme="legacy")
    with pytest.raises(WebSocketComponentError):
        await app(ws_scope(), receive, strict_server_send(sent))
    assert sent[-1]["code"] == 4002


async def test_slow_client_still_gets_the_apps_close() -> None:
    """When the frame is stuck behind a slow client, the close still goes out on a budget of its own."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return CONNECT

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            await asyncio.Event().wait()
        sent.append(message)

    await asyncio.wait_for(wrap(closing(1011), send_timeout=0.05)(ws_scope(), receive, send), timeout=5)
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.close"]
    assert sent[-1]["code"] == 1011


async def test_checker_with_a_longer_deadline_is_respected() -> None:
    """A checker given a longer timeout than probe_timeout still gets to name the component."""
    from ws_diag import HealthChecker
    from ws_diag.health.probes import CallableProbe, ProbeFailed

    async def slow_failure() -> None:
        await asyncio.sleep(0.1)
        raise ProbeFailed("database down")

    checker = HealthChecker([CallableProbe("database", Component.DATABASE, slow_failure)], timeout=2)
    middleware = DiagnosticsMiddleware(
        raising(TimeoutError()), settings=DiagSettings(probe_timeout=0.01), checker=checker
    )
    run = await drive(middleware)
    assert frame_of(run)["component"] == "Database"


async def test_own_errors_do_not_log_the_apps_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """A failing hook is logged with its own traceback only: the app's exception is not printed again."""

    def broken(event: Any) -> None:
        raise ValueError("hook bug")

    middleware = DiagnosticsMiddleware(
        raising(RuntimeError("the app's secret message")), settings=DiagSettings(), on_diagnosis=broken
    )
    await drive(middleware)
    logged = "\n".join(caplog.text.splitlines())
    assert "hook bug" in logged
    assert "the app's secret message" not in logged


async def test_preaccept_frame_names_nobody() -> None:
    """Before accept the frame carries no user_id, details or root cause, whatever expose_details says."""
    error = WebSocketComponentError.auth_failure("Token expired", user_id="u-42", details={"tenant": "acme"})
    run = await drive(wrap(raising(error, accept=False), expose_details=True))
    body = frame_of(run)
    assert (body["user_id"], body["details"], body["root_cause"]) == (None, None, None)
    assert body["message"] == "Token expired"


async def test_failed_accept_means_the_client_is_gone() -> None:
    """If the server's accept raises OSError, the app's following exception is passed on with nothing sent."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return CONNECT

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "websocket.accept":
            raise ConnectionResetError
        sent.append(message)

    with pytest.raises(ConnectionResetError):
        await wrap(raising(RuntimeError("unused")))(ws_scope(), receive, send)
    assert sent == []


async def test_disconnect_on_top_beats_a_component_error_in_its_context() -> None:
    """The client's disconnect, received while handling a component error: the client left, nothing is sent."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            raise WebSocketComponentError.database_failure()
        except WebSocketComponentError:
            message = await receive()
            raise starlette.websockets.WebSocketDisconnect(message["code"]) from None

    run = await drive(wrap(app))
    assert [m["type"] for m in run.sent] == ["websocket.accept"]


async def test_async_hooks_are_awaited() -> None:
    """An async on_diagnosis hook is awaited (within send_timeout)."""
    seen = []

    async def hook(event: Any) -> None:
        await asyncio.sleep(0)
        seen.append(event.code)

    await drive(
        DiagnosticsMiddleware(
            raising(WebSocketComponentError.redis_failure()), settings=DiagSettings(), on_diagnosis=hook
        )
    )
    assert seen == [4007]


@pytest.mark.parametrize("code", [None, [1011], {"x": 1}])
async def test_odd_close_code_values(code: Any) -> None:
    """A missing (None) or unhashable close code does not break the middleware: None means 1000."""
    run = await drive(wrap(closing(code)))
    assert run.close is not None
    assert run.close["code"] == (1000 if code is None else 1011)


# -- a framework's own generic error close (HTTP status + 4000: 4500) ------------------------------


def framework_closing(exc: Exception | None, code: int = 4500, *, accept: bool = True) -> Any:
    """A raw app standing in for a framework that catches the handler's exception and closes with its own code."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        if accept:
            await send({"type": "websocket.accept"})
        if exc is None:
            await send({"type": "websocket.close", "code": code, "reason": "Internal Server Error"})
            return
        try:
            raise exc
        except Exception:
            await send({"type": "websocket.close", "code": code, "reason": "Internal Server Error"})

    return app


async def test_framework_error_close_is_diagnosed_by_the_handled_exception() -> None:
    """A 4500 sent while an exception is handled is diagnosed by that exception (no setting needed); the
    framework's reason stays the frame's message."""
    run = await drive(wrap(framework_closing(asyncpg.exceptions.TooManyConnectionsError("pool exhausted"))))
    assert run.close is not None
    assert run.close["code"] == 4005
    frame = frame_of(run)
    assert (frame["component"], frame["source"], frame["message"]) == ("Database", "exception", "Internal Server Error")
    assert run.error is None


async def test_component_error_message_beats_the_framework_reason() -> None:
    """While a WebSocketComponentError is handled, its own message wins over the framework's generic reason."""
    error = WebSocketComponentError.redis_failure("Redis pub/sub unavailable")
    run = await drive(wrap(framework_closing(error)))
    assert run.close is not None
    assert run.close["code"] == 4007
    assert frame_of(run)["message"] == "Redis pub/sub unavailable"


async def test_framework_error_close_before_accept_gets_the_frame() -> None:
    """Before accept the framework's 4500 would be an HTTP 403: accept_close delivers the frame instead."""
    run = await drive(wrap(framework_closing(WebSocketComponentError.auth_failure("Token expired"), accept=False)))
    assert run.of_type("websocket.accept")
    assert run.close is not None
    assert run.close["code"] == 4002
    assert frame_of(run)["message"] == "Token expired"
    run = await drive(wrap(framework_closing(RuntimeError("x"), accept=False), preaccept="passthrough"))
    assert run.sent == [{"type": "websocket.close", "code": 4500, "reason": "Internal Server Error"}]


@pytest.mark.parametrize(("exc", "code"), [(None, 4500), (RuntimeError("x"), 4503), (RuntimeError("x"), 4429)])
async def test_own_4500_and_specific_statuses_pass_untouched(exc: Exception | None, code: int) -> None:
    """A 4500 sent while nothing is handled, and a specific status (4503, 4429) even while handling, are the
    app's own word."""
    run = await drive(wrap(framework_closing(exc, code)))
    assert run.sent[-1] == {"type": "websocket.close", "code": code, "reason": "Internal Server Error"}
    assert not run.of_type("websocket.send")


async def test_hand_written_1011_reason_still_wins() -> None:
    """An app's own 1011 reason beats the message of the WebSocketComponentError it handles, as before."""
    error = WebSocketComponentError.redis_failure("Redis pub/sub unavailable")
    run = await drive(wrap(framework_closing(error, 1011)))
    assert run.close is not None
    assert run.close["code"] == 4007
    assert frame_of(run)["message"] == "Internal Server Error"


# -- reraise ------------------------------------------------------------------------------------


def raising(exc: Exception, *, accept: bool = True) -> Any:
    """Accept (or not), then raise ``exc``."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        if accept:
            await send({"type": "websocket.accept"})
        raise exc

    return app


async def test_reraise_false_logs_a_delivered_failure_instead(caplog: pytest.LogCaptureFixture) -> None:
    """reraise=False: a diagnosed and delivered exception is logged once at ERROR with its traceback, not raised."""
    caplog.set_level(logging.DEBUG, logger="ws_diag")
    exc = RuntimeError("the app's bug")
    run = await drive(wrap(raising(exc), reraise=False))
    assert run.error is None
    assert run.close is not None
    records = [r for r in caplog.records if r.exc_info is not None]
    assert [(r.levelname, getattr(r, "ws_diag_event", None)) for r in records] == [("ERROR", "app_exception")]
    assert records[0].exc_info is not None
    assert records[0].exc_info[1] is exc
    assert getattr(records[0], "incident_id", None) == frame_of(run)["incident_id"]


async def test_reraise_default_and_undelivered_failures_raise() -> None:
    """By default the exception goes on to the server; with reraise=False too when nothing was delivered (the
    client left, the server refused the frame, a pre-accept failure left to the server)."""
    exc = RuntimeError("bug")
    assert (await drive(wrap(raising(exc)))).error is exc
    left = starlette.websockets.WebSocketDisconnect(1006)

    async def departed(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()  # the disconnect, in hand
        raise left if message["type"] == "websocket.disconnect" else exc

    assert (await drive(wrap(departed, reraise=False))).error is left

    async def swallowed(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()  # the disconnect, swallowed: the server refuses ws_diag's frame
        raise exc

    assert (await drive(wrap(swallowed, reraise=False))).error is exc
    passthrough = await drive(wrap(raising(exc, accept=False), reraise=False, preaccept="passthrough"))
    assert passthrough.error is exc
