"""OpenTelemetry: a span event per diagnosis, never a span per message.

::

    from ws_diag.otel import span_event
    app = DiagnosticsMiddleware(app, on_diagnosis=span_event)

The event goes on the span current when the failure is diagnosed: the
connection's span when OpenTelemetry's ASGI middleware wraps ws_diag. Needs
``opentelemetry-api``.
"""

from __future__ import annotations

from opentelemetry import trace

from .responder import DiagnosisEvent

__all__ = ["span_event"]


def span_event(event: DiagnosisEvent) -> None:
    """Add a ``ws_diag.diagnosis`` event (component, code, incident id) to the current span."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    diagnosis = event.diagnosis
    attributes: dict[str, str | int | float | bool] = {
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
    span.add_event("ws_diag.diagnosis", attributes)
