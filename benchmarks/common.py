"""What the benchmark sections share: apps, counting probes, services, the load-generator runner."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from ws_diag._types import ASGIApp, Receive, Scope, Send
from ws_diag.bench import echo_app, environment
from ws_diag.health.probes import Probe
from ws_diag.health.probes.base import ProbeDetails

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
if str(TESTS) not in sys.path:  # tests/services.py
    sys.path.insert(0, str(TESTS))

from services import PostgresServer, RedisServer, SilentListener, free_port, pg_bindir  # noqa: E402

from ws_diag.testing.servers import SERVER_KINDS, run_server  # noqa: E402  the runner the tests use

__all__ = [
    "MISSING_ENV",
    "QUIET_CORES",
    "ROOT",
    "SERVER_KINDS",
    "CountingProbe",
    "LogEvents",
    "LoopLag",
    "ProbeClients",
    "QuietGate",
    "Services",
    "SwitchApp",
    "cores",
    "echo_app",
    "failing_app",
    "free_port",
    "machine",
    "machine_busy",
    "probe_clients",
    "progress",
    "run_loadgen",
    "run_server",
    "services",
]

FAIL_TEXT = "fail"


def progress(text: str) -> None:
    """A progress line on stderr (the results go to stdout and to the JSON file)."""
    print(f"[benchmarks {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def failing_app(error: Callable[[], BaseException]) -> ASGIApp:
    """Echo text until told ``"fail"``; then send ``"fail <monotonic_ns>"`` and raise ``error()``.

    The timestamp is taken immediately before that last send and the raise: it
    is the moment of failure the load generator measures the close against.
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            if message.get("text") == FAIL_TEXT:
                await send({"type": "websocket.send", "text": f"fail {time.monotonic_ns()}"})
                raise error()
            await send({"type": "websocket.send", "text": message.get("text") or ""})

    return app


class SwitchApp:
    """An ASGI app that forwards to ``self.app``, so one server can serve a fresh app per round."""

    def __init__(self, app: ASGIApp = echo_app) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class CountingProbe:
    """Wraps a probe and counts its executions (``runs``)."""

    def __init__(self, inner: Probe) -> None:
        self.inner = inner
        self.name = inner.name
        self.component = inner.component
        self.required = inner.required
        self.runs = 0

    async def check(self) -> ProbeDetails:
        self.runs += 1
        return await self.inner.check()


# -- services -------------------------------------------------------------------


@dataclass
class Services:
    """A private PostgreSQL and Redis (never the machine's shared ones) and a black-hole listener."""

    postgres_dsn: str
    redis_url: str
    silent: SilentListener


@contextlib.asynccontextmanager
async def services() -> AsyncIterator[Services]:
    """Start a private PostgreSQL, Redis and a silent listener; stop them afterwards."""
    postgres = PostgresServer()
    redis = RedisServer()
    silent = SilentListener()
    try:
        await asyncio.gather(asyncio.to_thread(postgres.start), asyncio.to_thread(redis.start))
        yield Services(postgres.dsn, redis.url, silent)
    finally:
        silent.close()
        await asyncio.gather(asyncio.to_thread(postgres.close), asyncio.to_thread(redis.close))


@dataclass
class ProbeClients:
    """A connection pool and a client of the kind an app already has, for pool-based probes."""

    pool: Any  # asyncpg.Pool
    redis: Any  # redis.asyncio.Redis
    services: Services

    def probes(self, *, missing_env: bool = False) -> list[CountingProbe]:
        """Counting probes through the pool and the client (and an EnvProbe that fails, if asked)."""
        from ws_diag.health.probes import EnvProbe, PostgresProbe, RedisProbe

        probes = [CountingProbe(PostgresProbe(pool=self.pool)), CountingProbe(RedisProbe(client=self.redis))]
        if missing_env:
            probes.append(CountingProbe(EnvProbe([MISSING_ENV])))
        return probes

    async def redis_pings(self) -> int:
        """PING commands the private Redis has executed so far (probe I/O shows up here)."""
        stats = await self.redis.info("commandstats")
        ping = stats.get("cmdstat_ping", {})
        return int(ping.get("calls", 0)) if isinstance(ping, dict) else 0


MISSING_ENV = "WS_DIAG_BENCH_NEVER_SET"


@contextlib.asynccontextmanager
async def probe_clients(found: Services) -> AsyncIterator[ProbeClients]:
    """An asyncpg pool and a redis-py client on the private services, closed afterwards."""
    import asyncpg
    import redis.asyncio

    os.environ.pop(MISSING_ENV, None)
    pool = await asyncpg.create_pool(found.postgres_dsn, min_size=1, max_size=4, timeout=10)
    client = redis.asyncio.Redis.from_url(found.redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        await client.ping()
        yield ProbeClients(pool, client, found)
    finally:
        await client.aclose()
        await asyncio.wait_for(pool.close(), 10)


# -- the load generator -------------------------------------------------------------


class LoadgenError(RuntimeError):
    """The load generator failed or did not finish in time."""


async def run_loadgen(cfg: dict[str, Any], limit_s: float) -> dict[str, Any]:
    """Run ``python -m benchmarks.loadgen`` in a separate process; return its JSON result."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONDEVMODE", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.loadgen",
        json.dumps(cfg),
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise LoadgenError(f"load generator ({cfg['mode']}) did not finish within {limit_s} s") from None
    if proc.returncode != 0:
        raise LoadgenError(f"load generator ({cfg['mode']}) exited {proc.returncode}: {err.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out)
    return result


class LoopLag:
    """Measures how late this event loop runs a callback that asked to be run every ``interval_s``.

    The lag is what every coroutine in the process waits on top of its own work:
    under a storm it is what stretches a probe run past its deadline.
    """

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.worst_s = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self.worst_s = max(self.worst_s, loop.time() - due)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._watch())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


class LogEvents(logging.Handler):
    """Counts ws_diag's log records by their ``ws_diag_event`` field (``fallback``, ...)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counts: Counter[str] = Counter()
        self.took_ms: dict[str, list[float]] = {}  # diagnosis time ws_diag logged, by request path

    def emit(self, record: logging.LogRecord) -> None:
        event = str(getattr(record, "ws_diag_event", record.levelname))
        self.counts[event] += 1
        took = getattr(record, "took_ms", None)
        if event == "diagnosis" and isinstance(took, int | float):
            self.took_ms.setdefault(str(getattr(record, "path", "")), []).append(float(took))

    def __enter__(self) -> LogEvents:
        logging.getLogger("ws_diag").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("ws_diag").removeHandler(self)


# -- a shared machine -------------------------------------------------------------
#
# The numbers are only comparable if nothing else runs meanwhile. Before each
# round the benchmark waits (within a budget) until the machine is quiet, and
# rounds during which other processes used CPU anyway are measured again.

QUIET_CORES = 0.3
"""Busy CPU (in cores) of everything else above which a round counts as disturbed."""


def machine_busy() -> float | None:
    """CPU seconds all CPUs spent busy since boot (everything but idle and iowait), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


class QuietGate:
    """Waits until the machine is quiet, within a total budget of ``budget_s`` seconds."""

    def __init__(self, budget_s: float = 60.0, window_s: float = 0.5) -> None:
        self.budget_s = budget_s
        self.window_s = window_s
        self.waited_s = 0.0
        self.gave_up = 0

    async def wait(self) -> None:
        """Return when other processes use under ``QUIET_CORES`` (measured over a short window)."""
        while True:
            before = machine_busy()
            await asyncio.sleep(self.window_s)
            after = machine_busy()
            self.waited_s += self.window_s
            if before is None or after is None or (after - before) / self.window_s < QUIET_CORES:
                return
            if self.waited_s >= self.budget_s:
                self.gave_up += 1
                return

    def as_dict(self) -> dict[str, Any]:
        return {"waited_for_quiet_s": round(self.waited_s, 1), "gave_up_waiting": self.gave_up}


def cores(runs: list[dict[str, Any]], key: str) -> float | None:
    """The median over runs of a CPU reading (``server_cores``, ``loadgen_cores``, ``other_cores``)."""
    values = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(values), 3) if values else None


# -- the machine ------------------------------------------------------------------------

_PACKAGES = (
    "ws_diag",
    "hypercorn",
    "uvicorn",
    "websockets",
    "wsproto",
    "h11",
    "starlette",
    "sentry-sdk",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation-asgi",
    "asyncpg",
    "redis",
    "pydantic",
)


def machine() -> dict[str, Any]:
    """CPU, interpreter, OS and package versions."""
    info = environment()
    info["kernel"] = platform.release()
    with contextlib.suppress(OSError):
        mhz = [
            float(line.split(":", 1)[1])
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("cpu MHz")
        ]
        if mhz:
            info["cpu_mhz"] = round(max(mhz))
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    versions: dict[str, str] = {}
    for name in _PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    info["packages"] = versions
    with contextlib.suppress(Exception):
        pg = subprocess.run(
            [str(pg_bindir() / "postgres"), "--version"], capture_output=True, text=True, timeout=5, check=False
        )
        if pg.returncode == 0:
            info["postgresql"] = pg.stdout.strip()
    with contextlib.suppress(Exception):
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "ws_diag"], cwd=ROOT, capture_output=True, text=True, timeout=5
        )
        if head.returncode == 0:
            lines = dirty.stdout.splitlines()
            changed = [line[3:] for line in lines if not line.startswith("??")]
            untracked = [line[3:] for line in lines if line.startswith("??")]
            info["git"] = head.stdout.strip()
            if changed:
                info["git"] += f" + uncommitted changes in {', '.join(changed)}"
            if untracked:
                info["git"] += f" + untracked {', '.join(untracked)}"
    with contextlib.suppress(Exception):
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, timeout=5, check=False)
        if out.returncode == 0:
            info["redis_server"] = out.stdout.split()[2].removeprefix("v=")
    return info
