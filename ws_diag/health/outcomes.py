"""A probe's run as a :class:`ProbeResult`: timed, its exception described, a timeout or garbage a failure."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .._concurrency import Detached
from ..redaction import describe_exception
from .probes.base import Probe
from .report import ProbeResult

__all__ = ["failure", "result", "timed"]


async def timed(probe: Probe) -> tuple[float, Any]:
    started = time.perf_counter()
    try:
        outcome: Any = await probe.check()
    except Exception as exc:
        outcome = exc
    return (time.perf_counter() - started) * 1000, outcome


def result(probe: Probe, task: Detached[tuple[float, Any]]) -> ProbeResult:
    if task.cancelled():
        return failure(probe, 0.0, asyncio.CancelledError())  # its name is what the report shows, under trio too
    if (raised := task.exception()) is not None:  # a BaseException other than Exception
        return failure(probe, 0.0, raised)
    latency_ms, outcome = task.result()
    if isinstance(outcome, BaseException):
        return failure(probe, latency_ms, outcome)
    if outcome is not None and not isinstance(outcome, Mapping):
        garbage = TypeError(f"probe returned {type(outcome).__name__}, expected None or a mapping")
        return failure(probe, latency_ms, garbage)
    return ProbeResult(probe.name, probe.component, probe.required, "healthy", latency_ms, details=outcome or {})


def failure(probe: Probe, latency_ms: float, exc: BaseException, *, required: bool | None = None) -> ProbeResult:
    required = probe.required if required is None else required
    return ProbeResult(
        name=probe.name,
        component=probe.component,
        required=required,
        status="failed" if required else "degraded",
        latency_ms=latency_ms,
        error=describe_exception(exc),
        error_type=type(exc).__name__,
    )


def unjudged(raw: ProbeResult, required: Mapping[str, bool]) -> ProbeResult:
    """``raw`` with the checker's ``required`` override and no verdict: for a run older than one already
    judged (``/health`` finishing after a failure's run), whose readings may not undo that verdict
    (no failure streak, no status change, no report hook)."""
    flag = required.get(raw.name, raw.required)
    if flag == raw.required:
        return raw
    return replace(raw, required=flag, status=raw.status if raw.ok else ("failed" if flag else "degraded"))
