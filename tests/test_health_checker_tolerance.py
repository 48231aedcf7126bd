"""The checker's required-ness, failure threshold, cache lifetimes and status changes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest
from servers import run_server
from services import RedisServer

from ws_diag import Component, DiagnosticsMiddleware, DiagSettings
from ws_diag.health import HealthChecker, StatusChange, validate_websocket_component_health
from ws_diag.health.probes import ProbeFailed

pytestmark = pytest.mark.asyncio


class Switch:
    """A probe that passes or fails as the test says."""

    def __init__(self, name: str, *, component: Any = Component.DATABASE, required: bool = True) -> None:
        self.name = name
        self.component = component
        self.required = required
        self.up = True
        self.calls = 0

    async def check(self) -> None:
        self.calls += 1
        if not self.up:
            msg = f"{self.name} down (postgresql://app:s3cret-pw@db/app)"
            raise ProbeFailed(msg)


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_threshold_counts_consecutive_failed_runs() -> None:
    """A required probe is degraded for its first N-1 failed runs and failed from the Nth; success resets the count."""
    probe = Switch("database")
    checker = HealthChecker([probe], cache_ttl=0, failure_threshold=3)
    assert (await checker.check()).healthy
    probe.up = False
    seen = []
    for _ in range(4):
        report = await checker.check()
        seen.append((report.results[0].status, report.results[0].failures, report.healthy))
    assert seen == [("degraded", 1, True), ("degraded", 2, True), ("failed", 3, False), ("failed", 4, False)]
    probe.up = True
    assert (await checker.check()).results[0].failures == 0
    probe.up = False
    assert (await checker.check()).results[0].status == "degraded"  # the count started over


async def test_duration_fails_a_probe_before_the_count() -> None:
    """failure_duration: a probe failing that many seconds counts as failed even below failure_threshold."""
    clock = Clock()
    probe = Switch("database")
    probe.up = False
    checker = HealthChecker([probe], cache_ttl=0, failure_threshold=100, failure_duration=5.0, clock=clock)
    first = (await checker.check()).results[0]
    assert first.status == "degraded"
    assert first.failing_since is not None
    clock.now += 4.9
    assert (await checker.check()).results[0].status == "degraded"
    clock.now += 0.1
    later = (await checker.check()).results[0]
    assert (later.status, later.failures, later.failing_since) == ("failed", 3, first.failing_since)


async def test_required_override_makes_redis_required_and_database_optional() -> None:
    """required= names exactly the required probes: redis can be made required, database optional."""
    database, redis = Switch("database"), Switch("redis", component=Component.REDIS, required=False)
    database.up = redis.up = False
    checker = HealthChecker([database, redis], cache_ttl=0, required=["redis"])
    report = await checker.check()
    by_name = {r.name: (r.required, r.status) for r in report.results}
    assert by_name == {"database": (False, "degraded"), "redis": (True, "failed")}
    assert not report.healthy
    redis.up = True
    report = await checker.check()
    assert report.healthy
    assert {r.name: r.required for r in report.results} == {"database": False, "redis": True}


async def test_required_override_names_unknown_probe() -> None:
    """A required name that is no probe is a ValueError naming the setting and the known probes."""
    with pytest.raises(ValueError, match=r"required_probes \(WS_DIAG_REQUIRED_PROBES\).*\['cache'\].*\['database'\]"):
        HealthChecker([Switch("database")], required=["database", "cache"])
    with pytest.raises(ValueError, match="failure_threshold must be at least 1"):
        HealthChecker([Switch("database")], failure_threshold=0)


async def test_from_settings_logs_and_raises_unknown_required(caplog: pytest.LogCaptureFixture) -> None:
    """from_settings logs a bad required_probes at ERROR on logger ws_diag before raising it unchanged."""
    caplog.set_level(logging.ERROR, logger="ws_diag")
    settings = DiagSettings(required_probes=("nothing",))
    with pytest.raises(ValueError, match="required_probes"):
        HealthChecker.from_settings(settings, [Switch("database")])
    [record] = [r for r in caplog.records if getattr(r, "ws_diag_event", None) == "settings_invalid"]
    assert "names no configured probe: ['nothing']" in record.getMessage()


async def test_separate_cache_lifetimes_for_success_and_failure() -> None:
    """A passing run is reused for cache_ttl, a failing one for failure_cache_ttl."""
    clock = Clock()
    probe = Switch("database")
    checker = HealthChecker([probe], cache_ttl=10.0, failure_cache_ttl=1.0, clock=clock)
    await checker.check()
    clock.now += 9.9
    await checker.check()
    assert probe.calls == 1
    clock.now += 0.2
    probe.up = False
    report = await checker.check()
    assert probe.calls == 2
    assert checker.time_to_change(report) == pytest.approx(1.0)
    clock.now += 0.9
    await checker.check()
    assert probe.calls == 2
    clock.now += 0.2
    await checker.check()
    assert probe.calls == 3


async def test_status_change_once_per_transition(caplog: pytest.LogCaptureFixture) -> None:
    """Each healthy/failed transition past the threshold is logged and hooked once, never per check."""
    caplog.set_level(logging.INFO, logger="ws_diag.health")
    changes: list[StatusChange] = []
    probe = Switch("database")
    checker = HealthChecker([probe], cache_ttl=0, failure_threshold=2, on_status_change=[changes.append])
    for up in (True, True, False, False, False, False, True, True, False, True):
        probe.up = up
        await checker.check()
    lines = [r.getMessage() for r in caplog.records if getattr(r, "ws_diag_event", None) == "status_change"]
    # The single failure before the last success stayed within the threshold: no transition.
    assert lines == ["component database: healthy -> failed", "component database: failed -> healthy"]
    assert [(c.probe, c.previous, c.current) for c in changes] == [
        ("database", "healthy", "failed"),
        ("database", "failed", "healthy"),
    ]
    assert changes[0].result.failures == 2
    levels = [r.levelno for r in caplog.records if getattr(r, "ws_diag_event", None) == "status_change"]
    assert levels == [logging.WARNING, logging.INFO]


async def test_first_run_down_is_a_transition_from_unknown(caplog: pytest.LogCaptureFixture) -> None:
    """A probe first seen failing is announced from unknown, in the report's words; one first seen healthy is not."""
    caplog.set_level(logging.INFO, logger="ws_diag.health")
    database, redis = Switch("database"), Switch("redis", component=Component.REDIS, required=False)
    redis.up = False

    def broken(change: StatusChange) -> None:
        raise RuntimeError("hook bug")

    checker = HealthChecker([database, redis], cache_ttl=0, on_status_change=[broken])
    report = await checker.check()
    assert [r.status for r in report.results] == ["healthy", "degraded"]
    lines = [r.getMessage() for r in caplog.records if getattr(r, "ws_diag_event", None) == "status_change"]
    assert lines == ["component redis: unknown -> degraded"]
    assert any(getattr(r, "ws_diag_event", None) == "hook_failed" for r in caplog.records)


async def test_validate_honours_required_probes() -> None:
    """validate_websocket_component_health (ws-diag check) applies required_probes."""
    redis = Switch("redis", component=Component.REDIS, required=False)
    redis.up = False
    report = await validate_websocket_component_health([redis], settings=DiagSettings())
    assert report["healthy"] is True
    report = await validate_websocket_component_health([redis], settings=DiagSettings(required_probes=("redis",)))
    assert report["healthy"] is False
    assert report["failed_components"] == ["redis"]


def run_check(**env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ws_diag check`` with only the given WS_DIAG_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WS_DIAG_") and k != "MISSING_FOR_TEST"}
    return subprocess.run(
        [sys.executable, "-m", "ws_diag", "check", "--json"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_cli_check_honours_required_probes() -> None:
    """ws-diag check: WS_DIAG_REQUIRED_PROBES='[]' makes a missing variable only degrade; an unknown name exits 2."""
    required = run_check(WS_DIAG_REQUIRED_ENV='["MISSING_FOR_TEST"]')
    assert required.returncode == 1, required.stderr
    optional = run_check(WS_DIAG_REQUIRED_ENV='["MISSING_FOR_TEST"]', WS_DIAG_REQUIRED_PROBES="[]")
    assert optional.returncode == 0, optional.stderr
    assert json.loads(optional.stdout)["degraded_components"] == ["environment"]
    unknown = run_check(WS_DIAG_REQUIRED_ENV='["MISSING_FOR_TEST"]', WS_DIAG_REQUIRED_PROBES='["redis"]')
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("ws-diag: invalid configuration: required_probes (WS_DIAG_REQUIRED_PROBES)")
    assert "Traceback" not in unknown.stderr


@pytest.mark.parametrize(("required", "word"), [(False, "degraded"), (True, "failed")])
async def test_log_line_and_health_report_use_one_vocabulary(
    redis: RedisServer, caplog: pytest.LogCaptureFixture, required: bool, word: str
) -> None:
    """Redis killed for real: the status-change line, StatusChange, /health and readiness say the same word."""
    caplog.set_level(logging.INFO, logger="ws_diag.health")
    settings = DiagSettings(
        redis_url=redis.url,
        health_path="/health",
        readiness_path="/readyz",
        cache_ttl=0,
        probe_timeout=2,
        required_probes=("redis",) if required else None,
    )
    changes: list[StatusChange] = []
    checker = HealthChecker.from_settings(settings, on_status_change=[changes.append])
    middleware = DiagnosticsMiddleware(http_app, settings=settings, checker=checker)
    async with (
        run_server(middleware, "hypercorn") as url,
        httpx.AsyncClient(base_url=url.replace("ws://", "http://", 1), timeout=10) as http,
    ):
        assert (await http.get("/health")).json()["component_details"]["redis"]["status"] == "healthy"
        redis.kill()
        health = (await http.get("/health")).json()
        ready = await http.get("/readyz", params={"verbose": "1"})
        await redis.astart()
        statuses = []
        for _ in range(50):  # bounded: Redis is back once the fixture's start returned
            statuses.append((await http.get("/health")).json()["component_details"]["redis"]["status"])
            if statuses[-1] == "healthy":
                break
    assert health["component_details"]["redis"]["status"] == word
    assert health[f"{word}_components"] == ["redis"]
    assert ready.status_code == (503 if required else 200)
    assert f"[-]redis {word} ({'required' if required else 'optional'}, 2 failed runs)" in ready.text
    assert statuses[-1] == "healthy"
    lines = [r.getMessage() for r in caplog.records if getattr(r, "ws_diag_event", None) == "status_change"]
    assert lines == [f"component redis: healthy -> {word}", f"component redis: {word} -> healthy"]
    assert [(c.previous, c.current, c.result.status) for c in changes] == [
        ("healthy", word, word),
        (word, "healthy", "healthy"),
    ]
    first = next(r for r in caplog.records if getattr(r, "ws_diag_event", None) == "status_change")
    assert (first.levelno, first.status, first.previous_status) == (logging.WARNING, word, "healthy")  # type: ignore[attr-defined]


async def http_app(scope: Any, receive: Any, send: Any) -> None:
    """The wrapped app: 204 for anything ws_diag does not answer itself."""
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
