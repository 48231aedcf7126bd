"""The health checker behaves the same under asyncio and trio (anyio's pytest plugin runs each test under both).

tests/test_health.py covers the checker in depth under asyncio; these pin the parts
that depend on the event loop (deadlines, single-flight, detached runs, stragglers,
threads, the refresh) under both libraries, and the asyncio-only probes under trio.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import logging
import threading
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from harness import FakeProbe

from ws_diag import Component
from ws_diag.health import HealthChecker
from ws_diag.health.probes import CallableProbe
from ws_diag.health.probes.http import HttpProbe

pytestmark = pytest.mark.anyio

NO_HANG = 5.0


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every test runs under asyncio and under trio."""
    return str(request.param)


class AsyncioOnlyProbe(FakeProbe):
    """A probe whose driver runs under asyncio only (like asyncpg), failing wherever it runs."""

    async_libraries = ("asyncio",)

    async def check(self) -> Any:
        self.calls += 1
        raise ConnectionRefusedError(111, "refused")


class OddBaseException(BaseException):
    """Not an Exception: the checker must still contain it."""


async def test_a_probe_raising_a_base_exception_is_a_failed_result(anyio_backend: str) -> None:
    """A probe raising a BaseException that is not cancellation fails its result; the run (and trio) go on."""

    async def odd() -> None:
        raise OddBaseException

    checker = HealthChecker([FakeProbe("database", odd), FakeProbe("redis", component=Component.REDIS)])
    report = await checker.check()
    assert (report.results[0].status, report.results[0].error_type) == ("failed", "OddBaseException")
    assert report.results[1].ok
    await checker.aclose()


async def test_single_flight_and_a_callers_deadline(anyio_backend: str) -> None:
    """Concurrent callers share one run; a caller that gives up does not cancel it for the others."""
    gate = anyio.Event()

    async def slow() -> None:
        await gate.wait()

    probe = FakeProbe("database", slow)
    checker = HealthChecker([probe], timeout=NO_HANG, cache_ttl=60)
    reports: list[Any] = []

    async def patient() -> None:
        reports.append(await checker.check())

    async with anyio.create_task_group() as group:
        for _ in range(50):
            group.start_soon(patient)
        with anyio.move_on_after(0.02) as impatient:
            await checker.check()
        assert impatient.cancelled_caught
        gate.set()
    assert len(reports) == 50
    assert all(report is reports[0] for report in reports)
    assert reports[0].healthy
    assert (probe.calls, checker.runs) == (1, 1)
    await checker.aclose()


async def test_hanging_probe_fails_at_the_deadline_and_is_not_restarted(anyio_backend: str) -> None:
    """A probe that ignores its deadline is failed at it, then reported still running, never started twice."""
    release = anyio.Event()

    async def stuck() -> None:
        # Ignores cancellation until released: asyncio's by swallowing it, trio's with a shield.
        if anyio_backend == "trio":
            with anyio.CancelScope(shield=True):
                await release.wait()
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()

    probe = FakeProbe("database", stuck)
    other = FakeProbe("redis", component=Component.REDIS)
    checker = HealthChecker([probe, other], timeout=0.05, cache_ttl=0)
    with anyio.fail_after(NO_HANG):
        first = await checker.check()
        second = await checker.check()
    assert (first.results[0].status, first.results[0].error_type) == ("failed", "TimeoutError")
    assert first.results[1].ok
    assert "still running" in (second.results[0].error or "")
    assert probe.calls == 1
    release.set()
    with anyio.fail_after(NO_HANG):
        await checker.aclose()


async def test_a_cancelled_shared_run_is_a_failed_report(anyio_backend: str) -> None:
    """If the shared run itself is cancelled, a caller that was not gets a failed report, not an exception."""

    async def hang() -> None:
        await anyio.sleep_forever()

    checker = HealthChecker([FakeProbe("database", hang)], timeout=NO_HANG)
    reports: list[Any] = []

    async def caller() -> None:
        reports.append(await checker.check())

    async with anyio.create_task_group() as group:
        group.start_soon(caller)
        while checker._inflight is None:
            await anyio.lowlevel.checkpoint()
        checker._inflight.cancel()
    assert reports[0].results[0].status == "failed"
    await checker.aclose()


async def test_sync_probe_runs_in_its_own_thread_and_is_abandoned_at_the_deadline(anyio_backend: str) -> None:
    """A sync CallableProbe answers from its thread; a blocked one fails at the deadline and is not called again."""
    release = threading.Event()
    calls: list[str] = []

    def blocked() -> bool:
        calls.append(threading.current_thread().name)
        return release.wait(30)

    quick = CallableProbe("quick", Component.DEPENDENCY, lambda: {"thread": threading.current_thread().name})
    stuck = CallableProbe("stuck", Component.DATABASE, blocked)
    checker = HealthChecker([quick, stuck], timeout=0.1, cache_ttl=0)
    with anyio.fail_after(NO_HANG):
        first = await checker.check()
        second = await checker.check()
    assert first.results[0].details == {"thread": "ws_diag-probe-quick"}
    assert first.results[1].error_type == "TimeoutError"
    assert second.results[1].status == "failed"
    assert calls == ["ws_diag-probe-stuck"]
    release.set()
    await checker.aclose()


async def test_background_refresh_runs_and_stops(anyio_backend: str) -> None:
    """start() keeps a fresh report without being asked (idempotent); aclose() stops it."""
    probe = FakeProbe("database")
    checker = HealthChecker([probe], refresh_interval=0.01, cache_ttl=60)
    checker.start()
    checker.start()
    with anyio.fail_after(NO_HANG):
        while probe.calls < 3:  # noqa: ASYNC110 - polling the probe's own count
            await anyio.sleep(0.01)
    assert checker.cached() is not None
    await checker.aclose()
    calls = probe.calls
    await anyio.sleep(0.05)
    assert probe.calls == calls


async def test_asyncio_only_probes(anyio_backend: str, caplog: pytest.LogCaptureFixture) -> None:
    """An asyncio-only probe runs under asyncio; under trio it is left out (one ERROR line) and blamed for nothing."""
    probe = AsyncioOnlyProbe("postgres")
    calls: list[str] = []

    async def asyncio_driver() -> None:
        calls.append("called")
        await asyncio.sleep(0)  # fails under trio: the probe must not run there

    declared = CallableProbe("cache", Component.REDIS, asyncio_driver, async_libraries=("asyncio",), required=False)
    checker = HealthChecker([probe, declared, FakeProbe("queue", component=Component.DEPENDENCY)], cache_ttl=0)
    with caplog.at_level(logging.ERROR, logger="ws_diag.health"):
        reports = [await checker.check(failure_at=checker.now()) for _ in range(3)]
    said = [r.getMessage() for r in caplog.records if r.name == "ws_diag.health" and r.levelno == logging.ERROR]
    if anyio_backend == "asyncio":
        assert (probe.calls, len(calls)) == (3, 3)
        assert reports[-1].culprit() is not None
        assert said == []
    else:
        assert (probe.calls, len(calls)) == (0, 0)
        assert [r.name for r in reports[-1].results] == ["queue"]
        assert reports[-1].healthy
        assert reports[-1].culprit() is None
        assert said == [
            "probe 'postgres' (AsyncioOnlyProbe) needs asyncio; this app runs under trio: the probe is not run, "
            "its component is not checked and no failure is blamed on it",
            "probe 'cache' (CallableProbe) needs asyncio; this app runs under trio: the probe is not run, "
            "its component is not checked and no failure is blamed on it",
        ]
    await checker.aclose()


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


async def test_http_probe_runs_under_both(anyio_backend: str) -> None:
    """HttpProbe (httpx is anyio) runs under trio as under asyncio: healthy on a 200, failed when refused."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/health"
        up = HttpProbe(url, name="api", required=True)
        down = HttpProbe("http://127.0.0.1:9/health", name="gone", required=True)
        checker = HealthChecker([up, down], timeout=NO_HANG, cache_ttl=0)
        report = await checker.check()
    finally:
        server.shutdown()
        server.server_close()
    assert [(r.name, r.status) for r in report.results] == [("api", "healthy"), ("gone", "failed")]
    assert report.results[1].error_type == "ConnectError"
    await checker.aclose()
