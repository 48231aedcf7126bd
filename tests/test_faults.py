"""Faults through a real server: real probes against the suite's own PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from reliability import record
from servers import SERVER_KINDS, run_server
from services import PostgresServer, RedisServer, SilentListener
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ws_diag import Classifier, Component, DiagnosticsMiddleware, DiagSettings
from ws_diag.health.probes import PostgresProbe, Probe, RedisProbe

pytestmark = pytest.mark.asyncio

# A probe run's deadline. Every storm now runs the probes afresh (no healthy report from before a failure clears
# a component), so on a loaded 2-core machine a storm's own work can hold the loop past a short deadline and a
# healthy probe reads as "no answer" (seen once at 0.4 s with 20 sessions under uvicorn's legacy websockets).
DEADLINE = 1.0
NO_HANG = 10.0


class Counting:
    """Wraps a probe and counts its runs."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.name = probe.name
        self.component = probe.component
        self.required = probe.required
        self.calls = 0
        self._called = asyncio.Event()

    async def check(self) -> Any:
        self.calls += 1
        self._called.set()
        return await self.probe.check()

    async def wait_calls(self, count: int) -> None:
        """Wait until the probe has run ``count`` times."""
        while self.calls < count:
            self._called.clear()
            await self._called.wait()


async def ambiguous_failure(scope: Any, receive: Any, send: Any) -> None:
    """Accept, read one message, then fail with an exception that names no component."""
    await receive()
    await send({"type": "websocket.accept"})
    await receive()
    raise TimeoutError("something upstream timed out")


async def one_session(url: str) -> tuple[int | None, dict[str, Any] | None, float]:
    """Send one message; return the close code, the frame and seconds from send to close."""
    frame = None
    async with connect(url, open_timeout=NO_HANG, close_timeout=NO_HANG) as ws:
        sent = time.perf_counter()
        await ws.send("hi")
        try:
            while True:
                message = await asyncio.wait_for(ws.recv(), NO_HANG)
                frame = json.loads(message)["error"]
        except ConnectionClosed:
            pass
        return ws.close_code, frame, time.perf_counter() - sent


async def poll_until(url: str, done: Any) -> tuple[int | None, dict[str, Any] | None]:
    """Open sessions until ``done(close_code)``, for at most NO_HANG seconds."""
    deadline = time.monotonic() + NO_HANG
    while True:
        code, frame, _ = await one_session(url)
        if done(code) or time.monotonic() > deadline:
            return code, frame
        await asyncio.sleep(0.02)


def middleware(postgres_dsn: str, redis_url: str, **settings: Any) -> tuple[DiagnosticsMiddleware, list[Counting]]:
    """The ambiguous-failure app behind ws_diag with counted real probes."""
    probes = [
        Counting(PostgresProbe(postgres_dsn, timeout=DEADLINE)),
        Counting(RedisProbe(redis_url, timeout=DEADLINE)),
    ]
    options: dict[str, Any] = {"probe_timeout": DEADLINE, "cache_ttl": 0.2, **settings}
    app = DiagnosticsMiddleware(ambiguous_failure, settings=DiagSettings(**options), probes=probes)
    return app, probes


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_redis_killed_then_restarted(kind: str, postgres: PostgresServer, redis: RedisServer) -> None:
    """Healthy: 1011. Redis killed: 4007 at once. Redis back: 1011 again once the failing result expires."""
    record("faults", faults_injected=2)
    app, _ = middleware(postgres.dsn, redis.url)
    async with run_server(app, kind) as url:
        code, frame, _ = await one_session(url)
        assert (code, frame and frame["component"]) == (1011, "Generic Internal")
        await redis.akill()
        # The healthy result cached above is from before the failure: the first session names Redis.
        code, frame, _ = await one_session(url)
        assert (code, frame and frame["component"]) == (4007, "Redis")
        await redis.astart()
        code, frame = await poll_until(url, lambda code: code == 1011)
        assert code == 1011


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_postgres_stopped_gives_4005(kind: str, postgres: PostgresServer, redis: RedisServer) -> None:
    """With PostgreSQL stopped, an ambiguous failure is attributed to the database: 4005."""
    record("faults", faults_injected=1)
    app, _ = middleware(postgres.dsn, redis.url)
    await postgres.astop()
    async with run_server(app, kind) as url:
        code, frame, _ = await one_session(url)
    assert code == 4005
    assert frame is not None
    assert frame["component"] == "Database"
    assert PostgresServer.password not in json.dumps(frame)


def raising_after_accept(exc_type: type[Exception]) -> Any:
    """Accept, read one message, then raise a plain ``exc_type`` the type rules leave to the probes."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        raise exc_type("the app's own failure, not a driver's")

    return app


@pytest.mark.parametrize("exc_type", [ConnectionRefusedError, TimeoutError])
@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_first_failure_after_postgres_stops_names_the_database(
    kind: str, exc_type: type[Exception], postgres: PostgresServer, redis: RedisServer
) -> None:
    """Cache warmed healthy by /health, PostgreSQL stopped: the very first failing session gets 4005 by probe."""
    repetitions = 3
    probes = [PostgresProbe(postgres.dsn, timeout=DEADLINE), RedisProbe(redis.url, timeout=DEADLINE)]
    # A healthy report would be reused for a minute; a failing one never (each repetition warms anew).
    settings = DiagSettings(probe_timeout=DEADLINE, cache_ttl=60, failure_cache_ttl=0, health_path="/health")
    app = DiagnosticsMiddleware(raising_after_accept(exc_type), settings=settings, probes=probes)
    seen: list[tuple[int | None, str | None, str | None]] = []
    async with (
        run_server(app, kind) as url,
        httpx.AsyncClient(base_url=url.replace("ws://", "http://", 1), timeout=NO_HANG) as http,
    ):
        for _ in range(repetitions):
            await postgres.astart()
            assert (await http.get("/health")).status_code == 200
            warm = app.checker.cached()
            assert warm is not None
            assert warm.healthy
            await postgres.astop()
            code, frame, _ = await one_session(url)
            seen.append((code, frame and frame["component"], frame and frame["source"]))
    await app.checker.aclose()
    record("faults", faults_injected=repetitions)
    assert seen == [(4005, "Database", "probe")] * repetitions


async def test_postgres_frozen_is_diagnosed_at_the_deadline(postgres: PostgresServer, redis: RedisServer) -> None:
    """A SIGSTOPped PostgreSQL: the client still gets 4005, bounded by the probe deadline."""
    record("faults", faults_injected=1)
    app, _ = middleware(postgres.dsn, redis.url)
    async with run_server(app, "hypercorn") as url:
        postgres.freeze()
        try:
            code, frame, took = await one_session(url)
        finally:
            postgres.thaw()
    assert code == 4005
    assert frame is not None
    assert frame["component"] == "Database"
    assert took < NO_HANG


async def test_black_holed_database(silent_listener: SilentListener, redis: RedisServer) -> None:
    """A database address that accepts and never answers gives 4005 by the deadline, not a hang."""
    record("faults", faults_injected=1)
    app, _ = middleware(silent_listener.postgres_dsn, redis.url)
    async with run_server(app, "uvicorn-websockets") as url:
        code, _frame, took = await one_session(url)
    assert code == 4005
    assert took < NO_HANG


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_storm_of_500_failing_sessions(kind: str, postgres: PostgresServer, redis: RedisServer) -> None:
    """500 sessions failing at once while Redis is down: all get 4007, each probe runs once, no task leaks."""
    record("faults", faults_injected=1, storm_sessions=500)
    sessions = 500
    accepted = 0
    all_in = asyncio.Event()
    go = asyncio.Event()

    async def storm_app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal accepted
        await receive()
        await send({"type": "websocket.accept"})
        accepted += 1
        if accepted == sessions:
            all_in.set()
        await go.wait()
        raise TimeoutError("upstream timed out")

    probes = [
        Counting(PostgresProbe(postgres.dsn, timeout=DEADLINE)),
        Counting(RedisProbe(redis.url, timeout=DEADLINE)),
    ]
    settings = DiagSettings(probe_timeout=DEADLINE, cache_ttl=60)
    app = DiagnosticsMiddleware(storm_app, settings=settings, probes=probes)
    await redis.akill()
    baseline = asyncio.all_tasks()

    async def client(url: str) -> tuple[int | None, str | None]:
        async with connect(url, open_timeout=NO_HANG * 3, close_timeout=NO_HANG) as ws:
            frame = None
            try:
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), NO_HANG * 3))["error"]["component"]
            except ConnectionClosed:
                pass
            return ws.close_code, frame

    async with run_server(app, kind) as url:
        clients = [asyncio.ensure_future(client(url)) for _ in range(sessions)]
        await asyncio.wait_for(all_in.wait(), NO_HANG * 6)
        go.set()
        results = await asyncio.gather(*clients)
    assert results == [(4007, "Redis")] * sessions
    assert [p.calls for p in probes] == [1, 1]
    assert app.checker.runs == 1
    await app.checker.aclose()
    leftover = {t for t in asyncio.all_tasks() - baseline if not t.done()}
    assert leftover == set()


async def test_settings_alone_name_redis(
    monkeypatch: pytest.MonkeyPatch, postgres: PostgresServer, redis: RedisServer
) -> None:
    """Only WS_DIAG_POSTGRES_DSN and WS_DIAG_REDIS_URL set, Redis stopped: the session names Redis, no secret."""
    record("faults", faults_injected=1)
    monkeypatch.setenv("WS_DIAG_POSTGRES_DSN", postgres.dsn)
    monkeypatch.setenv("WS_DIAG_REDIS_URL", redis.url)
    monkeypatch.setenv("WS_DIAG_PROBE_TIMEOUT", str(DEADLINE))
    app = DiagnosticsMiddleware(ambiguous_failure)
    assert [p.name for p in app.checker.probes] == ["database", "redis"]
    await redis.akill()
    async with run_server(app, "uvicorn-wsproto") as url:
        code, frame, took = await one_session(url)
    assert code == 4007
    assert frame is not None
    assert frame["component"] == "Redis"
    assert PostgresServer.password not in json.dumps(frame)
    assert took < NO_HANG


async def test_background_refresh_makes_diagnosis_instant(postgres: PostgresServer, redis: RedisServer) -> None:
    """With refresh_interval, the first request starts background checks and failures find a fresh report."""
    app, probes = middleware(postgres.dsn, redis.url, refresh_interval=0.05, cache_ttl=60)
    async with run_server(app, "hypercorn") as url:
        await one_session(url)
        await asyncio.wait_for(probes[0].wait_calls(3), NO_HANG)
        assert app.checker.cached() is not None
    await app.checker.aclose()


class Broken:
    """A probe that raises, hangs, or returns nonsense."""

    def __init__(self, name: str, behaviour: str) -> None:
        self.name = name
        self.component = Component.INTEGRATION
        self.required = True
        self.behaviour = behaviour

    async def check(self) -> Any:
        if self.behaviour == "raise":
            raise ZeroDivisionError("probe bug")
        if self.behaviour == "hang":
            await asyncio.Event().wait()
        return object()  # nonsense


class BrokenClassifier(Classifier):
    """A classifier with a bug."""

    def classify_one(self, exc: BaseException) -> Any:
        raise KeyError("classifier bug")


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_chaos_while_sessions_are_open(kind: str, postgres: PostgresServer, redis: RedisServer) -> None:
    """Sessions open across Redis frozen, killed, black-holed and restarted: each failure names the right component."""
    sessions_per_phase = 20
    phase_codes: list[tuple[str, list[int | None]]] = []
    app, _ = middleware(postgres.dsn, redis.url, cache_ttl=0.1)
    async with run_server(app, kind) as url:
        for phase in ("healthy", "frozen", "killed", "restarted"):
            if phase == "frozen":
                redis.freeze()
            elif phase == "killed":
                redis.thaw()
                await redis.akill()
            elif phase == "restarted":
                await redis.astart()
            expected = 1011 if phase in ("healthy", "restarted") else 4007
            code, _ = await poll_until(url, lambda code, want=expected: code == want)
            # Now many sessions at once, all open before any fails.
            results = await asyncio.gather(*(one_session(url) for _ in range(sessions_per_phase)))
            phase_codes.append((phase, [code, *(r[0] for r in results)]))
            assert all(r[2] < NO_HANG for r in results)
    record("faults", faults_injected=3, sessions_during_faults=4 * (sessions_per_phase + 1))
    assert phase_codes == [
        ("healthy", [1011] * (sessions_per_phase + 1)),
        ("frozen", [4007] * (sessions_per_phase + 1)),
        ("killed", [4007] * (sessions_per_phase + 1)),
        ("restarted", [1011] * (sessions_per_phase + 1)),
    ]


@pytest.mark.parametrize("behaviour", ["raise", "hang", "nonsense"])
async def test_broken_probe_never_breaks_a_session(behaviour: str) -> None:
    """A probe that raises, hangs or returns nonsense still lets the session close with a code, within the deadline."""
    app = DiagnosticsMiddleware(
        ambiguous_failure, settings=DiagSettings(probe_timeout=DEADLINE), probes=[Broken("integration", behaviour)]
    )
    async with run_server(app, "uvicorn-websockets") as url:
        code, frame, took = await one_session(url)
    await app.checker.aclose()
    record("faults", broken_probes=1)
    assert code == 4010  # the broken probe counts as a failed Integration check
    assert frame is not None
    assert took < NO_HANG


async def test_broken_classifier_never_breaks_a_session() -> None:
    """A classifier that raises: the session still gets a plain 1011 close, and the app's exception is logged."""
    app = DiagnosticsMiddleware(ambiguous_failure, settings=DiagSettings(), classifier=BrokenClassifier())
    async with run_server(app, "hypercorn") as url:
        code, frame, _ = await one_session(url)
    record("faults", broken_classifiers=1)
    assert code == 1011
    assert frame is None  # the diagnosis failed: a plain close, as the app would have had
