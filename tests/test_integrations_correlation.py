"""Correlation ids: the inbound request id in the log record, the event and (opted in) the frame; the connect line."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import jsonschema
import pydantic
import pytest
from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
from harness import CONNECT, drive, text, ws_scope
from servers import run_server

from clients import Session, talk
from ws_diag import DiagnosisEvent, DiagnosticsMiddleware, DiagSettings, WebSocketComponentError
from ws_diag.diagnosis import valid_request_id
from ws_diag.integrations.correlation import CorrelationIdListener
from ws_diag.lifecycle import Connection, ConnectionListener
from ws_diag.wire.frame import frame_schema


class Seen(ConnectionListener):
    """Keeps each diagnosed connection with its event."""

    def __init__(self) -> None:
        self.diagnosed_: list[tuple[Connection, DiagnosisEvent]] = []

    def diagnosed(self, connection: Connection, event: DiagnosisEvent) -> None:
        """Keep it."""
        self.diagnosed_.append((connection, event))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accept, tell the client asgi-correlation-id's id (if any), then fail with Database."""
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": f"cid={correlation_id.get()}"})
    await receive()
    raise WebSocketComponentError.database_failure("no database")


async def session(url: str, headers: Sequence[tuple[str, str]] = ()) -> Session:
    """One session with these request headers; what the client saw."""
    return await talk(url + "/ws", headers=headers)


def diagnosis_record(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    """The single ``diagnosis:`` record."""
    (record,) = [r for r in caplog.records if getattr(r, "ws_diag_event", None) == "diagnosis"]
    return record


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["hypercorn", "uvicorn"])
async def test_raw_header_reaches_log_event_and_frame(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """X-Request-ID is on the diagnosis: line, the event, the Connection and (opted in) the frame."""
    seen = Seen()
    settings = DiagSettings(request_id_in_frame=True)
    async with run_server(DiagnosticsMiddleware(app, settings=settings, listeners=[seen]), kind) as url:
        result = await session(url, [("X-Request-ID", "req-42.a:b")])
    assert result.code == 4005
    assert result.frame["request_id"] == "req-42.a:b"  # Session.frames checks the schema
    assert diagnosis_record(caplog).request_id == "req-42.a:b"  # type: ignore[attr-defined]
    ((connection, event),) = seen.diagnosed_
    assert event.diagnosis.request_id == connection.request_id == "req-42.a:b"


@pytest.mark.asyncio
async def test_frame_has_no_request_id_unless_configured(caplog: pytest.LogCaptureFixture) -> None:
    """By default the frame is unchanged (no request_id key); the log line still has the id."""
    async with run_server(DiagnosticsMiddleware(app, settings=DiagSettings()), "uvicorn") as url:
        result = await session(url, [("X-Request-ID", "abc")])
    assert "request_id" not in result.frame
    assert diagnosis_record(caplog).request_id == "abc"  # type: ignore[attr-defined]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "value", ["<script>alert(1)</script>", "a" * 129, "id with spaces", "caf\u00e9", "x\u2028y"], ids=repr
)
async def test_invalid_header_is_never_echoed(value: str, caplog: pytest.LogCaptureFixture) -> None:
    """An over-long or odd-charset X-Request-ID is dropped: null in the frame, None in the log."""
    settings = DiagSettings(request_id_in_frame=True)
    scope = ws_scope()
    scope["headers"] = [(b"x-request-id", value.encode("utf-8"))]
    run = await drive(DiagnosticsMiddleware(app, settings=settings), [CONNECT, text("hi")], scope=scope)
    frame = next(m["text"] for m in run.sent if m["type"] == "websocket.send" and m["text"].startswith("{"))
    assert json.loads(frame)["error"]["request_id"] is None
    jsonschema.validate(json.loads(frame), frame_schema())
    assert value not in frame
    assert diagnosis_record(caplog).request_id is None  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_header_name_is_a_setting(caplog: pytest.LogCaptureFixture) -> None:
    """request_id_header picks another header; None reads none."""
    settings = DiagSettings(request_id_header="X-Correlation-ID", request_id_in_frame=True)
    async with run_server(DiagnosticsMiddleware(app, settings=settings), "uvicorn") as url:
        result = await session(url, [("X-Request-ID", "wrong"), ("X-Correlation-ID", "right")])
    assert result.frame["request_id"] == "right"
    off = DiagSettings(request_id_header=None, request_id_in_frame=True)
    scope = ws_scope()
    scope["headers"] = [(b"x-request-id", b"abc")]
    run = await drive(DiagnosticsMiddleware(app, settings=off), [CONNECT, text("hi")], scope=scope)
    assert any('"request_id":null' in m.get("text", "") for m in run.sent)


@pytest.mark.asyncio
@pytest.mark.parametrize("client_id", [None, uuid.uuid4().hex])
async def test_asgi_correlation_id_in_front(client_id: str | None, caplog: pytest.LogCaptureFixture) -> None:
    """With CorrelationIdMiddleware in front, its id (the client's or one it generated) is the request id."""
    seen = Seen()
    settings = DiagSettings(request_id_in_frame=True)
    inner = DiagnosticsMiddleware(app, settings=settings, listeners=[CorrelationIdListener(), seen])
    headers = [("X-Request-ID", client_id)] if client_id else []
    async with run_server(CorrelationIdMiddleware(inner), "uvicorn") as url:
        result = await session(url, headers)
    chosen = result.messages[0].removeprefix("cid=")
    assert valid_request_id(chosen) == chosen
    if client_id is not None:
        assert chosen == client_id
    assert result.frame["request_id"] == chosen
    assert diagnosis_record(caplog).request_id == chosen  # type: ignore[attr-defined]
    ((connection, event),) = seen.diagnosed_
    assert event.diagnosis.request_id == connection.request_id == chosen


@pytest.mark.asyncio
async def test_listener_reads_the_context_variable_not_the_header() -> None:
    """When asgi-correlation-id uses another header and leaves the scope alone, only the listener finds the id."""
    settings = DiagSettings(request_id_in_frame=True)
    client_id = uuid.uuid4().hex
    frames = []
    for listeners in ([], [CorrelationIdListener()]):
        inner = DiagnosticsMiddleware(app, settings=settings, listeners=listeners)
        outer = CorrelationIdMiddleware(inner, header_name="X-Correlation-ID", update_request_header=False)
        async with run_server(outer, "uvicorn") as url:
            frames.append((await session(url, [("X-Correlation-ID", client_id)])).frame)
    assert [frame["request_id"] for frame in frames] == [None, client_id]


def test_request_id_header_must_be_a_header_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request_id_header that is not an HTTP token fails, naming the field; an empty one reads none."""
    with pytest.raises(pydantic.ValidationError, match="request_id_header"):
        DiagSettings(request_id_header="X Request ID")
    monkeypatch.setenv("WS_DIAG_REQUEST_ID_HEADER", "")
    assert DiagSettings().request_id_header is None
    monkeypatch.setenv("WS_DIAG_REQUEST_ID_HEADER", "X-Correlation-ID")
    assert DiagSettings().request_id_header == "X-Correlation-ID"


def test_valid_request_id_bounds() -> None:
    """At most 128 characters of a safe charset; bytes are decoded as ASCII; anything else is None."""
    assert valid_request_id("a" * 128) == "a" * 128
    assert valid_request_id(b"req-1") == "req-1"
    assert [valid_request_id(v) for v in ("", "a" * 129, "a b", b"\xff", 42, None, "a\nb")] == [None] * 7


@pytest.mark.asyncio
@pytest.mark.parametrize("log_client", [True, False])
async def test_connect_line_client_address(log_client: bool, caplog: pytest.LogCaptureFixture) -> None:
    """The connect DEBUG line names the client's address unless log_client_address is false."""
    caplog.set_level(logging.DEBUG, logger="ws_diag")
    scope = ws_scope()
    scope["client"] = ("203.0.113.7", 50123)
    await drive(DiagnosticsMiddleware(app, settings=DiagSettings(log_client_address=log_client)), scope=scope)
    (line,) = [r.getMessage() for r in caplog.records if getattr(r, "ws_diag_event", None) == "connect"]
    assert ("203.0.113.7" in line) is log_client
    assert line.startswith("websocket connect: path=/ws")


def test_log_fields_refuse_reserved_names() -> None:
    """Connection.add_log_fields refuses names a log record or ws_diag already uses."""
    connection = Connection(ws_scope())
    connection.add_log_fields(trace_id="abc")
    for name in ("msg", "incident_id", "request_id", "message"):
        with pytest.raises(ValueError, match=name):
            connection.add_log_fields(**{name: 1})
    assert connection.log_fields == {"trace_id": "abc"}
