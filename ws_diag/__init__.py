"""ws_diag: tell a websocket client which component failed, not just 1011."""

from __future__ import annotations

from .classify import CLIENT_GONE, Classifier
from .codes import Component, ComponentLike, CustomComponent
from .diagnosis import Diagnosis
from .errors import WebSocketComponentError
from .middleware import DiagnosticsMiddleware
from .settings import DiagSettings

__all__ = [
    "CLIENT_GONE",
    "Classifier",
    "Component",
    "ComponentLike",
    "CustomComponent",
    "DiagSettings",
    "Diagnosis",
    "DiagnosticsMiddleware",
    "WebSocketComponentError",
]

__version__ = "0.1.0"
