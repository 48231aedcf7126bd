"""OpenTelemetry: the diagnosis reaches the connection's trace in both middleware orders, under real servers."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from harness import CONNECT, drive, failing
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, format_span_id, format_trace_id
from servers import run_server
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from clients import CLIENT_TIMEOUT
from ws_diag import DiagnosticsMiddleware, DiagSettings, WebSocketComponentError
from ws_diag.integrations.opentelemetry import EVENT_NAME, SPAN_NAME, OpenTelemetryListener, span_event

pytestmark = pytest.mark.asyncio

ORDERS = ("ws_diag_outside", "ws_diag_inside")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """One behaviour per path: raise after or before accept, close 1011, close normally, see the client leave."""
    path = scope["path"]
    await receive()  # websocket.connect
    if path == "/raise-before-accept":
        raise WebSocketComponentError.database_failure("no database")
    await send({"type": "websocket.accept"})
    await receive()  # the client's "hello", or its departure
    if path == "/raise":
        raise WebSocketComponentError.redis_failure("no cache")
    if path == "/close-1011":
        await send({"type": "websocket.close", "code": 1011})
    elif path == "/normal":
        await send({"type": "websocket.close", "code": 1000})
    elif path == "/client-leaves":
        while (await receive())["type"] != "websocket.disconnect":
            pass


@pytest.fixture
def exporter() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A tracer provider exporting every finished span into memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def build(order: str, provider: TracerProvider) -> Any:
    """ws_diag with its OpenTelemetry listener, outside or inside OpenTelemetry's ASGI middleware."""
    settings = DiagSettings()
    listener = OpenTelemetryListener(tracer_provider=provider)
    if order == "ws_diag_outside":
        return DiagnosticsMiddleware(
            OpenTelemetryMiddleware(app, tracer_provider=provider), settings=settings, listeners=[listener]
        )
    return OpenTelemetryMiddleware(
        DiagnosticsMiddleware(app, settings=settings, listeners=[listener]), tracer_provider=provider
    )


async def session(url: str, path: str, *, leave: bool = False, headers: Sequence[tuple[str, str]] = ()) -> list[str]:
    """Run one session; return the messages received. With ``leave`` the client closes first."""
    messages: list[str] = []
    async with asyncio.timeout(CLIENT_TIMEOUT), connect(url + path, additional_headers=list(headers)) as ws:
        if leave:
            await ws.close()
            return messages
        try:
            if path != "/raise-before-accept":
                await ws.send("hello")
            while True:
                message = await ws.recv()
                messages.append(message if isinstance(message, str) else message.decode())
        except ConnectionClosed:
            pass
    return messages


async def server_span(exporter: InMemorySpanExporter, path: str) -> ReadableSpan:
    """The finished SERVER span of the connection to ``path`` (polled: it ends after the client saw the close)."""
    async with asyncio.timeout(CLIENT_TIMEOUT):
        while True:
            for span in exporter.get_finished_spans():
                if span.kind is SpanKind.SERVER and path in span.name:
                    return span
            await asyncio.sleep(0.01)


def trace_spans(exporter: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    """Every finished span of one trace."""
    return [s for s in exporter.get_finished_spans() if s.context is not None and s.context.trace_id == trace_id]


def diagnosis_events(spans: list[ReadableSpan]) -> list[tuple[ReadableSpan, dict[str, Any]]]:
    """Every ``ws_diag.diagnosis`` event in ``spans``, with the span carrying it."""
    return [(s, dict(e.attributes or {})) for s in spans for e in s.events if e.name == EVENT_NAME]


def diagnosis_record(caplog: pytest.LogCaptureFixture, incident_id: str) -> logging.LogRecord:
    """The ``diagnosis:`` record with this incident id."""
    (record,) = [
        r
        for r in caplog.records
        if getattr(r, "ws_diag_event", None) == "diagnosis" and getattr(r, "incident_id", None) == incident_id
    ]
    return record


@pytest.mark.parametrize("kind", ["hypercorn", "uvicorn"])
@pytest.mark.parametrize("order", ORDERS)
async def test_raised_failure_reaches_the_connection_trace(
    order: str, kind: str, exporter: tuple[TracerProvider, InMemorySpanExporter], caplog: pytest.LogCaptureFixture
) -> None:
    """An exception after accept gives one diagnosis event, with the frame's incident id, in the connection's trace."""
    provider, memory = exporter
    async with run_server(build(order, provider), kind) as url:
        messages = await session(url, "/raise")
        server = await server_span(memory, "/raise")
    incident = json.loads(messages[-1])["error"]["incident_id"]
    assert server.context is not None
    (carrier, attributes), *more = diagnosis_events(trace_spans(memory, server.context.trace_id))
    assert not more
    assert attributes["ws_diag.incident_id"] == incident
    assert (attributes["ws_diag.component"], attributes["ws_diag.close_code"]) == ("redis", 4007)
    assert server.status.status_code is StatusCode.ERROR
    if order == "ws_diag_inside":
        # The span was still open: the event and the component are on the connection's span itself.
        assert carrier is server
        assert server.attributes is not None
        assert server.attributes["ws_diag.component"] == "redis"
    else:
        # OpenTelemetry's middleware had ended its span: a short span of ws_diag's, its child.
        assert carrier.name == SPAN_NAME
        assert carrier.parent is not None
        assert carrier.parent.span_id == server.context.span_id
        assert carrier.status.status_code is StatusCode.ERROR
        assert carrier.status.description == "Redis failure"
    record = diagnosis_record(caplog, incident)
    assert record.trace_id == format_trace_id(server.context.trace_id)  # type: ignore[attr-defined]
    assert record.span_id == format_span_id(server.context.span_id)  # type: ignore[attr-defined]


@pytest.mark.parametrize("order", ORDERS)
async def test_app_close_sets_the_connection_span_to_error(
    order: str, exporter: tuple[TracerProvider, InMemorySpanExporter], caplog: pytest.LogCaptureFixture
) -> None:
    """An app's close 1011 marks the connection's span ERROR with the component and carries the event."""
    provider, memory = exporter
    async with run_server(build(order, provider), "uvicorn") as url:
        messages = await session(url, "/close-1011")
        server = await server_span(memory, "/close-1011")
    incident = json.loads(messages[-1])["error"]["incident_id"]
    assert server.context is not None
    (carrier, attributes), *more = diagnosis_events(trace_spans(memory, server.context.trace_id))
    assert not more
    assert carrier is server
    assert attributes["ws_diag.incident_id"] == incident
    assert server.status.status_code is StatusCode.ERROR
    assert server.status.description == "Generic Internal failure"
    assert diagnosis_record(caplog, incident).trace_id == format_trace_id(server.context.trace_id)  # type: ignore[attr-defined]


@pytest.mark.parametrize("order", ORDERS)
async def test_failure_before_accept_is_not_lost(
    order: str, exporter: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """An exception before accept still gives the event, in the trace the client's traceparent started."""
    provider, memory = exporter
    async with run_server(build(order, provider), "hypercorn") as url:
        messages = await session(url, "/raise-before-accept", headers=[("traceparent", TRACEPARENT)])
        server = await server_span(memory, "/raise-before-accept")
    incident = json.loads(messages[-1])["error"]["incident_id"]
    assert server.context is not None
    assert format_trace_id(server.context.trace_id) == TRACE_ID
    events = diagnosis_events(trace_spans(memory, server.context.trace_id))
    assert [attributes["ws_diag.incident_id"] for _, attributes in events] == [incident]
    ((carrier, attributes),) = events
    assert attributes["ws_diag.component"] == "database"
    assert carrier.status.status_code is StatusCode.ERROR
    if order == "ws_diag_inside":
        assert carrier is server
    else:  # nothing of the app's passed through ws_diag inside the span: a span of ws_diag's in the same trace
        assert carrier.name == SPAN_NAME


@pytest.mark.parametrize("order", ORDERS)
async def test_normal_close_and_departure_are_not_errors(
    order: str, exporter: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """A normal close and a client leaving add no event and leave the span's status alone."""
    provider, memory = exporter
    async with run_server(build(order, provider), "uvicorn") as url:
        await session(url, "/normal")
        await session(url, "/client-leaves", leave=True)
        spans = [await server_span(memory, "/normal"), await server_span(memory, "/client-leaves")]
    for span in spans:
        assert span.status.status_code is StatusCode.UNSET
        assert span.attributes is not None
        assert "ws_diag.component" not in span.attributes
    assert not diagnosis_events(list(memory.get_finished_spans()))
    assert not [s for s in memory.get_finished_spans() if s.name == SPAN_NAME]


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
