"""Health: probes run concurrently under a deadline (:mod:`.checker`), their report (:mod:`.report`),
failure tolerance (:mod:`.state`), its formats (:mod:`.formats`) and endpoints (:mod:`.endpoints`),
also as an ASGI app of their own (:mod:`.app`).

The probes themselves: :mod:`ws_diag.health.probes`.
"""

from __future__ import annotations

from .app import HealthApp
from .checker import HealthChecker, ReportHook, validate_websocket_component_health
from .report import HealthReport, ProbeResult, ProbeStatus
from .state import ComponentState, StatusChange, StatusHook

__all__ = [
    "ComponentState",
    "HealthApp",
    "HealthChecker",
    "HealthReport",
    "ProbeResult",
    "ProbeStatus",
    "ReportHook",
    "StatusChange",
    "StatusHook",
    "validate_websocket_component_health",
]
