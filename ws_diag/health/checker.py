"""The health checker: runs probes concurrently, under a deadline, cached and single-flight."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from .. import _concurrency as cc
from ..components import ComponentLike
from ..settings import DiagSettings
from .outcomes import failure, result, timed, unjudged
from .probes.base import Probe, ProbeFailed, runnable_under
from .report import HealthReport, ProbeResult, ProbeStatus
from .state import ComponentState, ProbeStates, StatusChange, StatusHook, announce

__all__ = [
    "ComponentState",
    "HealthChecker",
    "HealthReport",
    "ProbeResult",
    "ProbeStatus",
    "StatusChange",
    "validate_websocket_component_health",
]

logger = logging.getLogger("ws_diag.health")

ReportHook = Callable[[HealthReport], object]


class HealthChecker:
    """Runs probes concurrently, each cut off at ``timeout``; caches and shares runs.

    Concurrent callers while a run is in flight share that run (single-flight),
    and a finished run is reused for ``cache_ttl`` seconds (``failure_cache_ttl``
    when a probe failed). On the failure path (``check(failure_at=...)``) a report
    taken before the failure was seen never clears a component: see :meth:`check`.
    Under a storm of failing sessions each probe runs once, joined by all of them,
    and then not again while the failing report is fresh. A probe that
    hangs, raises anything or returns garbage becomes a failed result; a probe
    still stuck in an earlier run is not started again (it is reported failed),
    so abandoned probes cannot pile up. ``check`` never raises (but for
    cancellation of its caller) and returns within ``timeout`` plus scheduling
    slack, even if a probe ignores cancellation.

    A failing probe counts as failed (``status="failed"`` when required, which makes
    the report unhealthy) once it failed ``failure_threshold`` consecutive runs, or
    has been failing for ``failure_duration`` seconds, whichever comes first; before
    that it is ``degraded``, so one slow answer does not flap readiness. Each
    transition of a probe between healthy and failing (past the threshold) is logged
    once in the report's words (``component database: healthy -> failed`` for a
    required probe, ``component redis: healthy -> degraded`` for an optional one,
    WARNING; back to ``healthy`` at INFO) and given to the ``on_status_change`` hooks.

    Args:
        probes: the probes; names must be unique.
        timeout: the deadline of a whole run, seconds.
        cache_ttl: how long a run's report is reused, seconds (0: never).
        refresh_interval: run in the background every so many seconds, so that a
            diagnosis during an outage finds a fresh failing report (a healthy one from
            before the failure is not trusted); ``None`` for no background runs.
        clock: the monotonic clock the cache and ``failure_duration`` go by (tests inject their own).
        on_report: callables given each new report (metrics); one that raises is logged and ignored.
        failure_cache_ttl: how long a report with a failing probe is reused, seconds
            (``None``: ``cache_ttl``).
        required: names of the probes that are required, overriding each probe's own
            ``required`` (``None``: keep them).
        failure_threshold: consecutive failed runs before a probe counts as failed (at least 1).
        failure_duration: seconds of continuous failure after which it counts as failed
            (``None``: the count alone decides).
        on_status_change: plain (not async) callables given a :class:`StatusChange` per
            transition, in the run that saw it; one that raises is logged and ignored.

    Raises:
        TypeError: an object is not a probe.
        ValueError: duplicate probe names, a non-positive timeout or threshold, or
            ``required`` naming a probe that is not among ``probes``.
    """

    def __init__(
        self,
        probes: Iterable[Probe],
        *,
        timeout: float = 1.0,
        cache_ttl: float = 2.0,
        refresh_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_report: Iterable[ReportHook] = (),
        failure_cache_ttl: float | None = None,
        required: Iterable[str] | None = None,
        failure_threshold: int = 1,
        failure_duration: float | None = None,
        on_status_change: Iterable[StatusHook] = (),
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
        if failure_threshold < 1:
            msg = f"failure_threshold must be at least 1, got {failure_threshold!r}"
            raise ValueError(msg)
        self._required: dict[str, bool] = {}
        if required is not None:
            wanted = set(required)
            unknown = sorted(wanted - set(names))
            if unknown:
                msg = (
                    f"required_probes (WS_DIAG_REQUIRED_PROBES) names no configured probe: {unknown}; "
                    f"the probes are {names}"
                )
                raise ValueError(msg)
            self._required = {name: name in wanted for name in names}
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self.failure_cache_ttl = cache_ttl if failure_cache_ttl is None else failure_cache_ttl
        self.failure_threshold = failure_threshold
        self.failure_duration = failure_duration
        self.on_status_change = tuple(on_status_change)
        self._probe_states = ProbeStates(failure_threshold, failure_duration)
        self.refresh_interval = refresh_interval
        self._clock = clock
        self.on_report = tuple(on_report)
        self.runs = 0  # how many runs started: a storm must not multiply them
        self._generation = 0  # bumped by invalidate(): older runs are not cached
        self._cached: HealthReport | None = None
        self._cached_at = 0.0
        self._cached_started_at = 0.0  # clock time the cached report's run started
        self._inflight: cc.Detached[HealthReport] | None = None  # the latest run started, if unfinished
        self._inflight_started_at = 0.0
        self._judged_started_at = float("-inf")  # start of the newest run judged so far
        self._inflight_for_failure = False  # started by check(failure_at=...)
        self._running: set[cc.Detached[HealthReport]] = set()  # every unfinished run, for aclose()
        self._refresher: cc.Detached[None] | None = None
        self._next_refresh_at: float | None = None  # clock time of the next background run
        self._stragglers: dict[str, set[cc.Detached[Any]]] = {}
        self._runnable: dict[str, tuple[Probe, ...]] = {}  # by async library: the probes that run under it

    @classmethod
    def from_settings(
        cls,
        settings: DiagSettings,
        probes: Iterable[Probe] = (),
        *,
        on_report: Iterable[ReportHook] = (),
        on_status_change: Iterable[StatusHook] = (),
        components: Iterable[ComponentLike] | None = None,
    ) -> HealthChecker:
        """A checker of the probes the settings ask for plus ``probes``, configured by the settings.

        Uses ``probe_timeout``, ``cache_ttl``, ``failure_cache_ttl``, ``refresh_interval``,
        ``required_probes``, ``failure_threshold`` and ``failure_duration``. The settings'
        references to probes (and, given ``components``, to components) are checked once,
        here, by :func:`ws_diag.settings.references.check_references`.

        Raises:
            ImportError: a probe's extra is missing (see :func:`ws_diag.health.probes.probes_from_settings`).
            ValueError: ``required_probes`` names a probe that is not configured, or two probes
                share a name (also logged at ERROR on logger ``ws_diag``, like every settings error).
        """
        from ..settings.references import check_references
        from .probes import probes_from_settings

        built = [*probes_from_settings(settings), *probes]
        names = [probe.name for probe in built if isinstance(probe, Probe)]
        check_references(settings, probe_names=names, components=components, building="health checker")
        return cls(
            built,
            timeout=settings.probe_timeout,
            cache_ttl=settings.cache_ttl,
            failure_cache_ttl=settings.failure_cache_ttl,
            refresh_interval=settings.refresh_interval,
            on_report=on_report,
            required=settings.required_probes,
            failure_threshold=settings.failure_threshold,
            failure_duration=settings.failure_duration,
            on_status_change=on_status_change,
        )

    def ttl_of(self, report: HealthReport) -> float:
        """How long ``report`` is reused, seconds: ``failure_cache_ttl`` when a probe failed, else ``cache_ttl``."""
        return self.cache_ttl if _all_ok(report) else self.failure_cache_ttl

    def now(self) -> float:
        """A reading of the checker's monotonic clock: what ``check(failure_at=...)`` takes."""
        return self._clock()

    def cached(self) -> HealthReport | None:
        """The cached report while it is fresh, else ``None``; never runs probes."""
        if self._cached is not None and self._clock() - self._cached_at < self.ttl_of(self._cached):
            return self._cached
        return None

    def time_to_change(self, report: HealthReport) -> float:
        """Seconds until a check may answer differently from ``report``: never negative.

        The time left of ``report``'s cache window, or until the next background refresh
        when that comes first; 0 when ``report`` is not the cached report (the next check
        runs the probes). A failure blamed on a probe suggests at least this long a wait
        before reconnecting (the frame's ``retry_after_ms``).
        """
        now = self._clock()
        if report is self._cached:
            cached_at = self._cached_at
        elif self._just_finished(report):
            cached_at = now  # its done callback, which caches it, has not run yet
        else:
            return 0.0
        left = max(0.0, self.ttl_of(report) - (now - cached_at))
        refresher = self._refresher
        if self._next_refresh_at is not None and refresher is not None and not refresher.done():
            left = min(left, max(0.0, self._next_refresh_at - now))
        return left

    def _just_finished(self, report: HealthReport) -> bool:
        task = self._inflight
        return (
            task is not None
            and task.done()
            and not task.cancelled()
            and task.exception() is None
            and task.result() is report
            and report.generation == self._generation
        )

    def invalidate(self) -> None:
        """Forget the cached report and any run in flight: the next check runs the probes anew."""
        self._generation += 1
        self._cached = None
        self._inflight = None

    async def check(self, *, fresh: bool = False, failure_at: float | None = None) -> HealthReport:
        """A report: the cached one if fresh (unless ``fresh``), the in-flight one, or a new run.

        Args:
            fresh: skip the cache (a run in flight is still joined).
            failure_at: the failure path: when the failure to attribute was seen, a
                reading of :meth:`now`. A report taken before it may not clear a
                component, so the answer is, in order: the cached report while fresh if
                a probe failed in it or its run started at or after ``failure_at``; the
                run in flight if it was started on the failure path (every failure seen
                while it runs joins it: one run per storm) or at or after ``failure_at``;
                else a new failure-path run, beside a run in flight started earlier for
                another reason (``/health``, readiness, the refresh), which is not waited
                for. ``None``: ``/health``, readiness and metrics, the plain cache rules.
        """
        if not fresh and (report := self._cached_for(failure_at)) is not None:
            return report
        loop = cc.current_loop()
        task = self._inflight
        if (
            task is None
            or task.get_loop() is not loop
            or (failure_at is not None and not self._inflight_for_failure and self._inflight_started_at < failure_at)
        ):
            task = self._start_run(for_failure=failure_at is not None)
        try:
            # A caller that gives up (its own deadline) must not cancel the shared run.
            return await cc.join(task)
        except cc.RunCancelled:
            # The shared run was cancelled, not this caller: answer, do not raise.
            return self._cancelled_report()

    def _cached_for(self, failure_at: float | None) -> HealthReport | None:
        """The cached report if fresh and, on the failure path, taken after the failure or failing."""
        report = self.cached()
        if report is None or failure_at is None or not _all_ok(report) or self._cached_started_at >= failure_at:
            return report
        return None

    def _start_run(self, *, for_failure: bool) -> cc.Detached[HealthReport]:
        started_at = self._clock()
        # Detached, in an empty context: the shared run must not carry the first caller's
        # context variables (request ids, tracing spans) into everyone's report.
        task = cc.spawn(self._run, self._generation, started_at, name="ws_diag health check")
        self._inflight, self._inflight_started_at, self._inflight_for_failure = task, started_at, for_failure
        self._running.add(task)
        task.add_done_callback(functools.partial(self._run_done, started_at))
        return task

    def start(self) -> None:
        """Start background refreshing in the running loop (idempotent; restarts in a new loop)."""
        if self.refresh_interval is None:
            return
        loop = cc.current_loop()
        refresher = self._refresher
        if refresher is not None and not refresher.done() and refresher.get_loop() is loop:
            return
        self._refresher = cc.spawn(self._refresh_forever, name="ws_diag health refresh")

    async def aclose(self) -> None:
        """Stop background refreshing; let a run in flight finish (it is bounded); cancel abandoned probes."""
        waits: list[cc.Detached[Any]] = []
        if self._refresher is not None and not self._refresher.done():
            self._refresher.cancel()
            waits.append(self._refresher)
        loop = cc.current_loop()
        waits.extend(t for t in self._running if t.get_loop() is loop)  # their waiters get their report
        for tasks in self._stragglers.values():
            for task in tasks:
                task.cancel()
                waits.append(task)
        if waits:
            await cc.wait_all(waits, self.timeout * 2)

    def _cancelled_report(self) -> HealthReport:
        cancelled = ProbeFailed("health check was cancelled")
        results = tuple(
            failure(probe, 0.0, cancelled, required=self._required.get(probe.name, probe.required))
            for probe in self._runnable_now()
        )
        return HealthReport(results, datetime.now(UTC), 0.0)

    async def _refresh_forever(self) -> None:
        assert self.refresh_interval is not None
        while True:
            # Set before the run: the next run starts no earlier than this (a lower bound).
            self._next_refresh_at = self._clock() + self.refresh_interval
            try:
                await self.check(fresh=True)
            except Exception:
                logger.exception("background health check failed", extra={"ws_diag_event": "refresh_failed"})
            await cc.sleep(self.refresh_interval)

    def _runnable_now(self) -> tuple[Probe, ...]:  # asyncpg cannot run under trio: see runnable_under
        if (name := cc.library()) not in self._runnable:
            self._runnable[name] = runnable_under(self.probes, name)
        return self._runnable[name]

    def _run_done(self, started_at: float, task: cc.Detached[HealthReport]) -> None:
        self._running.discard(task)
        if self._inflight is task:
            self._inflight = None
        if not task.cancelled() and task.exception() is None:
            report = task.result()
            # A run that started before the cached one's (beside a failure-path run) is older news.
            if report.generation == self._generation and (
                self._cached is None or started_at >= self._cached_started_at
            ):
                self._cached = report
                self._cached_at = self._clock()
                self._cached_started_at = started_at

    async def _run(self, generation: int, started_at: float) -> HealthReport:
        self.runs += 1
        started = time.perf_counter()
        checked_at = datetime.now(UTC)
        probes = self._runnable_now()
        tasks: dict[str, cc.Detached[tuple[float, Any]]] = {}
        for probe in probes:
            if probe.name not in self._stragglers:
                tasks[probe.name] = cc.spawn(timed, probe, name=f"ws_diag probe {probe.name}", inherit_context=True)
        try:
            if tasks:
                # wait rather than a timeout: a probe whose cleanup ignores
                # cancellation must not hold the deadline hostage.
                await cc.wait_all(tasks.values(), self.timeout)
        finally:
            late = {name: task for name, task in tasks.items() if not task.done()}
            for name, task in late.items():
                task.cancel()
                # Two runs in flight side by side may each leave one behind.
                self._stragglers.setdefault(name, set()).add(task)
                task.add_done_callback(functools.partial(self._straggler_done, name))
        now = self._clock()
        changes: list[StatusChange] = []
        if started_at < self._judged_started_at:  # older than a run already judged: it may not undo that
            results = tuple(unjudged(self._result_of(p, tasks.get(p.name)), self._required) for p in probes)
            return HealthReport(results, checked_at, (time.perf_counter() - started) * 1000, generation)
        self._judged_started_at = started_at
        results = tuple(
            self._judge(self._result_of(probe, tasks.get(probe.name)), now, checked_at, changes) for probe in probes
        )
        report = HealthReport(results, checked_at, (time.perf_counter() - started) * 1000, generation)
        for change in changes:
            announce(change, self.on_status_change)
        if logger.isEnabledFor(logging.INFO) and any(not r.ok for r in results):
            logger.info("health check: %s", report.to_dict()["summary"], extra={"ws_diag_event": "health_check"})
        for hook in self.on_report:
            try:
                hook(report)
            except Exception:
                logger.exception("on_report hook %r failed", hook, extra={"ws_diag_event": "hook_failed"})
        return report

    def _judge(self, raw: ProbeResult, now: float, checked_at: datetime, changes: list[StatusChange]) -> ProbeResult:
        required = self._required.get(raw.name, raw.required)
        return self._probe_states.judge(raw, required, now, checked_at, changes)

    def _result_of(self, probe: Probe, task: cc.Detached[tuple[float, Any]] | None) -> ProbeResult:
        if task is None:
            return failure(probe, 0.0, ProbeFailed(f"{probe.name}: an earlier check is still running"))
        if not task.done():
            return failure(probe, self.timeout * 1000, TimeoutError(f"no answer within {self.timeout}s"))
        return result(probe, task)

    def _straggler_done(self, name: str, task: cc.Detached[Any]) -> None:
        tasks = self._stragglers.get(name)
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                del self._stragglers[name]
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as lost


def _all_ok(report: HealthReport) -> bool:
    return all(r.ok for r in report.results)


async def validate_websocket_component_health(
    probes: Iterable[Probe] | None = None,
    *,
    settings: DiagSettings | None = None,
    expose_details: bool = True,
) -> dict[str, Any]:
    """Run the probes once, uncached, and return the report as a dict (the JSON ``health_path`` serves).

    Args:
        probes: the probes; by default those the settings ask for.
        settings: deadline, code scheme, ``required_probes`` and probe settings; read from the
            environment when omitted.
        expose_details: include (redacted) error texts rather than exception type names.

    Raises:
        ValueError: ``required_probes`` names a probe that is not among the probes.
    """
    from .probes import probes_from_settings

    settings = settings if settings is not None else DiagSettings()
    chosen = list(probes) if probes is not None else probes_from_settings(settings)
    # One run: required_probes applies, the failure threshold cannot (it needs a history).
    checker = HealthChecker(chosen, timeout=settings.probe_timeout, cache_ttl=0, required=settings.required_probes)
    try:
        report = await checker.check()
    finally:
        await checker.aclose()
    return report.to_dict(code_scheme=settings.code_scheme, expose_details=expose_details)
