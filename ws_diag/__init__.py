"""ws_diag: tell a websocket client which component failed, not just 1011.

The public names below are imported lazily (PEP 562), on first use: ``import ws_diag.client``
or the CLI's ``codes`` load neither pydantic nor the middleware. Public submodules:
:mod:`ws_diag.client`, :mod:`ws_diag.health` (with :mod:`ws_diag.health.probes`),
:mod:`ws_diag.integrations`, :mod:`ws_diag.lifecycle`, :mod:`ws_diag.retry`,
:mod:`ws_diag.wire`, :mod:`ws_diag.redaction`, :mod:`ws_diag.logs`.
"""

from __future__ import annotations

import importlib
from importlib.metadata import version as _version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .classify import CLIENT_GONE, Classifier
    from .components import Component, ComponentLike, CustomComponent
    from .diagnosis import Diagnosis
    from .errors import WebSocketComponentError
    from .health import HealthChecker, HealthReport, validate_websocket_component_health
    from .lifecycle import DiagnosisEvent
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
    "DiagnosisEvent",
    "DiagnosticsMiddleware",
    "HealthChecker",
    "HealthReport",
    "WebSocketComponentError",
    "validate_websocket_component_health",
]

__version__ = _version("ws_diag")  # written once, in pyproject.toml

# Where each public name lives: imported on first access, then cached in the module's namespace.
_LAZY = {
    "CLIENT_GONE": ".classify",
    "Classifier": ".classify",
    "Component": ".components",
    "ComponentLike": ".components",
    "CustomComponent": ".components",
    "DiagSettings": ".settings",
    "Diagnosis": ".diagnosis",
    "DiagnosisEvent": ".lifecycle",
    "DiagnosticsMiddleware": ".middleware",
    "HealthChecker": ".health",
    "HealthReport": ".health",
    "WebSocketComponentError": ".errors",
    "validate_websocket_component_health": ".health",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])
