"""Optional dependencies: one message, naming the extra to install, wherever one is missing.

A module behind an extra imports its dependency as usual and hands a failure here::

    try:
        import redis.asyncio
    except ModuleNotFoundError as exc:
        missing(exc, "redis", extra="redis", feature=__name__)

which raises ``ImportError: ws_diag.health.probes.redis needs redis: pip install 'ws_diag[redis]'``.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import NoReturn

__all__ = ["MissingExtraError", "missing", "require"]


class MissingExtraError(ImportError):
    """An optional dependency is not installed; ``extra`` is the ws_diag extra that brings it."""

    def __init__(self, msg: str, *, name: str | None, extra: str) -> None:
        super().__init__(msg, name=name)
        self.extra = extra


def missing(exc: ModuleNotFoundError, module: str, *, extra: str, feature: str, package: str | None = None) -> NoReturn:
    """Raise the ImportError that names ``extra`` when ``module`` is what is missing, else ``exc`` unchanged.

    Args:
        exc: the error the import raised.
        module: the dependency's top-level import name (``"pythonjsonlogger"``).
        extra: the ws_diag extra that brings it (``"logs"``).
        feature: what needs it, as the user imports it (``"ws_diag.logs.JsonFormatter"``).
        package: its distribution name, when not ``module`` (``"python-json-logger"``).

    Raises:
        MissingExtraError: (an ImportError) ``<feature> needs <package>: pip install 'ws_diag[<extra>]'``; a module
            the installed dependency itself fails to import raises its own error instead.
    """
    if (exc.name or "").partition(".")[0] != module.partition(".")[0]:
        raise exc
    msg = f"{feature} needs {package or module}: pip install 'ws_diag[{extra}]'"
    raise MissingExtraError(msg, name=exc.name, extra=extra) from None


def require(module: str, *, extra: str, feature: str, package: str | None = None) -> ModuleType:
    """Import ``module`` for a feature that needs it at run time, or raise as :func:`missing` does."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing(exc, module, extra=extra, feature=feature, package=package)
