"""OpenTelemetry: one ``ws_diag.diagnosis`` span event per diagnosis, on the connection's span.

Needs the ``otel`` extra (``opentelemetry-api``)::

    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from ws_diag.integrations.opentelemetry import OpenTelemetryListener

    app = DiagnosticsMiddleware(app, listeners=[OpenTelemetryListener()])
    app = OpenTelemetryMiddleware(app)  # or inside ws_diag: both orders work

Which span is the connection's: the span current when the scope arrives (OpenTelemetry's
ASGI middleware outside ws_diag), else the span current when the app's accept passes
through ws_diag's send wrapper (the middleware inside ws_diag: it sends the app's
messages in its server span's context). Both cost one context lookup per connection,
never anything per message.

On a diagnosis:

- the span is still open (the middleware outside ws_diag, or an app's own close): it
  gets the event, the attributes ``ws_diag.component``, ``ws_diag.incident_id`` and
  ``ws_diag.close_code``, and status ERROR described ``"<Component> failure"``;
- the span has ended (the app raised and the middleware inside ws_diag already closed its
  span, recording the exception as ERROR itself), or none was ever seen (the app raised
  before accept under a middleware inside ws_diag): a short ``ws_diag.diagnosis`` span
  carries the event and the ERROR status, as a child of the connection's span, else of
  the trace context in the request headers (``traceparent``, through the global
  propagator), else as a root span.

A normal close, a client leaving and a graceful restart add nothing (they are not
diagnoses). The ``diagnosis:`` log record of a connection whose span was found carries
``trace_id`` and ``span_id`` (hex, as OpenTelemetry formats them) next to its
``incident_id``; the span event carries the incident id: one links to the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .._optional import missing

try:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode, format_span_id, format_trace_id
except ModuleNotFoundError as exc:
    missing(exc, "opentelemetry", extra="otel", feature=__name__, package="opentelemetry-api")

from ..lifecycle import Connection, ConnectionListener

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.util.types import AttributeValue

    from ..lifecycle import DiagnosisEvent

__all__ = ["EVENT_NAME", "SPAN_NAME", "OpenTelemetryListener", "diagnosis_attributes", "span_event"]

EVENT_NAME = "ws_diag.diagnosis"
SPAN_NAME = "ws_diag.diagnosis"


def diagnosis_attributes(event: DiagnosisEvent) -> dict[str, AttributeValue]:
    """The span event's attributes: component, incident id, source, took_ms, delivered, and
    where they apply close code, HTTP status, probe and request id."""
    diagnosis = event.diagnosis
    attributes: dict[str, AttributeValue] = {
        "ws_diag.component": diagnosis.component.key,
        "ws_diag.incident_id": diagnosis.incident_id,
        "ws_diag.source": diagnosis.source,
        "ws_diag.took_ms": event.took_ms,
        "ws_diag.delivered": event.delivered,
    }
    if event.code is not None:
        attributes["ws_diag.close_code"] = event.code
    if event.http_status is not None:
        attributes["ws_diag.http_status"] = event.http_status
    if diagnosis.probe is not None:
        attributes["ws_diag.probe"] = diagnosis.probe
    if diagnosis.request_id is not None:
        attributes["ws_diag.request_id"] = diagnosis.request_id
    return attributes


def span_event(event: DiagnosisEvent) -> None:
    """An ``on_diagnosis`` hook: add the ``ws_diag.diagnosis`` event to the span current when it runs.

    Kept for existing code; it loses the event when the current span has already ended
    (the app raised under OpenTelemetry's middleware placed inside ws_diag) or was never
    entered. :class:`OpenTelemetryListener` does not.
    """
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(EVENT_NAME, diagnosis_attributes(event))


class OpenTelemetryListener(ConnectionListener):
    """Follows each connection's span and records its diagnosis on it (see the module docs).

    Args:
        tracer_provider: where ws_diag's own ``ws_diag.diagnosis`` spans go; the global
            provider when omitted.
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("ws_diag", tracer_provider=tracer_provider)
        # The connection's span, by connection: a slot of our own would cost every
        # connection without this listener; entries go at ``closed``.
        self._spans: dict[int, Span] = {}

    def opened(self, connection: Connection) -> None:
        """Take the span the server runs the app in, when there is one."""
        self._capture(connection)

    def accepted(self, connection: Connection) -> None:
        """Take the span the accept was sent in, when none was found at ``opened``."""
        if id(connection) not in self._spans:
            self._capture(connection)

    def diagnosed(self, connection: Connection, event: DiagnosisEvent) -> None:
        """Record the diagnosis on the connection's span, or on a short span of ws_diag's own."""
        attributes = diagnosis_attributes(event)
        status = Status(StatusCode.ERROR, f"{event.diagnosis.component.display_name} failure")
        span = self._spans.get(id(connection))
        if span is None:
            current = trace.get_current_span()
            span = current if current.is_recording() else None
        if span is not None and span.is_recording():
            span.add_event(EVENT_NAME, attributes)
            span.set_attributes(
                {key: attributes[key] for key in ("ws_diag.component", "ws_diag.incident_id") if key in attributes}
            )
            if "ws_diag.close_code" in attributes:
                span.set_attribute("ws_diag.close_code", attributes["ws_diag.close_code"])
            span.set_status(status)
            return
        parent = trace.set_span_in_context(span) if span is not None else _remote_parent(connection)
        with self._tracer.start_as_current_span(
            SPAN_NAME,
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as own:
            own.add_event(EVENT_NAME, attributes)
            own.set_status(status)

    def closed(self, connection: Connection) -> None:
        """Forget the connection's span."""
        self._spans.pop(id(connection), None)

    def _capture(self, connection: Connection) -> None:
        span = trace.get_current_span()
        context = span.get_span_context()
        if not (span.is_recording() and context.is_valid):
            return
        self._spans[id(connection)] = span
        connection.add_log_fields(trace_id=format_trace_id(context.trace_id), span_id=format_span_id(context.span_id))


def _remote_parent(connection: Connection) -> Context | None:
    """The trace context the client sent (``traceparent``), through the global propagator.

    ``None`` (the current context) when the headers carry none.
    """
    headers: Iterable[tuple[bytes, bytes]] = connection.scope.get("headers", ())
    carrier: dict[str, str] = {}
    for key, value in headers:
        carrier.setdefault(key.decode("latin-1"), value.decode("latin-1"))
    context = propagate.extract(carrier)
    return context if trace.get_current_span(context).get_span_context().is_valid else None
