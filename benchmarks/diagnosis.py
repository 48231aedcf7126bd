"""Section 4: diagnosis latency, from the app's failure to the client's close frame.

The app echoes until told ``"fail"``, then sends ``"fail <monotonic_ns>"`` and
raises; the load generator (a separate process, same monotonic clock) notes
when the close frame arrives. Scenarios, served side by side and visited
round-robin one session at a time:

* ``bare``: no ws_diag, for reference (hypercorn closes with 1011; uvicorn
  drops the connection, 1006, and the time is to the end of the connection);
* ``classified``: the app raises ``WebSocketComponentError.database_failure``:
  no probe is consulted;
* ``cached``: a generic exception, probes (PostgreSQL pool, Redis client, an
  environment variable that is missing) answered from the cache (a failing
  report, which the failure path may reuse while it is fresh);
* ``healthy, cache warm``: a generic exception, every probe healthy and a
  healthy report cached just before: it predates the failure, so each failure
  runs the probes (through the pool) rather than trusting it; the answer is
  Generic 1011 (before the failure-path fix: answered from that cache, no probe run);
* ``cold, pool``: the same probes with ``cache_ttl=0``: every failure runs them
  against the real PostgreSQL (through the app's pool) and Redis;
* ``cold, fresh connections``: ``PostgresProbe(dsn)`` and ``RedisProbe(url)``,
  a new connection per check (scram authentication included);
* ``black-holed``: PostgreSQL is a listener that accepts and never answers;
  ``probe_timeout`` D bounds the diagnosis.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ws_diag import DiagnosticsMiddleware, DiagSettings, WebSocketComponentError
from ws_diag._types import ASGIApp
from ws_diag.health.probes import EnvProbe, PostgresProbe, RedisProbe

from .common import (
    MISSING_ENV,
    SERVER_KINDS,
    CountingProbe,
    LogEvents,
    ProbeClients,
    QuietGate,
    failing_app,
    progress,
    run_loadgen,
    run_server,
)
from .stats import summary

__all__ = ["DiagnosisConfig", "render", "run"]

GOAL_CACHED_P99_MS = 1.0
GOAL_COLD_POOL_P99_MS = 5.0
GOAL_BLACKHOLE_SLACK_MS = 50.0


@dataclass(frozen=True)
class DiagnosisConfig:
    kinds: tuple[str, ...] = SERVER_KINDS
    sessions: int = 200
    blackholed_sessions: int = 20
    probe_timeout: float = 0.25
    quiet_budget_s: float = 30.0

    @classmethod
    def quick(cls) -> DiagnosisConfig:
        return cls(kinds=("hypercorn",), sessions=3, blackholed_sessions=1, probe_timeout=0.1, quiet_budget_s=0.0)


def _generic() -> BaseException:
    return RuntimeError("session factory failed")


def _database() -> BaseException:
    return WebSocketComponentError.database_failure("Database session factory unavailable")


@dataclass
class _Scenario:
    name: str
    app: ASGIApp
    sessions: int
    expected: int | None  # the close code ws_diag must deliver (None: no expectation)
    probes: list[CountingProbe]
    middleware: DiagnosticsMiddleware | None = None


def _scenarios(cfg: DiagnosisConfig, clients: ProbeClients) -> list[_Scenario]:
    services = clients.services
    d = cfg.probe_timeout

    def wrap(
        name: str, probes: list[CountingProbe], expected: int, cache_ttl: float, error: Callable[[], Any]
    ) -> _Scenario:
        settings = DiagSettings(probe_timeout=d, cache_ttl=cache_ttl)
        middleware = DiagnosticsMiddleware(failing_app(error), settings=settings, probes=probes)
        sessions = cfg.blackholed_sessions if name == "black-holed" else cfg.sessions
        return _Scenario(name, middleware, sessions, expected, probes, middleware)

    def missing_env() -> CountingProbe:
        return CountingProbe(EnvProbe([MISSING_ENV]))

    return [
        _Scenario("bare", failing_app(_generic), cfg.sessions, None, []),
        wrap("classified", [], 4005, 2.0, _database),
        wrap("cached", [*clients.probes(), missing_env()], 4006, 3600.0, _generic),
        wrap("healthy, cache warm", clients.probes(), 1011, 3600.0, _generic),
        wrap("cold, pool", [*clients.probes(), missing_env()], 4006, 0.0, _generic),
        wrap(
            "cold, fresh connections",
            [
                CountingProbe(PostgresProbe(services.postgres_dsn, timeout=d)),
                CountingProbe(RedisProbe(services.redis_url, timeout=d)),
                missing_env(),
            ],
            4006,
            0.0,
            _generic,
        ),
        wrap(
            "black-holed",
            [CountingProbe(PostgresProbe(services.silent.postgres_dsn, timeout=d)), clients.probes()[1]],
            4005,
            0.0,
            _generic,
        ),
    ]


async def run(cfg: DiagnosisConfig, clients: ProbeClients) -> dict[str, Any]:
    """Measure every scenario on every server kind; returns the JSON-ready result."""
    kinds: dict[str, Any] = {}
    gate = QuietGate(cfg.quiet_budget_s)
    for kind in cfg.kinds:
        progress(f"diagnosis on {kind}")
        scenarios = _scenarios(cfg, clients)
        warm_runs: dict[str, dict[str, int]] = {}
        for warm in (s for s in scenarios if s.name in _WARM):
            assert warm.middleware is not None
            await warm.middleware.checker.check()  # warm the cache
            warm_runs[warm.name] = {p.name: p.runs for p in warm.probes}
        urls: list[str] = []
        async with contextlib.AsyncExitStack() as stack:
            for scenario in scenarios:
                urls.append(await stack.enter_async_context(run_server(scenario.app, kind)))
            plan = [[f"{url}{_path(s.name)}", s.sessions] for url, s in zip(urls, scenarios, strict=True)]
            await gate.wait()
            limit = sum(s.sessions for s in scenarios) * 2.0 + cfg.blackholed_sessions * cfg.probe_timeout + 60
            with LogEvents() as events:
                result = await run_loadgen({"mode": "fail", "plan": plan, "timeout_s": 10.0}, limit)
        kinds[kind] = {
            s.name: _summarise(s, outcomes, warm_runs.get(s.name))
            for s, outcomes in zip(scenarios, result["results"], strict=True)
        }
        for s in scenarios:
            kinds[kind][s.name]["ws_diag_ms"] = summary(events.took_ms.get(_path(s.name), []), 1.0, 3)
        for scenario in scenarios:
            if scenario.middleware is not None:
                await scenario.middleware.checker.aclose()
    goals = _goals(kinds, cfg.probe_timeout)
    return {
        "benchmark": "failure to close frame",
        "sessions": cfg.sessions,
        "blackholed_sessions": cfg.blackholed_sessions,
        "probe_timeout_s": cfg.probe_timeout,
        "kinds": kinds,
        "quiet": gate.as_dict(),
        "goals": goals,
        "goal": {"met": all(g["met"] for g in goals.values())},
    }


_WARM = ("cached", "healthy, cache warm")  # scenarios whose cache is warmed before the sessions


def _path(name: str) -> str:
    return "/ws/" + name.replace(", ", "-").replace(" ", "-")


def _summarise(scenario: _Scenario, outcomes: list[dict[str, Any]], warm: dict[str, int] | None) -> dict[str, Any]:
    good = [o for o in outcomes if "error" not in o]
    latencies = [o["fail_to_close_ns"] for o in good if o.get("fail_to_close_ns") is not None]
    codes = Counter(str(o.get("code")) for o in good)
    wrong = 0
    if scenario.expected is not None:
        wrong = sum(1 for o in good if o.get("code") != scenario.expected) + (len(outcomes) - len(good))
    runs = {p.name: p.runs - (warm or {}).get(p.name, 0) for p in scenario.probes}
    return {
        "sessions": len(outcomes),
        "errors": [o["error"] for o in outcomes if "error" in o][:5],
        "expected_code": scenario.expected,
        "codes": dict(codes),
        "wrong_codes": wrong,
        "latency_ms": summary(latencies, 1e6, 3),
        "probe_runs": runs,
    }


def _goals(kinds: dict[str, Any], probe_timeout: float) -> dict[str, Any]:
    def worst(name: str, stat: str) -> float | None:
        values = [k[name]["latency_ms"][stat] for k in kinds.values() if k[name]["latency_ms"][stat] is not None]
        return max(values) if values else None

    def no_wrong(name: str) -> bool:
        return all(k[name]["wrong_codes"] == 0 for k in kinds.values())

    cached = worst("cached", "p99")
    cold = worst("cold, pool", "p99")
    hole = worst("black-holed", "max")
    bound = probe_timeout * 1000 + GOAL_BLACKHOLE_SLACK_MS
    return {
        "cached": {
            "text": f"cached p99 < {GOAL_CACHED_P99_MS} ms",
            "worst_p99_ms": cached,
            "met": cached is not None and cached < GOAL_CACHED_P99_MS and no_wrong("cached"),
        },
        "cold_pool": {
            "text": f"cold check with a pool: p99 < {GOAL_COLD_POOL_P99_MS} ms",
            "worst_p99_ms": cold,
            "met": cold is not None and cold < GOAL_COLD_POOL_P99_MS and no_wrong("cold, pool"),
        },
        "black_holed": {
            "text": f"black-holed dependency: every close within D + {GOAL_BLACKHOLE_SLACK_MS:.0f} ms = {bound:.0f} ms",
            "worst_max_ms": hole,
            "met": hole is not None and hole <= bound and no_wrong("black-holed"),
        },
    }


def render(result: dict[str, Any]) -> str:
    """Markdown table."""
    lines = [
        f"Sequential sessions, round-robin over the scenarios: {result['sessions']} per scenario "
        f"({result['blackholed_sessions']} black-holed), probe_timeout D = {result['probe_timeout_s'] * 1000:.0f} ms. "
        "Latency = app's failure (timestamp sent by the app just before it raises) to the close frame at the client; "
        "ws_diag's own part = the `took_ms` of its `diagnosis:` log record (from catching the failure to frame "
        "and close ready to send); the rest is the server and the network stack.",
        "",
        "| server | scenario | expected code | codes seen | p50 ms | p99 ms | max ms "
        "| ws_diag's own part p50 / p99 ms | probe runs |",
        "|---|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for kind, scenarios in result["kinds"].items():
        for name, s in scenarios.items():
            lat = s["latency_ms"]
            codes = ", ".join(f"{c}: {n}" for c, n in s["codes"].items())
            runs = ", ".join(f"{p} {n}" for p, n in s["probe_runs"].items()) or "-"
            lines.append(
                f"| {kind} | {name} | {s['expected_code'] or '-'} | {codes} | {_ms(lat['p50'])} "
                f"| {_ms(lat['p99'])} | {_ms(lat['max'])} | {_own(s.get('ws_diag_ms'))} | {runs} |"
            )
    lines.append("")
    for goal in result["goals"].values():
        value = goal.get("worst_p99_ms", goal.get("worst_max_ms"))
        lines.append(f"- {goal['text']}: worst {_ms(value)} ms: **{'met' if goal['met'] else 'NOT met'}**")
    return "\n".join(lines)


def _own(took: dict[str, Any] | None) -> str:
    if not took or not took.get("n"):
        return "-"
    return f"{_ms(took['p50'])} / {_ms(took['p99'])}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
