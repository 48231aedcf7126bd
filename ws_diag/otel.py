"""Deprecated location: :mod:`ws_diag.integrations.opentelemetry`, re-exported.

``from ws_diag.otel import span_event`` keeps working; new code uses the listener,
which does not lose the event when OpenTelemetry's middleware sits inside ws_diag::

    from ws_diag.integrations.opentelemetry import OpenTelemetryListener
    app = DiagnosticsMiddleware(app, listeners=[OpenTelemetryListener()])

Needs the ``otel`` extra (``opentelemetry-api``).
"""

from __future__ import annotations

from .integrations.opentelemetry import EVENT_NAME, OpenTelemetryListener, diagnosis_attributes, span_event

__all__ = ["EVENT_NAME", "OpenTelemetryListener", "diagnosis_attributes", "span_event"]
