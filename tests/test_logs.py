"""Log lines (ws_diag.logs): JsonFormatter keeps every extra attribute and trace ids; structlog sees the fields."""

from __future__ import annotations

import ast
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from harness import CONNECT, drive, failing
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import format_span_id, format_trace_id, get_current_span

from ws_diag import DiagnosticsMiddleware, DiagSettings, WebSocketComponentError
from ws_diag.logs import JsonFormatter, LogEvent


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


PACKAGE = Path(__file__).resolve().parent.parent / "ws_diag"
# Helpers that log a ws_diag_event handed to them: the argument (by position) their callers give it in.
FORWARDING = {"log_own_error": 2}


def _emitted() -> dict[str, list[str]]:
    """Every ``ws_diag_event`` value the package puts on a record (string literals and LogEvent members): where."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        where = str(path.relative_to(PACKAGE.parent))
        for node in ast.walk(ast.parse(path.read_text("utf-8"), where)):
            values: list[ast.expr] = []
            if isinstance(node, ast.Dict):
                values = [v for k, v in zip(node.keys, node.values, strict=True) if _is_event_key(k)]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORWARDING:
                values = [node.args[FORWARDING[node.func.id]]]
            for value in values:
                found.setdefault(_event_value(value, where), []).append(f"{where}:{value.lineno}")
    return found


def _is_event_key(key: ast.expr | None) -> bool:
    return isinstance(key, ast.Constant) and key.value == "ws_diag_event"


def _event_value(value: ast.expr, where: str) -> str:
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return value.value
    if isinstance(value, ast.Attribute) and isinstance(value.value, ast.Name) and value.value.id == "LogEvent":
        return str(LogEvent[value.attr])
    if isinstance(value, ast.Name) and where.endswith("intervention.py"):
        return "<forwarded>"  # log_own_error's own parameter: its callers are scanned above
    msg = f"{where}:{value.lineno}: ws_diag_event must be a string literal or a LogEvent member, got {ast.dump(value)}"
    raise AssertionError(msg)


def test_every_emitted_log_event_is_in_the_vocabulary_and_every_member_is_emitted() -> None:
    """Each ws_diag_event the package emits is a LogEvent member, and each member is emitted somewhere."""
    emitted = _emitted()
    emitted.pop("<forwarded>", None)
    unknown = {value: sites for value, sites in emitted.items() if value not in set(LogEvent)}
    assert not unknown, f"ws_diag_event values missing from ws_diag.logs.LogEvent: {unknown}"
    never = sorted(str(member) for member in LogEvent if member not in emitted)
    assert not never, f"LogEvent members nothing emits: {never}"


def test_the_scan_sees_literals_members_and_forwarded_events() -> None:
    """The scan reads a literal, a LogEvent member and log_own_error's argument (a miss there would hide drift)."""
    emitted = _emitted()
    assert any(site.startswith("ws_diag/lifecycle.py") for site in emitted["hook_failed"])  # a LogEvent member
    assert any(site.startswith("ws_diag/delivery.py") for site in emitted["repaired"])  # a string literal
    assert emitted["fallback"]  # only ever given to log_own_error
    with pytest.raises(AssertionError, match="string literal or a LogEvent member"):
        _event_value(ast.parse("f'x'", mode="eval").body, "ws_diag/x.py")


def test_log_events_are_strings_with_a_meaning() -> None:
    """A LogEvent is its plain string on a record, and carries a level, a logger and a one-line meaning."""
    record = logging.makeLogRecord({"ws_diag_event": LogEvent.DIAGNOSIS})
    assert record.ws_diag_event == "diagnosis"
    assert json.dumps({"event": LogEvent.DIAGNOSIS}) == '{"event": "diagnosis"}'
    for member in LogEvent:
        assert member.level in {"DEBUG", "INFO", "WARNING", "ERROR"}
        assert member.logger.startswith("ws_diag")
        assert member.meaning
        assert "\n" not in member.meaning


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
