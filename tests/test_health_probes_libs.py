"""SQLAlchemyProbe and HttpProbe against a real PostgreSQL and real HTTP servers, and from settings."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy
from fake_http import FakeHttp, fake_http, garbage_http
from pydantic import ValidationError
from services import PostgresServer, SilentListener, free_port
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from test_cli import run

from ws_diag import Component, DiagSettings
from ws_diag.health import HealthChecker
from ws_diag.health.probes import HttpProbe, SQLAlchemyProbe, probes_from_settings

DEADLINE = 0.3
# "It did not hang": far above the deadline, far below any client library default.
NO_HANG = 10.0
DRIVERS = ("asyncpg", "psycopg")
INTEGRATION = Component.INTEGRATION


async def verdict(probe: Any, deadline: float = DEADLINE * 2) -> Any:
    """Run one probe through a checker, bounded; return its result."""
    checker = HealthChecker([probe], timeout=deadline, cache_ttl=0)
    try:
        report = await asyncio.wait_for(checker.check(), NO_HANG)
    finally:
        await checker.aclose()
    return report.results[0]


async def until(condition: Any, what: str) -> None:
    """Poll ``condition()`` until it holds, bounded by NO_HANG."""
    async with asyncio.timeout(NO_HANG):
        while not condition():  # noqa: ASYNC110 - the state lives in a pool or a thread, with no event to wait on
            await asyncio.sleep(0.01)


def sa_url(postgres: PostgresServer, driver: str) -> str:
    """The suite's PostgreSQL as a SQLAlchemy URL over ``driver``."""
    return postgres.dsn.replace("postgresql://", f"postgresql+{driver}://")


@pytest_asyncio.fixture(params=DRIVERS)
async def engine(request: pytest.FixtureRequest, postgres: PostgresServer) -> AsyncIterator[AsyncEngine]:
    """An async engine with a one-connection pool whose own checkout timeout is long (30 s)."""
    eng = create_async_engine(sa_url(postgres, request.param), pool_size=1, max_overflow=0, pool_timeout=30)
    try:
        yield eng
    finally:
        await asyncio.wait_for(eng.dispose(), NO_HANG)


# -- SQLAlchemyProbe


@pytest.mark.asyncio
async def test_sqlalchemy_healthy(engine: AsyncEngine) -> None:
    """SELECT 1 through the app's engine passes and reports the pool, with nothing left checked out."""
    result = await verdict(SQLAlchemyProbe(engine, timeout=DEADLINE))
    assert result.ok, result.error
    assert result.details == {"pool_checked_out": 0, "pool_size": 1}
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_sqlalchemy_exhausted_pool_fails_at_the_deadline(engine: AsyncEngine) -> None:
    """With the pool's one connection checked out, the probe fails by its deadline (not the pool's 30 s), leaks none."""
    probe = SQLAlchemyProbe(engine, timeout=DEADLINE)
    async with engine.connect() as held:
        await held.exec_driver_sql("SELECT 1")
        result = await verdict(probe)
        assert engine.pool.checkedout() == 1  # type: ignore[attr-defined]
    assert result.status == "failed"
    assert result.error_type == "TimeoutError"
    assert result.latency_ms < NO_HANG * 1000
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert (await verdict(probe)).ok


@pytest.mark.asyncio
async def test_sqlalchemy_stopped_then_restarted(engine: AsyncEngine, postgres: PostgresServer) -> None:
    """A stopped PostgreSQL fails the probe; after a restart the stale pooled connection is retried and it passes."""
    probe = SQLAlchemyProbe(engine, timeout=DEADLINE * 3)
    assert (await verdict(probe, DEADLINE * 6)).ok  # the pool now holds a connection
    await postgres.astop()
    assert (await verdict(probe, DEADLINE * 6)).status == "failed"
    await postgres.astart()
    assert (await verdict(probe, DEADLINE * 6)).ok
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_sqlalchemy_restart_between_checks_is_not_a_false_alarm(
    engine: AsyncEngine, postgres: PostgresServer
) -> None:
    """A restart between two checks leaves a dead pooled connection; the probe retries once and passes."""
    probe = SQLAlchemyProbe(engine, timeout=DEADLINE * 3)
    assert (await verdict(probe, DEADLINE * 6)).ok
    assert engine.pool.checkedin() == 1  # type: ignore[attr-defined]
    await postgres.astop()
    await postgres.astart()
    result = await verdict(probe, DEADLINE * 6)
    assert result.ok, result.error
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_sqlalchemy_frozen_fails_at_the_deadline_without_leaking(
    engine: AsyncEngine, postgres: PostgresServer
) -> None:
    """A SIGSTOPped PostgreSQL fails the probe by its deadline; no connection stays checked out; it recovers."""
    probe = SQLAlchemyProbe(engine, timeout=DEADLINE)
    assert (await verdict(probe)).ok
    postgres.freeze()
    try:
        results = [await verdict(probe) for _ in range(3)]
        await until(lambda: engine.pool.checkedout() == 0, "connections back")  # type: ignore[attr-defined]
    finally:
        postgres.thaw()
    assert [r.status for r in results] == ["failed"] * 3
    assert {r.error_type for r in results} == {"TimeoutError"}
    assert (await verdict(probe, DEADLINE * 6)).ok
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_sqlalchemy_sync_engine(postgres: PostgresServer) -> None:
    """A sync engine: healthy, then an exhausted pool fails by the deadline and the connection comes back once freed."""
    eng = sqlalchemy.create_engine(sa_url(postgres, "psycopg"), pool_size=1, max_overflow=0, pool_timeout=30)
    probe = SQLAlchemyProbe(eng, timeout=DEADLINE)
    try:
        assert (await verdict(probe)).ok
        held = await asyncio.to_thread(eng.connect)
        try:
            result = await verdict(probe)
        finally:
            await asyncio.to_thread(held.close)
        assert result.status == "failed"
        assert result.error_type == "TimeoutError"
        # The abandoned check gets the freed connection, runs and gives it back.
        await until(lambda: eng.pool.checkedout() == 0, "connection back")  # type: ignore[attr-defined]
        await until(lambda: probe._sync is not None and not probe._sync._thread_busy, "thread done")
        assert (await verdict(probe)).ok
    finally:
        await asyncio.to_thread(eng.dispose)


@pytest.mark.asyncio
async def test_sqlalchemy_from_url_never_shows_the_password(postgres: PostgresServer) -> None:
    """from_url picks an async engine where the driver can; a wrong password fails and is never shown."""
    for driver in DRIVERS:
        probe = SQLAlchemyProbe.from_url(sa_url(postgres, driver), timeout=DEADLINE * 3)
        assert isinstance(probe.engine, AsyncEngine)
        assert (await verdict(probe)).ok
        await probe.engine.dispose()
    assert isinstance(SQLAlchemyProbe.from_url("sqlite://").engine, sqlalchemy.Engine)
    bad = sa_url(postgres, "psycopg").replace(PostgresServer.password, "Wr0ng-Secret-42")
    probe = SQLAlchemyProbe.from_url(bad, timeout=DEADLINE * 3)
    checker = HealthChecker([probe], timeout=DEADLINE * 6)
    report = await checker.check()
    await checker.aclose()
    assert report.results[0].status == "failed"
    assert "Wr0ng-Secret-42" not in json.dumps(report.to_dict(expose_details=True)) + repr(probe)


def test_sqlalchemy_probe_rejects_bad_arguments() -> None:
    """A non-engine or a non-positive timeout is refused with a message naming it."""
    with pytest.raises(TypeError, match="AsyncEngine or an Engine"):
        SQLAlchemyProbe("postgresql://x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout must be positive"):
        SQLAlchemyProbe(sqlalchemy.create_engine("sqlite://"), timeout=0)


# -- HttpProbe


@pytest_asyncio.fixture
async def server() -> AsyncIterator[FakeHttp]:
    """A real HTTP server on loopback."""
    async with fake_http() as fake:
        yield fake


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.asyncio
async def test_http_healthy(server: FakeHttp, method: str) -> None:
    """A 200 answer is healthy; the details carry the status and the URL."""
    result = await verdict(HttpProbe(f"{server.url}/health", method=method, timeout=DEADLINE))  # type: ignore[arg-type]
    assert result.ok, result.error
    assert result.details == {"url": f"{server.url}/health", "status": 200}
    assert result.component is Component.INTEGRATION


@pytest.mark.parametrize("status", [500, 503, 404])
@pytest.mark.asyncio
async def test_http_error_statuses_fail(server: FakeHttp, status: int) -> None:
    """4xx and 5xx answers fail the probe, naming the status."""
    result = await verdict(HttpProbe(f"{server.url}/status/{status}", required=True, timeout=DEADLINE))
    assert result.status == "failed"
    assert result.error_type == "ProbeFailed"
    assert str(status) in (result.error or "")


@pytest.mark.asyncio
async def test_http_redirect_is_an_answer_and_is_not_followed(server: FakeHttp) -> None:
    """A 302 to another host is healthy and the other host is never contacted."""
    async with fake_http() as other:
        other_url = other.url.replace("127.0.0.1", "localhost")
        result = await verdict(HttpProbe(f"{server.url}/redirect?to={other_url}/x", timeout=DEADLINE))
        assert other.hits == []
    assert result.ok
    assert result.details["status"] == 302


@pytest.mark.asyncio
async def test_http_refused_black_hole_and_garbage(silent_listener: SilentListener) -> None:
    """Refused, silent and garbage-answering dependencies fail within the deadline."""
    refused = await verdict(HttpProbe(f"http://127.0.0.1:{free_port()}/", timeout=DEADLINE))
    hung = await verdict(HttpProbe(silent_listener.url("http", "/"), timeout=DEADLINE))
    async with garbage_http() as url:
        garbage = await verdict(HttpProbe(url + "/", timeout=DEADLINE))
    assert (refused.status, refused.error_type) == ("degraded", "ConnectError")
    assert (hung.status, hung.error_type) == ("degraded", "ReadTimeout")
    assert (garbage.status, garbage.error_type) == ("degraded", "RemoteProtocolError")
    assert hung.latency_ms < NO_HANG * 1000


@pytest.mark.asyncio
async def test_http_credentials_never_reported(server: FakeHttp) -> None:
    """User info (sent as basic auth) and the query string appear in no report, healthy or failed."""
    host = server.url.removeprefix("http://")
    ok = HttpProbe(f"http://svc:Pa55-Secret@{host}/health?token=Tok-Secret", name="svc", timeout=DEADLINE)
    bad = HttpProbe(f"http://svc:Pa55-Secret@{host}/status/503?token=Tok-Secret", name="bad", timeout=DEADLINE)
    checker = HealthChecker([ok, bad], timeout=DEADLINE * 2)
    report = await checker.check()
    await checker.aclose()
    text = json.dumps(report.to_dict(expose_details=True)) + repr(ok) + repr(bad)
    assert report.results[0].ok
    assert report.results[1].status == "degraded"
    assert "Pa55-Secret" not in text
    assert "Tok-Secret" not in text
    assert server.headers[0]["authorization"].startswith("Basic ")


def test_http_probe_rejects_bad_arguments() -> None:
    """Non-http URLs, unknown methods and non-positive timeouts are refused, without echoing credentials."""
    with pytest.raises(ValueError, match="http:// or https://") as info:
        HttpProbe("ftp://u:Pa55-Secret@host/x")
    assert "Pa55-Secret" not in str(info.value)
    with pytest.raises(ValueError, match="method"):
        HttpProbe("http://host/", method="POST")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        HttpProbe("http://host/", timeout=-1)


# -- settings and ws-diag check


def test_settings_build_the_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    """WS_DIAG_SQLALCHEMY_URL and WS_DIAG_HTTP_PROBES (each JSON shape) build the probes."""
    monkeypatch.setenv("WS_DIAG_SQLALCHEMY_URL", "postgresql+asyncpg://u:p@127.0.0.1:1/db")
    monkeypatch.setenv(
        "WS_DIAG_HTTP_PROBES",
        json.dumps(["http://a.test/h", {"url": "https://b.test/", "name": "billing", "required": True}]),
    )
    probes = probes_from_settings(DiagSettings())
    assert [(type(p).__name__, p.name, p.required) for p in probes] == [
        ("SQLAlchemyProbe", "database", True),
        ("HttpProbe", "a.test", False),
        ("HttpProbe", "billing", True),
    ]
    monkeypatch.delenv("WS_DIAG_SQLALCHEMY_URL")
    monkeypatch.setenv("WS_DIAG_HTTP_PROBES", json.dumps({"search": "http://s.test/", "llm": {"url": "http://l.test"}}))
    probes = probes_from_settings(DiagSettings())
    assert [(p.name, p.component) for p in probes] == [
        ("search", Component.INTEGRATION),
        ("llm", Component.INTEGRATION),
    ]
    spec = DiagSettings(http_probes=[{"url": "http://d.test/", "component": "dependency"}]).http_probes[0]
    assert probes_from_settings(DiagSettings(http_probes=[spec]))[0].component is Component.DEPENDENCY


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"http_probes": ["ftp://x/"]}, "http_probes"),
        ({"http_probes": [{"url": "http://x/", "component": "nope"}]}, "component"),
        ({"http_probes": [{"url": "http://x/", "verb": "GET"}]}, "verb"),
        ({"postgres_dsn": "postgresql://x/", "sqlalchemy_url": "postgresql+asyncpg://x/"}, "sqlalchemy_url"),
    ],
)
def test_bad_probe_settings_name_the_field(settings: dict[str, Any], field: str) -> None:
    """Invalid probe settings raise a ValidationError naming the field."""
    with pytest.raises(ValidationError, match=field):
        DiagSettings(**settings)


@pytest.mark.asyncio
async def test_check_command_runs_the_new_probes(postgres: PostgresServer, server: FakeHttp) -> None:
    """ws-diag check probes a SQLAlchemy URL and HTTP dependencies from the environment, leaking no credential."""
    host = server.url.removeprefix("http://")
    probes = json.dumps({"api": f"http://u:Pa55-Secret@{host}/ok", "broken": f"{server.url}/status/502"})
    result = await asyncio.to_thread(
        run, "check", "--json", WS_DIAG_SQLALCHEMY_URL=sa_url(postgres, "asyncpg"), WS_DIAG_HTTP_PROBES=probes
    )
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stderr  # the broken HTTP dependency is not required
    assert report["degraded_components"] == ["broken"]
    assert "Pa55-Secret" not in result.stdout + result.stderr
    assert PostgresServer.password not in result.stdout + result.stderr
