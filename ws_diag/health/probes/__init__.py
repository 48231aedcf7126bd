"""Health probes: small async checks of one dependency each.

``PostgresProbe``, ``RedisProbe``, ``SQLAlchemyProbe`` and ``HttpProbe`` need the
``postgres``, ``redis``, ``sqlalchemy`` and ``http`` extras; they are imported
only when asked for, so ``import ws_diag.health.probes`` never imports asyncpg, redis,
SQLAlchemy or httpx.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import CallableProbe, EnvProbe, MissingEnvironment, Probe, ProbeFailed

if TYPE_CHECKING:
    from ...settings import DiagSettings
    from .http import HttpProbe
    from .postgres import PostgresProbe
    from .redis import RedisProbe
    from .sqlalchemy import SQLAlchemyProbe

__all__ = [
    "CallableProbe",
    "EnvProbe",
    "HttpProbe",
    "MissingEnvironment",
    "PostgresProbe",
    "Probe",
    "ProbeFailed",
    "RedisProbe",
    "SQLAlchemyProbe",
    "probes_from_settings",
]


def probes_from_settings(settings: DiagSettings) -> list[Probe]:
    """The probes the settings ask for.

    ``postgres_dsn`` or ``sqlalchemy_url`` (a probe named ``database``),
    ``redis_url`` (``redis``), each of ``http_probes`` (named as given, or by
    host), ``required_env`` (``environment``); all bounded by ``probe_timeout``.

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
    if settings.sqlalchemy_url is not None:
        probes.append(
            _load("sqlalchemy", "sqlalchemy").SQLAlchemyProbe.from_url(
                settings.sqlalchemy_url.get_secret_value(), timeout=settings.probe_timeout
            )
        )
    for spec in settings.http_probes:
        probes.append(
            _load("http", "httpx").HttpProbe(
                spec.url.get_secret_value(),
                name=spec.name,
                method=spec.method,
                required=spec.required,
                component=spec.component_value,
                timeout=settings.probe_timeout,
            )
        )
    if settings.required_env:
        probes.append(EnvProbe(settings.required_env))
    return probes


def _load(extra: str, package: str) -> Any:
    # The probe's module says which extra to install when its package is missing (ws_diag._optional).
    import importlib

    return importlib.import_module(f"{__name__}.{extra}")


_LAZY = {"PostgresProbe": "postgres", "RedisProbe": "redis", "SQLAlchemyProbe": "sqlalchemy", "HttpProbe": "http"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
