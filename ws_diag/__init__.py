"""ws_diag: tell a websocket client which component failed, not just 1011."""

from __future__ import annotations

from importlib.metadata import version as _version

from .classify import CLIENT_GONE, Classifier
from .codes import Component, ComponentLike, CustomComponent
from .diagnosis import Diagnosis
from .errors import WebSocketComponentError
from .health import HealthChecker, HealthReport, validate_websocket_component_health
from .middleware import DiagnosticsMiddleware
from .responder import DiagnosisEvent
from .settings import DiagSettings

__all__ = [
    "CLIENT_GONE",
    "Classifier",
    "Component",
    "ComponentLike",
    "CustomComponent",
    "DiagSettings",
    "Diagnosis",
    "DiagnosisEvent",
    "DiagnosticsMiddleware",
    "HealthChecker",
    "HealthReport",
    "WebSocketComponentError",
    "validate_websocket_component_health",
]

__version__ = _version("ws_diag")  # written once, in pyproject.toml
