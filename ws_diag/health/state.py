"""Failure tolerance: when a failing probe counts as failed, and the status changes that causes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from ..components import ComponentLike
from ..logs import LogEvent
from .report import ProbeResult, ProbeStatus

__all__ = ["ComponentState", "ProbeStates", "StatusChange", "StatusHook", "announce"]

logger = logging.getLogger("ws_diag.health")

# A probe's state as the log line and StatusChange name it: the health report's own status.
ComponentState = ProbeStatus


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A probe's status changed past the failure threshold: given once per transition, never per check.

    ``previous`` and ``current`` use the health report's words (``/health``, readiness):
    ``healthy``, ``degraded`` (failing, not required) or ``failed`` (failing and required).
    ``previous`` is ``"unknown"`` for a probe first seen failing (a first run that finds it
    healthy is no transition). ``at`` is when the run that saw it started (UTC).
    """

    probe: str
    component: ComponentLike
    previous: ComponentState | Literal["unknown"]
    current: ComponentState
    result: ProbeResult
    at: datetime


StatusHook = Callable[[StatusChange], object]


class ProbeStates:
    """Each probe's failure streak and last announced state, judged against the failure threshold.

    A failing probe counts as failed once it failed ``failure_threshold`` consecutive runs, or
    has been failing for ``failure_duration`` seconds, whichever comes first.
    """

    def __init__(self, failure_threshold: int, failure_duration: float | None) -> None:
        self.failure_threshold = failure_threshold
        self.failure_duration = failure_duration
        # Per probe name: consecutive failed runs, and when the first began (monotonic, UTC).
        self._streaks: dict[str, tuple[int, float, datetime]] = {}
        self._states: dict[str, ComponentState] = {}

    def judge(
        self, raw: ProbeResult, required: bool, now: float, checked_at: datetime, changes: list[StatusChange]
    ) -> ProbeResult:
        """Apply required-ness and the failure threshold to one raw result; note a transition."""
        if raw.ok:
            self._streaks.pop(raw.name, None)
            result = replace(raw, required=required) if required != raw.required else raw
            state: ComponentState | None = "healthy"
        else:
            failures, since, since_utc = self._streaks.get(raw.name, (0, now, checked_at))
            failures += 1
            self._streaks[raw.name] = (failures, since, since_utc)
            down = failures >= self.failure_threshold or (
                self.failure_duration is not None and now - since >= self.failure_duration
            )
            status: ProbeStatus = "failed" if required and down else "degraded"
            result = replace(raw, required=required, status=status, failures=failures, failing_since=since_utc)
            state = status if down else None  # within the threshold: no verdict yet
        previous = self._states.get(raw.name)
        if state is not None and state != previous:
            self._states[raw.name] = state
            if previous is not None or state != "healthy":
                changes.append(StatusChange(raw.name, raw.component, previous or "unknown", state, result, checked_at))
        return result


def announce(change: StatusChange, hooks: Iterable[StatusHook]) -> None:
    """Log a status change and give it to the ``on_status_change`` hooks (one that raises is logged)."""
    level = logging.INFO if change.current == "healthy" else logging.WARNING
    logger.log(
        level,
        "component %s: %s -> %s",
        change.probe,
        change.previous,
        change.current,
        extra={
            "ws_diag_event": LogEvent.STATUS_CHANGE,
            "probe": change.probe,
            "status": change.current,
            "previous_status": change.previous,
        },
    )
    for hook in hooks:
        try:
            hook(change)
        except Exception:
            logger.exception("on_status_change hook %r failed", hook, extra={"ws_diag_event": LogEvent.HOOK_FAILED})
