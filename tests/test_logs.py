"""Log lines (ws_diag.logs): JsonFormatter keeps every extra attribute and trace ids; structlog sees the fields."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from harness import CONNECT, drive, failing
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import format_span_id, format_trace_id, get_current_span

from ws_diag import DiagnosticsMiddleware, DiagSettings, WebSocketComponentError
from ws_diag.logs import JsonFormatter


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The ``ws_diag`` logger (and the ``test.logs`` one) writing JSON lines into a buffer, at DEBUG."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    loggers = [logging.getLogger("ws_diag"), logging.getLogger("test.logs")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    """Every line written so far, each parsed as one JSON object."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture
def otel_record_factory() -> Iterator[None]:
    """Stamp records with the current span's ids as OpenTelemetry's LoggingInstrumentor does (same attribute names)."""
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        context = get_current_span().get_span_context()
        record.otelTraceID = format_trace_id(context.trace_id)
        record.otelSpanID = format_span_id(context.span_id)
        record.otelTraceSampled = context.trace_flags.sampled
        record.otelServiceName = "ws-diag-tests"
        return record

    logging.setLogRecordFactory(factory)
    try:
        yield
    finally:
        logging.setLogRecordFactory(previous)


def test_user_extras_are_kept(json_lines: io.StringIO) -> None:
    """Whatever a caller passes as extra= (nested, non-JSON types too) appears in the line, next to the basics."""

    class Opaque:
        def __str__(self) -> str:
            return "opaque-value"

    logging.getLogger("test.logs").info(
        "user %s logged in", "alice", extra={"user_id": "u-42", "tenant": {"id": 7, "plan": "pro"}, "obj": Opaque()}
    )
    (line,) = parsed(json_lines)
    assert list(line)[:4] == ["time", "level", "logger", "message"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", line["time"])
    assert (line["level"], line["logger"], line["message"]) == ("INFO", "test.logs", "user alice logged in")
    assert line["user_id"] == "u-42"
    assert line["tenant"] == {"id": 7, "plan": "pro"}
    assert line["obj"] == "opaque-value"
    assert "levelname" not in line
    assert "msg" not in line
    assert "args" not in line


def test_traceback_is_one_field(json_lines: io.StringIO) -> None:
    """A record with exc_info keeps the traceback in a single ``traceback`` string."""
    try:
        raise ValueError("bad input")
    except ValueError:
        logging.getLogger("test.logs").exception("failed")
    (line,) = parsed(json_lines)
    assert line["traceback"].startswith("Traceback (most recent call last):")
    assert line["traceback"].endswith("ValueError: bad input")


def test_caller_renames_merge_over_ours() -> None:
    """rename_fields given by the caller apply on top of ws_diag's renames; other python-json-logger options work."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(rename_fields={"message": "msg_text"}, static_fields={"service": "chat"}))
    logger = logging.getLogger("test.logs.rename")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("hello")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    line = json.loads(stream.getvalue())
    assert (line["msg_text"], line["level"], line["service"]) == ("hello", "WARNING", "chat")


@pytest.mark.asyncio
@pytest.mark.usefixtures("otel_record_factory")
async def test_diagnosis_line_keeps_trace_ids_and_ws_diag_fields(json_lines: io.StringIO) -> None:
    """The middleware's diagnosis line, logged inside a span, carries ws_diag's fields and the trace and span ids."""
    tracer = TracerProvider().get_tracer("test")
    middleware = DiagnosticsMiddleware(failing(WebSocketComponentError.database_failure()), settings=DiagSettings())
    with tracer.start_as_current_span("websocket") as span:
        await drive(middleware, [CONNECT])
    context = span.get_span_context()
    diagnosis = next(line for line in parsed(json_lines) if line.get("ws_diag_event") == "diagnosis")
    assert (diagnosis["component"], diagnosis["code"], diagnosis["level"]) == ("database", 4005, "WARNING")
    assert len(diagnosis["incident_id"]) == 16
    assert diagnosis["took_ms"] >= 0
    assert diagnosis["otelTraceID"] == format_trace_id(context.trace_id)
    assert diagnosis["otelSpanID"] == format_span_id(context.span_id)
    assert diagnosis["otelTraceSampled"] is True
    assert diagnosis["otelServiceName"] == "ws-diag-tests"


@pytest.mark.asyncio
async def test_structlog_sees_the_fields() -> None:
    """structlog's ProcessorFormatter with ExtraAdder renders the same fields as JSON."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=structlog.processors.JSONRenderer(),
            foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.ExtraAdder()],
        )
    )
    logger = logging.getLogger("ws_diag")
    logger.addHandler(handler)
    try:
        await drive(DiagnosticsMiddleware(failing(WebSocketComponentError.auth_failure()), settings=DiagSettings()))
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    diagnosis = next(line for line in lines if line.get("ws_diag_event") == "diagnosis")
    assert (diagnosis["component"], diagnosis["code"], diagnosis["level"]) == ("auth", 4002, "warning")
