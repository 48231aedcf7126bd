"""Probes against a real PostgreSQL and Redis that the suite owns, and against a black hole."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from services import PostgresServer, RedisServer, SilentListener

from ws_diag import DiagSettings
from ws_diag.health import HealthChecker, validate_websocket_component_health
from ws_diag.health.probes import EnvProbe, MissingEnvironment, PostgresProbe, RedisProbe, probes_from_settings

pytestmark = pytest.mark.asyncio

DEADLINE = 0.3
# "It did not hang": far above the deadline, far below any client library default.
NO_HANG = 5.0


async def verdict(probe: Any, deadline: float = DEADLINE) -> Any:
    """Run one probe through a checker, bounded; return its result."""
    checker = HealthChecker([probe], timeout=deadline, cache_ttl=0)
    try:
        report = await asyncio.wait_for(checker.check(), NO_HANG)
    finally:
        await checker.aclose()
    return report.results[0]


async def test_postgres_dsn_healthy(postgres: PostgresServer) -> None:
    """SELECT 1 over a password DSN passes against a running server."""
    result = await verdict(PostgresProbe(postgres.dsn, timeout=DEADLINE))
    assert result.ok, result.error


async def test_postgres_pool_healthy_and_exhausted(postgres: PostgresServer) -> None:
    """Through a pool the probe passes, and an exhausted pool fails at the deadline instead of waiting forever."""
    pool = await asyncpg.create_pool(postgres.dsn, min_size=1, max_size=1)
    try:
        probe = PostgresProbe(pool=pool, timeout=DEADLINE)
        assert (await verdict(probe)).ok
        async with pool.acquire():
            result = await verdict(probe)
        assert result.status == "failed"
        assert result.error_type == "TimeoutError"
    finally:
        await asyncio.wait_for(pool.close(), NO_HANG)


async def test_postgres_wrong_password_fails_without_leaking(postgres: PostgresServer) -> None:
    """A wrong password fails the probe, and the password appears nowhere in the report."""
    bad = postgres.dsn.replace(PostgresServer.password, "Wr0ng-Secret-42")
    checker = HealthChecker([PostgresProbe(bad, timeout=DEADLINE)], timeout=DEADLINE)
    report = await checker.check()
    assert report.results[0].status == "failed"
    assert report.results[0].error_type == "InvalidPasswordError"
    assert "Wr0ng-Secret-42" not in json.dumps(report.to_dict(expose_details=True))


async def test_postgres_stopped_then_restarted(postgres: PostgresServer) -> None:
    """A stopped server fails the probe; once restarted it passes again."""
    probe = PostgresProbe(postgres.dsn, timeout=DEADLINE)
    await postgres.astop()
    result = await verdict(probe)
    assert result.status == "failed"
    assert result.error_type in {"ConnectionRefusedError", "OSError"}
    await postgres.astart()
    assert (await verdict(probe)).ok


async def test_postgres_frozen_fails_at_the_deadline(postgres: PostgresServer) -> None:
    """A SIGSTOPped PostgreSQL makes the probe fail by its deadline, not after a library default."""
    probe = PostgresProbe(postgres.dsn, timeout=DEADLINE)
    postgres.freeze()
    try:
        result = await verdict(probe, deadline=DEADLINE * 2)
    finally:
        postgres.thaw()
    assert result.status == "failed"
    assert result.error_type == "TimeoutError"
    assert result.latency_ms < NO_HANG * 1000


async def test_postgres_black_hole(silent_listener: SilentListener) -> None:
    """A listener that accepts and never answers fails the probe by the deadline."""
    result = await verdict(PostgresProbe(silent_listener.postgres_dsn, timeout=DEADLINE), deadline=DEADLINE * 2)
    assert result.status == "failed"
    assert result.error_type == "TimeoutError"
    assert PostgresServer.password not in (result.error or "")


async def test_redis_url_healthy(redis: RedisServer) -> None:
    """PING over a fresh bounded connection passes against a running Redis."""
    assert (await verdict(RedisProbe(redis.url, timeout=DEADLINE))).ok


async def test_redis_client_healthy(redis: RedisServer) -> None:
    """PING through the user's own client passes."""
    client = aioredis.Redis.from_url(redis.url)
    try:
        assert (await verdict(RedisProbe(client=client, timeout=DEADLINE))).ok
    finally:
        await client.aclose()


async def test_redis_killed_then_restarted(redis: RedisServer) -> None:
    """A killed Redis degrades the probe (not required by default); a restarted one passes."""
    probe = RedisProbe(redis.url, timeout=DEADLINE)
    await redis.akill()
    result = await verdict(probe)
    assert result.status == "degraded"
    assert result.error_type == "ConnectionError"
    await redis.astart()
    assert (await verdict(probe)).ok


async def test_redis_frozen_fails_at_the_deadline(redis: RedisServer) -> None:
    """A SIGSTOPped Redis fails the probe by the deadline (redis-py defaults take about a minute)."""
    probe = RedisProbe(redis.url, timeout=DEADLINE, required=True)
    redis.freeze()
    try:
        result = await verdict(probe, deadline=DEADLINE * 2)
    finally:
        redis.thaw()
    assert result.status == "failed"
    assert result.error_type in {"TimeoutError", "ConnectionError"}


async def test_redis_black_hole_with_password(silent_listener: SilentListener) -> None:
    """A black-holed Redis fails in time, and the URL's password is nowhere in the result."""
    url = f"redis://:Pa55-Redis-Secret@127.0.0.1:{silent_listener.port}/0"
    result = await verdict(RedisProbe(url, timeout=DEADLINE), deadline=DEADLINE * 2)
    assert result.status == "degraded"
    assert "Pa55-Redis-Secret" not in (result.error or "")


async def test_env_probe_names_missing_variables_never_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """EnvProbe lists the missing names and never prints a value."""
    monkeypatch.setenv("WS_DIAG_TEST_PRESENT", "value-that-must-not-leak")
    monkeypatch.delenv("WS_DIAG_TEST_MISSING", raising=False)
    probe = EnvProbe(["WS_DIAG_TEST_PRESENT", "WS_DIAG_TEST_MISSING"])
    with pytest.raises(MissingEnvironment) as info:
        await probe.check()
    assert info.value.names == ("WS_DIAG_TEST_MISSING",)
    result = await verdict(probe)
    assert "WS_DIAG_TEST_MISSING" in (result.error or "")
    assert "value-that-must-not-leak" not in (result.error or "")


async def test_probes_from_settings(postgres: PostgresServer, redis: RedisServer) -> None:
    """DSN, URL and required_env settings build the matching probes, named database, redis, environment."""
    settings = DiagSettings(postgres_dsn=postgres.dsn, redis_url=redis.url, required_env=["PATH"])
    probes = probes_from_settings(settings)
    assert [p.name for p in probes] == ["database", "redis", "environment"]
    report = await validate_websocket_component_health(settings=settings)
    assert report["healthy"] is True
    assert set(report["component_details"]) == {"database", "redis", "environment"}


async def test_probe_arguments_are_validated() -> None:
    """Probes refuse ambiguous or impossible arguments with a clear error."""
    with pytest.raises(ValueError, match="exactly one of dsn= or pool="):
        PostgresProbe()
    with pytest.raises(ValueError, match="exactly one of url= or client="):
        RedisProbe()
    with pytest.raises(ValueError, match="timeout must be positive"):
        PostgresProbe("postgresql://x", timeout=0)
