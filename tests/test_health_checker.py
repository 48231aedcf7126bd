"""The health checker with fake probes: concurrency, deadlines, failures, cache, single-flight."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading

import pytest
from harness import FakeProbe

from ws_diag import Component, CustomComponent
from ws_diag.health import HealthChecker
from ws_diag.health.probes import CallableProbe, ProbeFailed

pytestmark = pytest.mark.asyncio

# Generous bounds for "it did not hang": correctness, not performance.
NO_HANG = 5.0


class OddBaseException(BaseException):
    """Not an Exception: the checker must still contain it."""


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def hang() -> None:
    await asyncio.Event().wait()


async def test_all_healthy() -> None:
    """Probes that return make a healthy report with a latency each."""
    checker = HealthChecker([FakeProbe("database"), FakeProbe("redis", {"role": "master"}, component=Component.REDIS)])
    report = await checker.check()
    assert report.healthy
    assert [r.status for r in report.results] == ["healthy", "healthy"]
    assert report.results[1].details == {"role": "master"}
    assert report.culprit() is None
    as_dict = report.to_dict()
    assert as_dict["healthy"] is True
    assert as_dict["failed_components"] == []
    assert as_dict["summary"] == "0 of 2 probes failed"


async def test_probes_run_concurrently() -> None:
    """A probe that waits for another probe's signal passes: they run at the same time."""
    signal = asyncio.Event()

    async def waits() -> None:
        await signal.wait()

    async def signals() -> None:
        signal.set()

    checker = HealthChecker([FakeProbe("a", waits), FakeProbe("b", signals)], timeout=NO_HANG)
    report = await checker.check()
    assert report.healthy


async def test_hanging_probe_fails_at_the_deadline() -> None:
    """A probe that never answers becomes a failed result; the others still report."""
    checker = HealthChecker([FakeProbe("database", hang), FakeProbe("redis", component=Component.REDIS)], timeout=0.05)
    report = await asyncio.wait_for(checker.check(), NO_HANG)
    database, redis = report.results
    assert database.status == "failed"
    assert database.error_type == "TimeoutError"
    assert redis.ok
    await checker.aclose()


async def test_probe_ignoring_cancellation_cannot_hold_the_deadline() -> None:
    """A probe that swallows cancellation and keeps waiting still cannot delay the report."""
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()

    checker = HealthChecker([FakeProbe("database", stubborn)], timeout=0.05)
    report = await asyncio.wait_for(checker.check(), NO_HANG)
    assert report.results[0].status == "failed"
    release.set()
    await checker.aclose()
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


@pytest.mark.parametrize(
    ("behaviour", "error_type"),
    [
        (ProbeFailed("down"), "ProbeFailed"),
        (ConnectionRefusedError(111, "refused"), "ConnectionRefusedError"),
        (OddBaseException(), "OddBaseException"),
    ],
)
async def test_raising_probe_is_a_failed_result(behaviour: BaseException, error_type: str) -> None:
    """Anything a probe raises, even a non-Exception BaseException, becomes a failed result."""

    async def raises() -> None:
        raise behaviour

    report = await HealthChecker([FakeProbe("database", raises)]).check()
    assert report.results[0].status == "failed"
    assert report.results[0].error_type == error_type


@pytest.mark.parametrize("garbage", [42, "ok", [1, 2], object()])
async def test_garbage_results_are_failures(garbage: object) -> None:
    """A probe that returns something other than None or a mapping has failed."""
    report = await HealthChecker([FakeProbe("database", garbage)]).check()
    assert report.results[0].status == "failed"
    assert report.results[0].error_type == "TypeError"


async def test_not_a_probe_is_refused() -> None:
    """Objects without the probe protocol are refused when the checker is built."""
    with pytest.raises(TypeError, match="is not a probe"):
        HealthChecker([object()])  # type: ignore[list-item]


async def test_duplicate_names_refused() -> None:
    """Two probes cannot share a name: the report is keyed by it."""
    with pytest.raises(ValueError, match="unique"):
        HealthChecker([FakeProbe("x"), FakeProbe("x")])


async def test_non_required_failure_is_degraded() -> None:
    """A failed probe that is not required degrades the report but keeps it healthy."""

    async def down() -> None:
        raise ProbeFailed("cache down")

    report = await HealthChecker([FakeProbe("redis", down, component=Component.REDIS, required=False)]).check()
    assert report.healthy
    assert report.results[0].status == "degraded"
    assert report.to_dict()["degraded_components"] == ["redis"]
    assert report.culprit() is report.results[0]


async def test_culprit_priority() -> None:
    """Failed required probes beat degraded ones; among them the priority order decides."""

    async def down() -> None:
        raise ProbeFailed("down")

    billing = CustomComponent("billing", "Billing", 4100)
    checker = HealthChecker(
        [
            FakeProbe("billing", down, component=billing),
            FakeProbe("cache", down, component=Component.REDIS, required=False),
            FakeProbe("redis", down, component=Component.REDIS),
            FakeProbe("db", down, component=Component.DATABASE),
        ]
    )
    report = await checker.check()
    assert report.culprit().name == "db"  # type: ignore[union-attr]
    assert report.culprit(["billing"]).name == "billing"  # type: ignore[union-attr]
    assert report.culprit(["redis"]).name == "redis"  # type: ignore[union-attr]


async def test_cache_reuses_and_expires() -> None:
    """Within cache_ttl the report is reused; after it, the probes run again."""
    clock = Clock()
    probe = FakeProbe("database")
    checker = HealthChecker([probe], cache_ttl=2.0, clock=clock)
    first = await checker.check()
    clock.now += 1.9
    assert await checker.check() is first
    assert probe.calls == 1
    clock.now += 0.2
    assert await checker.check() is not first
    assert probe.calls == 2
    assert checker.cached() is not None
    assert await checker.check(fresh=True) is not first
    assert probe.calls == 3


async def test_single_flight_under_a_storm() -> None:
    """A thousand concurrent callers while a check is in flight share one probe run."""
    gate = asyncio.Event()

    async def slow() -> None:
        await gate.wait()

    probe = FakeProbe("database", slow)
    checker = HealthChecker([probe], timeout=NO_HANG, cache_ttl=60)
    callers = [asyncio.ensure_future(checker.check()) for _ in range(1000)]
    await asyncio.sleep(0)
    gate.set()
    reports = await asyncio.gather(*callers)
    assert probe.calls == 1
    assert checker.runs == 1
    assert all(r is reports[0] for r in reports)


async def test_a_caller_giving_up_does_not_cancel_the_shared_run() -> None:
    """One caller's timeout leaves the shared run going for the others."""
    gate = asyncio.Event()

    async def slow() -> None:
        await gate.wait()

    checker = HealthChecker([FakeProbe("database", slow)], timeout=NO_HANG)
    impatient = asyncio.ensure_future(asyncio.wait_for(checker.check(), 0.01))
    patient = asyncio.ensure_future(checker.check())
    with pytest.raises(TimeoutError):
        await impatient
    gate.set()
    report = await patient
    assert report.healthy


async def test_error_text_is_redacted() -> None:
    """A DSN password in a probe's error never reaches the report, exposed or not."""

    async def leaky() -> None:
        raise ConnectionError("cannot reach postgresql://app:hunter2@db:5432/app")

    report = await HealthChecker([FakeProbe("database", leaky)]).check()
    for expose in (True, False):
        text = str(report.to_dict(expose_details=expose))
        assert "hunter2" not in text
    assert "postgresql://app:***@db" in str(report.to_dict(expose_details=True))
    assert report.to_dict(expose_details=False)["component_details"]["database"]["error"] == "ConnectionError"


async def test_report_codes_follow_the_scheme() -> None:
    """error_code in the report follows the code scheme."""

    async def down() -> None:
        raise ProbeFailed("down")

    report = await HealthChecker([FakeProbe("database", down)]).check()
    assert report.to_dict()["component_details"]["database"]["error_code"] == 4005
    assert report.to_dict(code_scheme="legacy")["component_details"]["database"]["error_code"] == 1005


async def test_background_refresh() -> None:
    """With refresh_interval the checker keeps a fresh report without being asked."""
    probe = FakeProbe("database")
    checker = HealthChecker([probe], refresh_interval=0.01, cache_ttl=60)
    checker.start()
    checker.start()  # idempotent
    for _ in range(500):
        if probe.calls >= 3:
            break
        await asyncio.sleep(0.01)
    assert probe.calls >= 3
    assert checker.cached() is not None
    await checker.aclose()
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


async def test_callable_probe_sync_async_and_verdicts() -> None:
    """CallableProbe accepts sync and async functions; False or a raise is a failure."""
    probes = [
        CallableProbe("sync_ok", Component.SUPERVISOR, lambda: True),
        CallableProbe("async_ok", Component.BRIDGE, _async_details),
        CallableProbe("sync_false", Component.SUPERVISOR, lambda: False),
        CallableProbe("sync_raise", Component.INTEGRATION, _raise_sync, required=False),
        CallableProbe("garbage", Component.INTEGRATION, lambda: 3),
    ]
    report = await HealthChecker(probes).check()
    statuses = {r.name: r.status for r in report.results}
    assert statuses == {
        "sync_ok": "healthy",
        "async_ok": "healthy",
        "sync_false": "failed",
        "sync_raise": "degraded",
        "garbage": "failed",
    }
    assert report.results[1].details == {"agents": 3}


async def _async_details() -> dict[str, int]:
    return {"agents": 3}


def _raise_sync() -> None:
    raise ProbeFailed("integration down")


async def test_invalidate_forgets_the_cached_report() -> None:
    """After invalidate() the next check runs the probes even within the TTL."""
    probe = FakeProbe("database")
    checker = HealthChecker([probe], cache_ttl=60)
    await checker.check()
    checker.invalidate()
    assert checker.cached() is None
    await checker.check()
    assert probe.calls == 2


async def test_aclose_while_callers_wait_gives_them_the_report() -> None:
    """aclose() during a run lets waiting callers finish with the report, not a spurious cancellation."""
    gate = asyncio.Event()

    async def slow() -> None:
        await gate.wait()

    checker = HealthChecker([FakeProbe("database", slow)], timeout=NO_HANG)
    waiter = asyncio.ensure_future(checker.check())
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(checker.aclose())
    await asyncio.sleep(0)
    gate.set()
    report = await asyncio.wait_for(waiter, NO_HANG)
    await asyncio.wait_for(closing, NO_HANG)
    assert report.healthy
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


async def test_cancelled_shared_run_is_a_report_for_callers() -> None:
    """If the shared run itself is cancelled, a caller that was not cancelled gets a failed report."""
    checker = HealthChecker([FakeProbe("database", hang)], timeout=NO_HANG)
    waiter = asyncio.ensure_future(checker.check())
    await asyncio.sleep(0)
    assert checker._inflight is not None
    checker._inflight.cancel()
    report = await asyncio.wait_for(waiter, NO_HANG)
    assert report.results[0].status == "failed"
    await checker.aclose()


async def test_stuck_probe_is_not_started_again() -> None:
    """A probe still stuck from an earlier run is reported failed, not started again: no pile-up of tasks."""
    release = asyncio.Event()
    probe = FakeProbe("database")

    async def stubborn() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()

    probe.behaviour = stubborn
    checker = HealthChecker([probe], timeout=0.02, cache_ttl=0)
    for _ in range(5):
        report = await asyncio.wait_for(checker.check(), NO_HANG)
        assert report.results[0].status == "failed"
    assert probe.calls == 1
    assert "still running" in (report.results[0].error or "")
    release.set()
    await checker.aclose()
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


async def test_invalidate_during_a_run_is_not_undone() -> None:
    """A run started before invalidate() is not cached afterwards: the next check runs anew."""
    gate = asyncio.Event()
    probe = FakeProbe("database")

    async def slow() -> None:
        await gate.wait()

    probe.behaviour = slow
    checker = HealthChecker([probe], timeout=NO_HANG, cache_ttl=60)
    first = asyncio.ensure_future(checker.check())
    await asyncio.sleep(0)
    checker.invalidate()
    gate.set()
    await first
    assert checker.cached() is None
    await checker.check()
    assert probe.calls == 2


async def test_shared_run_does_not_inherit_the_callers_context() -> None:
    """The shared probe run starts from an empty context, not the first caller's (request ids, spans)."""
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")
    seen = []

    async def look() -> None:
        seen.append(request_id.get())

    request_id.set("connection-A")
    await HealthChecker([FakeProbe("database", look)]).check()
    assert seen == ["none"]


async def test_refresher_restarts_in_a_new_event_loop() -> None:
    """Background refresh follows the app into a new event loop (test clients, repeated asyncio.run)."""
    probe = FakeProbe("database")
    checker = HealthChecker([probe], refresh_interval=0.01, cache_ttl=60)

    async def one_loop() -> int:
        checker.start()
        before = probe.calls
        for _ in range(500):
            if probe.calls >= before + 2:
                break
            await asyncio.sleep(0.01)
        await checker.aclose()
        return probe.calls - before

    # Two fresh loops, one after the other, in a worker thread (this test's own loop is busy).
    assert await asyncio.to_thread(asyncio.run, one_loop()) >= 2
    assert await asyncio.to_thread(asyncio.run, one_loop()) >= 2


async def test_stuck_sync_probe_does_not_starve_the_executor() -> None:
    """A sync check that blocks for good occupies one thread at most; the loop's executor stays free."""
    blocker = threading.Event()
    probe = CallableProbe("supervisor", Component.SUPERVISOR, blocker.wait)
    checker = HealthChecker([probe], timeout=0.02, cache_ttl=0)
    try:
        for _ in range(40):
            report = await asyncio.wait_for(checker.check(), NO_HANG)
            assert report.results[0].status == "failed"
        threads = [t for t in threading.enumerate() if t.name == "ws_diag-probe-supervisor"]
        assert len(threads) == 1
        # getaddrinfo runs in the default executor, which a pile of stuck probes would have exhausted.
        await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo("127.0.0.1", 80), NO_HANG)
    finally:
        blocker.set()
        await checker.aclose()


# --- the failure path: no report from before the failure clears a component ------------------


class Switch:
    """A probe behaviour: healthy until ``down`` is set, then connection refused; optionally gated."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.down = False
        self.gate = gate

    async def __call__(self) -> None:
        down = self.down  # the state when the probe started
        if self.gate is not None:
            await self.gate.wait()
        if down:
            raise ConnectionRefusedError(111, "Connection refused")


async def test_failure_path_does_not_reuse_a_healthy_report_from_before_the_failure() -> None:
    """A healthy report cached before the failure is not the failure's answer: a new run names the database."""
    clock = Clock()
    switch = Switch()
    probe = FakeProbe("database", switch)
    checker = HealthChecker([probe], cache_ttl=60, clock=clock)
    healthy = await checker.check()  # /health, readiness or the refresh
    switch.down = True
    clock.now += 0.1
    failure_at = checker.now()
    clock.now += 0.001
    assert await checker.check() is healthy  # /health keeps its cache
    report = await checker.check(failure_at=failure_at)
    assert report is not healthy
    assert checker.runs == 2
    culprit = report.culprit()
    assert culprit is not None
    assert (culprit.name, culprit.status) == ("database", "failed")


async def test_failure_path_reuses_a_fresh_failing_report() -> None:
    """A cached failing report is reused on the failure path while failure_cache_ttl lasts, then run again."""
    clock = Clock()
    switch = Switch()
    switch.down = True
    checker = HealthChecker([FakeProbe("database", switch)], cache_ttl=60, failure_cache_ttl=2.0, clock=clock)
    failing = await checker.check()
    clock.now += 1.9
    assert await checker.check(failure_at=checker.now()) is failing
    assert checker.runs == 1
    clock.now += 0.2
    assert await checker.check(failure_at=checker.now()) is not failing
    assert checker.runs == 2


async def test_failure_path_reuses_a_healthy_report_taken_after_the_failure() -> None:
    """A healthy report whose run started after the failure was seen answers it: no second run."""
    clock = Clock()
    checker = HealthChecker([FakeProbe("database", Switch())], cache_ttl=60, clock=clock)
    failure_at = checker.now()
    clock.now += 0.1
    after = await checker.check()
    assert await checker.check(failure_at=failure_at) is after
    assert checker.runs == 1


async def test_failure_storm_costs_one_run_per_window() -> None:
    """1,000 failure-path checks seen while one run is in flight share it; the next window costs one more."""
    clock = Clock()
    gate = asyncio.Event()
    switch = Switch(gate)
    probe = FakeProbe("database", switch)
    checker = HealthChecker([probe], timeout=NO_HANG, cache_ttl=60, failure_cache_ttl=2.0, clock=clock)
    gate.set()
    await checker.check()  # a healthy report cached before the outage
    gate.clear()
    switch.down = True
    callers = []
    for _ in range(10):  # failures seen over time while the one run is in flight
        clock.now += 0.01
        callers += [asyncio.ensure_future(checker.check(failure_at=checker.now())) for _ in range(100)]
        await asyncio.sleep(0)
    gate.set()
    reports = await asyncio.gather(*callers)
    assert checker.runs == 2
    assert probe.calls == 2
    assert all(r is reports[0] for r in reports)
    assert reports[0].culprit() is not None
    clock.now += 1.0  # a second wave within the failing report's window: no run
    wave = await asyncio.gather(*(checker.check(failure_at=checker.now()) for _ in range(1000)))
    assert all(r is reports[0] for r in wave)
    assert checker.runs == 2
    clock.now += 1.5  # the next window: one run for the whole wave
    wave = await asyncio.gather(*(checker.check(failure_at=checker.now()) for _ in range(1000)))
    assert checker.runs == 3
    assert all(r is wave[0] and r is not reports[0] for r in wave)


class UpThenDown:
    """A database probe: its first call (a /health run begun while the database was up) answers only when
    ``slow_health`` is set; every later call finds the database down."""

    def __init__(self) -> None:
        self.slow_health = asyncio.Event()
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.calls == 1:
            await self.slow_health.wait()
            return
        raise ConnectionRefusedError(111, "Connection refused")


async def test_failure_path_does_not_join_an_earlier_run_started_for_another_reason() -> None:
    """A /health run in flight from before the failure is not its answer: a failure-path run starts beside it."""
    clock = Clock()
    database = UpThenDown()
    checker = HealthChecker([FakeProbe("database", database)], timeout=NO_HANG, cache_ttl=60, clock=clock)
    health = asyncio.ensure_future(checker.check())
    await asyncio.sleep(0)
    clock.now += 0.1
    failure_at = checker.now()
    reports = await asyncio.gather(*(checker.check(failure_at=failure_at) for _ in range(100)))
    assert all(r is reports[0] for r in reports)
    assert reports[0].culprit() is not None
    assert not health.done()
    database.slow_health.set()
    assert (await health).healthy  # /health got its own run's answer
    assert checker.cached() is reports[0]  # the older run, finishing later, does not replace the newer report
    assert (checker.runs, database.calls) == (2, 2)


async def test_an_older_run_finishing_later_does_not_undo_the_failure_verdict() -> None:
    """A /health run from before the failure, answering after the failure's run: no "recovered" status change and
    no report hook for its stale readings (metrics would set the component up again)."""
    clock = Clock()
    database = UpThenDown()
    changes: list[tuple[str, str]] = []
    hooked: list[bool] = []
    checker = HealthChecker(
        [FakeProbe("database", database)],
        timeout=NO_HANG,
        cache_ttl=60,
        clock=clock,
        on_status_change=[lambda change: changes.append((change.previous, change.current))],
        on_report=[lambda report: hooked.append(report.healthy)],
    )
    health = asyncio.ensure_future(checker.check())
    await asyncio.sleep(0)
    clock.now += 0.1
    failed = await checker.check(failure_at=checker.now())
    database.slow_health.set()
    assert (await health).healthy  # its callers still get their own run's answer
    assert changes == [("unknown", "failed")]  # no ("failed", "healthy") from the older readings
    assert hooked == [False]
    assert checker.cached() is failed


async def test_failure_path_joins_a_run_started_after_the_failure() -> None:
    """A run in flight that started after the failure was seen (a refresh, /health) is joined, not doubled."""
    clock = Clock()
    gate = asyncio.Event()
    switch = Switch(gate)
    switch.down = True
    checker = HealthChecker([FakeProbe("database", switch)], timeout=NO_HANG, cache_ttl=60, clock=clock)
    failure_at = checker.now()
    clock.now += 0.1
    health = asyncio.ensure_future(checker.check())
    await asyncio.sleep(0)
    failure = asyncio.ensure_future(checker.check(failure_at=failure_at))
    await asyncio.sleep(0)
    gate.set()
    assert await failure is await health
    assert checker.runs == 1


async def test_failure_path_run_does_not_restart_a_stuck_probe() -> None:
    """A probe stuck from an earlier run is not started again by a failure-path run: it is reported failed."""
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()

    probe = FakeProbe("database", stubborn)
    checker = HealthChecker([probe], timeout=0.02, cache_ttl=60, failure_cache_ttl=0)
    first = await asyncio.wait_for(checker.check(), NO_HANG)
    assert first.results[0].status == "failed"
    report = await asyncio.wait_for(checker.check(failure_at=checker.now()), NO_HANG)
    assert probe.calls == 1
    assert "still running" in (report.results[0].error or "")
    assert report.culprit() is not None
    release.set()
    await checker.aclose()
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
