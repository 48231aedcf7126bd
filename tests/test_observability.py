"""Hooks, Prometheus metrics, OpenTelemetry span events, structured logs and the Python client helper."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
import structlog
from harness import CONNECT, drive
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from ws_diag import Component, DiagnosisEvent, DiagnosticsMiddleware, DiagSettings, WebSocketComponentError
from ws_diag.client import explain, parse_frame
from ws_diag.health.probes import CallableProbe, ProbeFailed
from ws_diag.integrations.opentelemetry import span_event
from ws_diag.integrations.prometheus import PrometheusMetrics
from ws_diag.logs import JsonFormatter

pytestmark = pytest.mark.asyncio


def failing(exc: BaseException) -> Any:
    """An app that accepts, then raises ``exc``."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        raise exc

    return app


async def test_on_diagnosis_hook_gets_the_event() -> None:
    """Hooks receive the diagnosis, the wire code, the app's exception and whether it was delivered."""
    events: list[DiagnosisEvent] = []
    exc = WebSocketComponentError.redis_failure("Cache down")
    middleware = DiagnosticsMiddleware(failing(exc), settings=DiagSettings(), on_diagnosis=events.append)
    run = await drive(middleware, [CONNECT])
    (event,) = events
    assert event.diagnosis.component is Component.REDIS
    assert (event.code, event.http_status, event.delivered) == (4007, None, True)
    assert event.exception is exc
    assert event.path == "/ws"
    assert json.loads(run.sent[1]["text"])["error"]["incident_id"] == event.diagnosis.incident_id


async def test_failing_hook_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """A hook that raises is logged; the client still gets its frame and the app's exception stands."""

    def broken(event: DiagnosisEvent) -> None:
        raise RuntimeError("hook bug")

    exc = WebSocketComponentError.database_failure()
    middleware = DiagnosticsMiddleware(failing(exc), settings=DiagSettings(), on_diagnosis=[broken])
    run = await drive(middleware, [CONNECT])
    assert run.close is not None
    assert run.close["code"] == 4005
    assert run.error is exc
    assert any("hook" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


async def test_prometheus_metrics() -> None:
    """Diagnosed failures are counted by component, source and delivery; probes feed latency, up/down and check time."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry=registry)

    async def down() -> None:
        raise ProbeFailed("down")

    probe = CallableProbe("database", Component.DATABASE, down)
    middleware = DiagnosticsMiddleware(
        failing(TimeoutError()),
        settings=DiagSettings(),
        probes=[probe],
        listeners=[metrics],
    )
    for _ in range(3):
        await drive(middleware, [CONNECT])
    diagnoses = registry.get_sample_value(
        "ws_diag_diagnoses_total", {"component": "database", "source": "probe", "delivered": "true"}
    )
    assert diagnoses == 3
    assert (
        registry.get_sample_value("ws_diag_diagnosis_closes_total", {"component": "database", "close_code": "4005"})
        == 3
    )
    assert registry.get_sample_value("ws_diag_sessions_closed_total", {"outcome": "diagnosed"}) == 3
    assert registry.get_sample_value("ws_diag_component_up", {"probe": "database", "component": "database"}) == 0
    checked = registry.get_sample_value(
        "ws_diag_probe_last_check_timestamp_seconds", {"probe": "database", "component": "database"}
    )
    assert checked is not None
    assert checked > 0
    assert registry.get_sample_value("ws_diag_probe_latency_seconds_count", {"probe": "database"}) == 1  # cached


async def test_opentelemetry_span_event_not_per_message() -> None:
    """With OpenTelemetry's ASGI middleware outside, a diagnosis adds one span event to the connection's span."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    inner = DiagnosticsMiddleware(
        failing(WebSocketComponentError.database_failure()), settings=DiagSettings(), on_diagnosis=span_event
    )
    app = OpenTelemetryMiddleware(inner, tracer_provider=provider)
    await drive(app, [CONNECT])
    events = [e for span in exporter.get_finished_spans() for e in span.events if e.name == "ws_diag.diagnosis"]
    assert len(events) == 1
    assert events[0].attributes is not None
    assert events[0].attributes["ws_diag.component"] == "database"
    assert events[0].attributes["ws_diag.close_code"] == 4005


async def test_json_log_lines_carry_the_fields() -> None:
    """With ws_diag.logs.JsonFormatter, the diagnosis line is JSON with component, code, incident id and timing."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("ws_diag")
    logger.addHandler(handler)
    try:
        await drive(DiagnosticsMiddleware(failing(WebSocketComponentError.database_failure()), settings=DiagSettings()))
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    diagnosis = next(line for line in lines if line.get("ws_diag_event") == "diagnosis")
    assert diagnosis["component"] == "database"
    assert diagnosis["code"] == 4005
    assert len(diagnosis["incident_id"]) == 16
    assert diagnosis["took_ms"] >= 0


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


async def test_client_explain_with_frame() -> None:
    """explain() pairs the close with the frame: component, message, suggestions, retryable, incident id."""
    run = await drive(DiagnosticsMiddleware(failing(WebSocketComponentError.database_failure("DB down"))))
    frame_text = run.sent[1]["text"]
    result = explain(4005, "Database failure", frame_text)
    assert (result.component, result.message, result.retryable, result.frame_code) == (
        "Database",
        "DB down",
        True,
        4005,
    )
    assert result.incident_id == json.loads(frame_text)["error"]["incident_id"]
    assert result.as_dict()["incidentId"] == result.incident_id
    assert parse_frame(frame_text.encode()) == json.loads(frame_text)["error"]


@pytest.mark.parametrize(
    ("code", "scheme", "component", "retryable"),
    [
        (4007, "private", "Redis", True),
        (4002, "private", "Authentication", False),
        (4005, "legacy", "Database", True),
        (1005, "legacy", None, True),
        (1007, "legacy", "Redis", True),
        (1000, "private", None, False),
        (1006, "private", None, True),
        (None, "private", None, True),
        (4321, "private", None, False),  # an app's own code: the retry table stops (no reconnect loop)
    ],
)
async def test_client_explain_without_frame(
    code: int | None, scheme: Any, component: str | None, retryable: bool
) -> None:
    """Without a frame explain() still names the component from the code, in either scheme."""
    result = explain(code, "", "not a frame", scheme=scheme)
    assert (result.component, result.retryable) == (component, retryable)
