"""Settings that name components and probes, checked once those are known."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ..components import SERVICE_RESTART, Component, ComponentLike
from ..logs import LogEvent
from .groups import env_name
from .model import DiagSettings

__all__ = ["check_references"]

logger = logging.getLogger("ws_diag")


def check_references(
    settings: DiagSettings,
    *,
    probe_names: Iterable[str],
    components: Iterable[ComponentLike] | None = None,
    building: str = "DiagnosticsMiddleware",
) -> None:
    """Check, once, that the settings name only known components and probes (a typo would be ignored silently).

    Probe names must be unique; ``required_probes`` must name configured probes; ``probe_priority`` probe names or
    component keys; ``retry_after_by_component`` component keys (built-in, ``components``
    and ``service_restart``).

    Args:
        settings: the settings.
        probe_names: the names of every probe the checker runs (from settings and code).
        components: the app's custom components; ``None`` while they are not known yet (a
            checker built on its own): the settings' component keys are then left for the
            middleware to check.
        building: what is not built when a reference is unknown (for the log line).

    Raises:
        ValueError: naming each field, its ``WS_DIAG_*`` variable and the unknown names; logged
            once at ERROR on logger ``ws_diag`` (``settings_invalid``) first: a framework
            building the middleware lazily may swallow the error.
    """
    given = list(probe_names)
    names = sorted(set(given))
    problems = []
    duplicates = sorted({name for name in given if given.count(name) > 1})
    if duplicates:
        problems.append(f"probe names must be unique (from settings and code together), got duplicates {duplicates}")
    if settings.required_probes is not None:
        unknown = sorted(set(settings.required_probes) - set(names))
        if unknown:
            problems.append(
                f"required_probes ({env_name('required_probes')}) names no configured probe: {unknown}; "
                f"the probes are {names}"
            )
    if components is not None:
        keys = {member.key for member in Component} | {c.key for c in components} | {SERVICE_RESTART.key}
        unknown = sorted(set(settings.retry_after_by_component) - keys)
        if unknown:
            field = "retry_after_by_component"
            problems.append(f"{field} ({env_name(field)}): unknown component keys {unknown}")
        unknown = sorted(set(settings.probe_priority) - keys - set(names))
        if unknown:
            field = "probe_priority"
            problems.append(f"{field} ({env_name(field)}): not a probe name or component key: {unknown}")
    if problems:
        msg = "; ".join(problems)
        logger.error(
            "invalid ws_diag settings, %s not built: %s",
            building,
            msg,
            extra={"ws_diag_event": LogEvent.SETTINGS_INVALID},
        )
        raise ValueError(msg)
