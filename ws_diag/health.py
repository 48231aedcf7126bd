"""The health checker: runs probes concurrently, under a deadline, cached and single-flight."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from .codes import DEFAULT_PRIORITY, CodeScheme, ComponentLike, frame_code
from .diagnosis import describe_exception, redact
from .probes.base import Probe
from .settings import DiagSettings

__all__ = [
    "HealthChecker",
    "HealthReport",
    "ProbeResult",
    "ProbeStatus",
    "validate_websocket_component_health",
]

logger = logging.getLogger("ws_diag.health")

ProbeStatus = Literal["healthy", "failed", "degraded"]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe's outcome. ``error`` is redacted; ``error_type`` is just the exception's name."""

    name: str
    component: ComponentLike
    required: bool
    status: ProbeStatus
    latency_ms: float
    error: str | None = None
    error_type: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the probe passed."""
        return self.status == "healthy"


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The results of one run of every probe."""

    results: tuple[ProbeResult, ...]
    checked_at: datetime
    took_ms: float

    @property
    def healthy(self) -> bool:
        """No required probe failed."""
        return all(r.status != "failed" for r in self.results)

    def culprit(self, priority: Sequence[str] = DEFAULT_PRIORITY) -> ProbeResult | None:
        """The result a failure should be blamed on.

        Failed (required) probes first, then degraded ones; within each, probes
        whose name or component key comes first in ``priority``, then the rest in
        registration order. ``None`` when everything is healthy.
        """
        rank = {key: index for index, key in enumerate(priority)}

        def order(item: tuple[int, ProbeResult]) -> tuple[int, int, int]:
            index, result = item
            named = min(rank.get(result.name, len(rank)), rank.get(result.component.key, len(rank)))
            return (0 if result.status == "failed" else 1, named, index)

        unhealthy = [(i, r) for i, r in enumerate(self.results) if not r.ok]
        return min(unhealthy, key=order)[1] if unhealthy else None

    def to_dict(self, *, code_scheme: CodeScheme = "private", expose_details: bool = True) -> dict[str, Any]:
        """The seed's report format. Without ``expose_details`` errors are reduced to type names."""
        failed = [r for r in self.results if r.status == "failed"]
        degraded = [r for r in self.results if r.status == "degraded"]
        suggestions: list[str] = []
        for result in (*failed, *degraded):
            suggestions.extend(s for s in result.component.suggestions if s not in suggestions)
        summary = f"{len(failed)} of {len(self.results)} components failed"
        if degraded:
            summary += f", {len(degraded)} degraded"
        return {
            "healthy": self.healthy,
            "failed_components": [r.name for r in failed],
            "degraded_components": [r.name for r in degraded],
            "component_details": {
                r.name: {
                    "status": r.status,
                    "component": r.component.display_name,
                    "required": r.required,
                    "error": (r.error if expose_details else r.error_type) if not r.ok else None,
                    "error_code": frame_code(r.component, code_scheme) if not r.ok else None,
                    "latency_ms": round(r.latency_ms, 3),
                }
                for r in self.results
            },
            "error_suggestions": suggestions,
            "summary": summary,
            "checked_at": self.checked_at.isoformat().replace("+00:00", "Z"),
            "took_ms": round(self.took_ms, 3),
        }


class HealthChecker:
    """Runs probes concurrently, each cut off at ``timeout``; caches and shares runs.

    Concurrent callers while a run is in flight share that run (single-flight),
    and a finished run is reused for ``cache_ttl`` seconds: under a storm of
    failing sessions each probe runs at most once per TTL window. A probe that
    hangs, raises anything or returns garbage becomes a failed result; ``check``
    never raises (but for cancellation of its caller) and returns within
    ``timeout`` plus scheduling slack, even if a probe ignores cancellation.

    Args:
        probes: the probes; names must be unique.
        timeout: the deadline of a whole run, seconds.
        cache_ttl: how long a run's report is reused, seconds (0: never).
        refresh_interval: run in the background every so many seconds, so that a
            diagnosis finds a fresh report; ``None`` for no background runs.
        clock: the monotonic clock the cache expires by (tests inject their own).
        on_report: callables given each new report (metrics); one that raises is logged and ignored.
    """

    def __init__(
        self,
        probes: Iterable[Probe],
        *,
        timeout: float = 1.0,
        cache_ttl: float = 2.0,
        refresh_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_report: Iterable[Callable[[HealthReport], object]] = (),
    ) -> None:
        self.probes = tuple(probes)
        for probe in self.probes:
            if not isinstance(probe, Probe):
                msg = f"{probe!r} is not a probe: it needs name, component, required and an async check()"
                raise TypeError(msg)
        names = [p.name for p in self.probes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            msg = f"probe names must be unique, got duplicates {duplicates}"
            raise ValueError(msg)
        if timeout <= 0:
            msg = f"timeout must be positive, got {timeout!r}"
            raise ValueError(msg)
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self.refresh_interval = refresh_interval
        self._clock = clock
        self.on_report = tuple(on_report)
        self.runs = 0  # how many runs started: a storm must not multiply them
        self._cached: HealthReport | None = None
        self._cached_at = 0.0
        self._inflight: asyncio.Task[HealthReport] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._stragglers: set[asyncio.Task[Any]] = set()

    def cached(self) -> HealthReport | None:
        """The cached report while it is fresh, else ``None``; never runs probes."""
        if self._cached is not None and self._clock() - self._cached_at < self.cache_ttl:
            return self._cached
        return None

    def invalidate(self) -> None:
        """Forget the cached report: the next check runs the probes (after a known change)."""
        self._cached = None

    async def check(self, *, fresh: bool = False) -> HealthReport:
        """A report: the cached one if fresh (unless ``fresh``), the in-flight one, or a new run."""
        if not fresh and (report := self.cached()) is not None:
            return report
        task = self._inflight
        if task is None or task.get_loop() is not asyncio.get_running_loop():
            task = asyncio.ensure_future(self._run())
            self._inflight = task
            task.add_done_callback(self._run_done)
        # A caller that gives up (its own deadline) must not cancel the shared run.
        return await asyncio.shield(task)

    def start(self) -> None:
        """Start background refreshing (idempotent); needs a running event loop."""
        if self.refresh_interval is None or (self._refresher is not None and not self._refresher.done()):
            return
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def aclose(self) -> None:
        """Stop background refreshing and wait (bounded) for abandoned probe tasks."""
        tasks = [t for t in (self._refresher, self._inflight) if t is not None and not t.done()]
        tasks.extend(self._stragglers)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self.timeout)

    async def _refresh_forever(self) -> None:
        assert self.refresh_interval is not None
        while True:
            with contextlib.suppress(Exception):
                await self.check(fresh=True)
            await asyncio.sleep(self.refresh_interval)

    def _run_done(self, task: asyncio.Task[HealthReport]) -> None:
        if self._inflight is task:
            self._inflight = None
        if not task.cancelled() and task.exception() is None:
            self._cached = task.result()
            self._cached_at = self._clock()

    async def _run(self) -> HealthReport:
        self.runs += 1
        started = time.perf_counter()
        checked_at = datetime.now(UTC)
        tasks = [asyncio.ensure_future(_timed(probe)) for probe in self.probes]
        if tasks:
            # wait() rather than timeout(): a probe whose cleanup ignores
            # cancellation must not hold the deadline hostage.
            await asyncio.wait(tasks, timeout=self.timeout)
        results = []
        for probe, task in zip(self.probes, tasks, strict=True):
            if task.done():
                results.append(_result(probe, task))
            else:
                task.cancel()
                self._stragglers.add(task)
                task.add_done_callback(self._straggler_done)
                results.append(_failure(probe, self.timeout * 1000, TimeoutError(f"no answer within {self.timeout}s")))
        report = HealthReport(tuple(results), checked_at, (time.perf_counter() - started) * 1000)
        if any(not r.ok for r in results):
            logger.info("health check: %s", report.to_dict()["summary"], extra={"ws_diag_event": "health_check"})
        for hook in self.on_report:
            try:
                hook(report)
            except Exception:
                logger.exception("on_report hook %r failed", hook, extra={"ws_diag_event": "hook_failed"})
        return report

    def _straggler_done(self, task: asyncio.Task[Any]) -> None:
        self._stragglers.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as lost


async def _timed(probe: Probe) -> tuple[float, Any]:
    started = time.perf_counter()
    try:
        outcome: Any = await probe.check()
    except Exception as exc:
        outcome = exc
    return (time.perf_counter() - started) * 1000, outcome


def _result(probe: Probe, task: asyncio.Task[tuple[float, Any]]) -> ProbeResult:
    if task.cancelled():
        return _failure(probe, 0.0, asyncio.CancelledError())
    if (raised := task.exception()) is not None:  # a BaseException other than Exception
        return _failure(probe, 0.0, raised)
    latency_ms, outcome = task.result()
    if isinstance(outcome, BaseException):
        return _failure(probe, latency_ms, outcome)
    if outcome is not None and not isinstance(outcome, Mapping):
        garbage = TypeError(f"probe returned {type(outcome).__name__}, expected None or a mapping")
        return _failure(probe, latency_ms, garbage)
    return ProbeResult(probe.name, probe.component, probe.required, "healthy", latency_ms, details=outcome or {})


def _failure(probe: Probe, latency_ms: float, exc: BaseException) -> ProbeResult:
    return ProbeResult(
        name=probe.name,
        component=probe.component,
        required=probe.required,
        status="failed" if probe.required else "degraded",
        latency_ms=latency_ms,
        error=redact(describe_exception(exc)),
        error_type=type(exc).__name__,
    )


async def validate_websocket_component_health(
    probes: Iterable[Probe] | None = None,
    *,
    settings: DiagSettings | None = None,
    expose_details: bool = True,
) -> dict[str, Any]:
    """Run the probes once, uncached, and return the report as a dict (the seed's API).

    Args:
        probes: the probes; by default those the settings ask for.
        settings: deadline, code scheme and probe settings; read from the environment when omitted.
        expose_details: include (redacted) error texts rather than exception type names.
    """
    from .probes import probes_from_settings

    settings = settings if settings is not None else DiagSettings()
    chosen = list(probes) if probes is not None else probes_from_settings(settings)
    checker = HealthChecker(chosen, timeout=settings.probe_timeout, cache_ttl=0)
    try:
        report = await checker.check()
    finally:
        await checker.aclose()
    return report.to_dict(code_scheme=settings.code_scheme, expose_details=expose_details)
