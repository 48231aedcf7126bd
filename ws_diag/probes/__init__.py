"""Health probes: small async checks of one dependency each.

``PostgresProbe`` and ``RedisProbe`` need the ``postgres`` and ``redis`` extras;
they are imported only when asked for, so ``import ws_diag.probes`` never
imports asyncpg or redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import CallableProbe, EnvProbe, MissingEnvironment, Probe, ProbeFailed

if TYPE_CHECKING:
    from ..settings import DiagSettings
    from .postgres import PostgresProbe
    from .redis import RedisProbe

__all__ = [
    "CallableProbe",
    "EnvProbe",
    "MissingEnvironment",
    "PostgresProbe",
    "Probe",
    "ProbeFailed",
    "RedisProbe",
    "probes_from_settings",
]


def probes_from_settings(settings: DiagSettings) -> list[Probe]:
    """The probes the settings ask for: ``postgres_dsn``, ``redis_url``, ``required_env``.

    Raises:
        ImportError: a DSN or URL is set but its extra is not installed, naming the extra.
    """
    probes: list[Probe] = []
    if settings.postgres_dsn is not None:
        probes.append(
            _load("postgres", "asyncpg").PostgresProbe(
                settings.postgres_dsn.get_secret_value(), timeout=settings.probe_timeout
            )
        )
    if settings.redis_url is not None:
        probes.append(
            _load("redis", "redis").RedisProbe(settings.redis_url.get_secret_value(), timeout=settings.probe_timeout)
        )
    if settings.required_env:
        probes.append(EnvProbe(settings.required_env))
    return probes


def _load(extra: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(f"{__name__}.{extra}")
    except ImportError as exc:
        msg = f"{package} is not installed: pip install 'ws_diag[{extra}]'"
        raise ImportError(msg) from exc


def __getattr__(name: str) -> Any:
    if name == "PostgresProbe":
        from .postgres import PostgresProbe

        return PostgresProbe
    if name == "RedisProbe":
        from .redis import RedisProbe

        return RedisProbe
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
