"""Section 5: a failure storm: N sessions failing within one cache TTL window, on a real server.

The load generator (a separate process) opens ``sessions`` websocket sessions,
then writes ``"fail"`` to all of them at once; every app instance raises a
generic exception. Variants, interleaved per round with a fresh middleware
(cold cache) each round:

* ``bare``: no ws_diag, for reference;
* ``database down``: ws_diag, PostgreSQL probed at a port where nothing
  listens (connection refused), Redis healthy through a client;
* ``database black-holed``: ws_diag, PostgreSQL probed at a listener that
  never answers, bounded by ``probe_timeout``;
* ``database down, cache warm``: as ``database down``, but the probes ran once
  just before the storm (what ``refresh_interval`` does), finding the database
  down: the storm itself runs none;
* ``database stops after a healthy check``: the probes ran once just before
  the storm and found everything up (a ``/health`` request or a refresh), then
  PostgreSQL stopped (the probe switches to a port where nothing listens): the
  healthy report predates the failures, so the storm runs the probes once
  (counted from the storm on) and names the database;
* ``all healthy, cache warm``: nothing is down, the app fails by itself (4005
  is wrong here: Generic 1011 expected); a healthy report cached just before
  cannot clear failures seen after it, so failure-path runs follow each other,
  one at a time, each joined by every failure seen while it runs (counted from
  the storm on; no per-storm run goal).

Goals: each probe runs once per storm (single flight, then the cache), no
session gets a wrong code (4005 expected, 1011 for ``all healthy``), and the
p99 time to close.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ws_diag import DiagnosticsMiddleware, DiagSettings
from ws_diag.health.probes import PostgresProbe, Probe
from ws_diag.health.probes.base import ProbeDetails

from .common import (
    SERVER_KINDS,
    CountingProbe,
    LogEvents,
    LoopLag,
    ProbeClients,
    QuietGate,
    SwitchApp,
    failing_app,
    free_port,
    progress,
    run_loadgen,
    run_server,
)
from .stats import median

__all__ = ["StormConfig", "render", "run"]

EXPECTED_CODE = 4005
HEALTHY = "all healthy, cache warm"
STOPS = "database stops after a healthy check"
_EXPECTED = {HEALTHY: 1011}
_FROM_THE_STORM_ON = (HEALTHY, STOPS)  # probe executions before the storm are not counted


class _Outage:
    """A probe that answers as ``healthy`` until ``down`` is set, then as ``failing``."""

    def __init__(self, healthy: Probe, failing: Probe) -> None:
        self.healthy, self.failing = healthy, failing
        self.name, self.component, self.required = healthy.name, healthy.component, healthy.required
        self.down = False

    async def check(self) -> ProbeDetails:
        return await (self.failing if self.down else self.healthy).check()


@dataclass(frozen=True)
class StormConfig:
    kinds: tuple[str, ...] = SERVER_KINDS
    sessions: int = 1000
    rounds: int = 7
    cache_ttl: float = 30.0
    probe_timeout: float = 0.25
    quiet_budget_s: float = 60.0

    @classmethod
    def quick(cls) -> StormConfig:
        return cls(kinds=("uvicorn-websockets",), sessions=20, rounds=1, probe_timeout=0.1, quiet_budget_s=0.0)


def _generic() -> BaseException:
    return RuntimeError("session factory failed")


async def run(cfg: StormConfig, clients: ProbeClients) -> dict[str, Any]:
    """Run the storms; returns the JSON-ready result."""
    services = clients.services
    refused_dsn = f"postgresql://wsdiag:pw@127.0.0.1:{free_port()}/postgres"  # nothing listens there

    def ws_diag(dsn: str, *, warm: bool = False) -> Callable[[], Awaitable[tuple[Any, list[CountingProbe]]]]:
        async def build() -> tuple[Any, list[CountingProbe]]:
            probes = [CountingProbe(PostgresProbe(dsn, timeout=cfg.probe_timeout)), clients.probes()[1]]
            settings = DiagSettings(probe_timeout=cfg.probe_timeout, cache_ttl=cfg.cache_ttl)
            middleware = DiagnosticsMiddleware(failing_app(_generic), settings=settings, probes=probes)
            if warm:  # what a refresh_interval would have done before the storm
                await middleware.checker.check()
            return middleware, probes

        return build

    async def bare() -> tuple[Any, list[CountingProbe]]:
        return failing_app(_generic), []

    def settings() -> DiagSettings:
        return DiagSettings(probe_timeout=cfg.probe_timeout, cache_ttl=cfg.cache_ttl)

    async def stops() -> tuple[Any, list[CountingProbe]]:
        outage = _Outage(
            PostgresProbe(services.postgres_dsn, timeout=cfg.probe_timeout),
            PostgresProbe(refused_dsn, timeout=cfg.probe_timeout),
        )
        probes = [CountingProbe(outage), clients.probes()[1]]
        middleware = DiagnosticsMiddleware(failing_app(_generic), settings=settings(), probes=probes)
        await middleware.checker.check()  # everything up: a healthy report is cached
        outage.down = True
        return middleware, _reset(probes)

    async def healthy() -> tuple[Any, list[CountingProbe]]:
        probes = clients.probes()
        middleware = DiagnosticsMiddleware(failing_app(_generic), settings=settings(), probes=probes)
        await middleware.checker.check()
        return middleware, _reset(probes)

    variants: dict[str, Callable[[], Awaitable[tuple[Any, list[CountingProbe]]]]] = {
        "bare": bare,
        "database down": ws_diag(refused_dsn),
        "database black-holed": ws_diag(services.silent.postgres_dsn),
        "database down, cache warm": ws_diag(refused_dsn, warm=True),
        STOPS: stops,
        HEALTHY: healthy,
    }
    kinds: dict[str, Any] = {}
    gate = QuietGate(cfg.quiet_budget_s)
    for kind in cfg.kinds:
        progress(f"storm on {kind}")
        switches = {name: SwitchApp() for name in variants}
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
        async with contextlib.AsyncExitStack() as stack:
            urls = {name: await stack.enter_async_context(run_server(switches[name], kind)) for name in variants}
            names = list(variants)
            for round_index in range(cfg.rounds):
                for name in names if round_index % 2 == 0 else reversed(names):
                    app, probes = await variants[name]()
                    switches[name].app = app
                    job = {"mode": "storm", "url": f"{urls[name]}/ws", "sessions": cfg.sessions, "timeout_s": 30.0}
                    await gate.wait()
                    with LoopLag() as lag, LogEvents() as events:
                        outcome = await run_loadgen(job, 120.0)
                    outcome["loop_lag_ms"] = round(lag.worst_s * 1000, 1)
                    outcome["fallbacks"] = events.counts.get("fallback", 0)
                    if isinstance(app, DiagnosticsMiddleware):
                        outcome["checker_runs"] = app.checker.runs - (1 if name in _FROM_THE_STORM_ON else 0)
                        await app.checker.aclose()
                    outcome["probe_runs"] = {p.name: p.runs for p in probes}
                    rounds[name].append(outcome)
        kinds[kind] = {name: _summarise(name, items) for name, items in rounds.items()}
    met = all(v["goal_met"] for k in kinds.values() for n, v in k.items() if n != "bare")
    return {
        "benchmark": "failure storm",
        "sessions": cfg.sessions,
        "rounds": cfg.rounds,
        "cache_ttl_s": cfg.cache_ttl,
        "probe_timeout_s": cfg.probe_timeout,
        "expected_code": EXPECTED_CODE,
        "expected_codes": _EXPECTED,
        "kinds": kinds,
        "quiet": gate.as_dict(),
        "goal": {"text": f"1 execution per probe per storm (but {HEALTHY!r}), 0 wrong codes", "met": met},
    }


def _summarise(name: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    errors = [i["error"] for i in items if "error" in i]
    good = [i for i in items if "error" not in i]
    wrong = 0
    if name != "bare":
        expected = str(_EXPECTED.get(name, EXPECTED_CODE))
        wrong = sum(i["sessions"] - i["codes"].get(expected, 0) for i in good)
        wrong += sum(1 for _ in errors)
    probe_runs: dict[str, list[int]] = {}
    for item in good:
        for probe, count in item.get("probe_runs", {}).items():
            probe_runs.setdefault(probe, []).append(count)
    codes: Counter[str] = Counter()
    frame_codes: Counter[str] = Counter()
    for item in good:
        codes.update(item["codes"])
        frame_codes.update(item["frame_codes"])
    max_runs = max((max(v) for v in probe_runs.values()), default=0)
    return {
        "storms": len(items),
        "errors": errors[:3],
        "codes": dict(codes),
        "frame_codes": dict(frame_codes),
        "wrong_codes": wrong,
        "fallbacks": sum(i.get("fallbacks", 0) for i in good),
        "loop_lag_ms": median(i.get("loop_lag_ms") for i in good),
        "missing": sum(i["missing"] for i in good),
        "probe_runs_per_storm": probe_runs,
        "checker_runs_per_storm": [i.get("checker_runs") for i in good],
        "p50_ms": median(i["fail_to_close_ms"]["p50"] for i in good),
        "p99_ms": median(i["fail_to_close_ms"]["p99"] for i in good),
        "max_ms": median(i["fail_to_close_ms"]["max"] for i in good),
        "trigger_p99_ms": median(i["trigger_to_close_ms"]["p99"] for i in good),
        "connect_s": median(i["connect_s"] for i in good),
        "goal_met": name == "bare" or (wrong == 0 and not errors and (max_runs == 1 or name == HEALTHY) and bool(good)),
    }


def render(result: dict[str, Any]) -> str:
    """Markdown table."""
    lines = [
        f"{result['sessions']:,} sessions opened, then all told to fail at once; {result['rounds']} storms per "
        f"variant, interleaved, each with a fresh middleware (cold cache, cache_ttl {result['cache_ttl_s']:.0f} s, "
        f"probe_timeout {result['probe_timeout_s'] * 1000:.0f} ms). Time to close = app's failure to the close frame "
        'at the client (median over storms of each storm\'s percentile); "from trigger" = from the moment the '
        'load generator wrote the last "fail".',
        "",
        "| server | variant | probe executions per storm | wrong codes | codes seen (frames) | p50 / p99 / max ms "
        "to close | p99 ms from trigger | event-loop lag ms | goal |",
        "|---|---|---|---:|---|---:|---:|---:|---|",
    ]
    for kind, variants in result["kinds"].items():
        for name, v in variants.items():
            runs = "; ".join(f"{p}: {', '.join(map(str, counts))}" for p, counts in v["probe_runs_per_storm"].items())
            if runs and "cache warm" in name and name not in _FROM_THE_STORM_ON:
                runs += " (before the storm)"
            codes = ", ".join(f"{c}: {n:,}" for c, n in v["codes"].items())
            frames = ", ".join(f"{c}: {n:,}" for c, n in v.get("frame_codes", {}).items() if c != "None")
            codes += f" ({frames or 'no frames'})"
            goal = "-" if name == "bare" else ("met" if v["goal_met"] else "NOT met")
            lines.append(
                f"| {kind} | {name} | {runs or '-'} | {v['wrong_codes'] if name != 'bare' else '-'} | {codes} "
                f"| {_ms(v['p50_ms'])} / {_ms(v['p99_ms'])} / {_ms(v['max_ms'])} | {_ms(v['trigger_p99_ms'])} "
                f"| {_ms(v.get('loop_lag_ms'))} | {goal} |"
            )
    fallbacks = {
        f"{kind} / {name}": v["fallbacks"]
        for kind, variants in result["kinds"].items()
        for name, v in variants.items()
        if v.get("fallbacks")
    }
    if fallbacks:
        lines += [
            "",
            "Sessions closed with a plain 1011 and no frame because ws_diag's own deadline "
            f"(probe_timeout + 50 ms) fired before the shared probe run reached them: {fallbacks}.",
        ]
    return "\n".join(lines)


def _reset(probes: list[CountingProbe]) -> list[CountingProbe]:
    for probe in probes:
        probe.runs = 0
    return probes


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
