"""Section 3: the connect path: full websocket handshakes per second, bare against wrapped.

Per server kind, three servers run side by side in this process: the bare
echo app, the same bare app again (A/A control) and ws_diag with probes
configured (a PostgreSQL pool and a Redis client). The load generator, a
separate process, runs ``concurrency`` workers against one server at a time,
each looping: TCP connect, upgrade, close handshake, end of the connection;
order reversed every other round, disturbed rounds run again. Probe
executions are counted by the probes themselves, by the checker, and by Redis
(PINGs it executed): all three must stay at zero while everything is healthy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ws_diag import DiagnosticsMiddleware, DiagSettings

from .common import SERVER_KINDS, ProbeClients, cores, echo_app, progress, run_loadgen, run_server
from .stats import MET, at_least, bootstrap_ci, median, paired_ratios

__all__ = ["ConnectConfig", "render", "run"]

GOAL_RATIO = 0.98
VARIANTS = ("bare", "bare again", "ws_diag")


@dataclass(frozen=True)
class ConnectConfig:
    kinds: tuple[str, ...] = SERVER_KINDS
    rounds: int = 11
    concurrency: int = 16
    warmup_s: float = 0.2
    duration_s: float = 1.0
    quiet_budget_s: float = 15.0

    @classmethod
    def quick(cls) -> ConnectConfig:
        return cls(
            kinds=("hypercorn", "uvicorn-wsproto"),
            rounds=1,
            concurrency=2,
            warmup_s=0.05,
            duration_s=0.2,
            quiet_budget_s=0.0,
        )


async def run(cfg: ConnectConfig, clients: ProbeClients) -> dict[str, Any]:
    """Measure every server kind; returns the JSON-ready result."""
    probes = clients.probes()
    wrapped = DiagnosticsMiddleware(echo_app, settings=DiagSettings(), probes=probes)
    pings_before = await clients.redis_pings()
    kinds: dict[str, Any] = {}
    for kind in cfg.kinds:
        progress(f"connect on {kind}")
        async with (
            run_server(echo_app, kind) as bare,
            run_server(echo_app, kind) as again,
            run_server(wrapped, kind) as diag,
        ):
            job = {
                "mode": "connect",
                "urls": {"bare": f"{bare}/ws", "bare again": f"{again}/ws", "ws_diag": f"{diag}/ws"},
                "rounds": cfg.rounds,
                "concurrency": cfg.concurrency,
                "warmup_s": cfg.warmup_s,
                "duration_s": cfg.duration_s,
                "server_pid": os.getpid(),
                "quiet_budget_s": cfg.quiet_budget_s,
            }
            limit = 2 * cfg.rounds * len(VARIANTS) * (cfg.warmup_s + cfg.duration_s + 11) + cfg.quiet_budget_s + 60
            outcome = await run_loadgen(job, limit)
        kinds[kind] = _summarise(outcome["runs"])
        kinds[kind]["discarded_rounds"] = outcome["discarded_rounds"]
        kinds[kind]["waited_for_quiet_s"] = outcome["waited_for_quiet_s"]
    probe_runs = {p.name: p.runs for p in probes}
    pings = await clients.redis_pings() - pings_before
    probe_io = sum(probe_runs.values()) + wrapped.checker.runs + pings
    return {
        "benchmark": "websocket handshakes through real servers",
        "concurrency": cfg.concurrency,
        "rounds": cfg.rounds,
        "warmup_s": cfg.warmup_s,
        "duration_s": cfg.duration_s,
        "kinds": kinds,
        "probe_runs": probe_runs,
        "checker_runs": wrapped.checker.runs,
        "redis_pings": pings,
        "goal": {
            "text": f"wrapped/bare handshakes per second >= {GOAL_RATIO}; zero probe I/O while healthy",
            "met": probe_io == 0 and all(k["goal_met"] for k in kinds.values()),
            "probe_io": probe_io,
        },
    }


def _summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, items in runs.items():
        out[name] = {
            "rate": median(r["rate"] for r in items),
            "rate_samples": [r["rate"] for r in items],
            "handshake_p50_us": median(r["handshake_us"]["p50"] for r in items),
            "handshake_p99_us": median(r["handshake_us"]["p99"] for r in items),
            "errors": sum(sum(r["errors"].values()) for r in items),
            "server_cores": cores(items, "server_cores"),
            "loadgen_cores": cores(items, "loadgen_cores"),
            "other_cores": cores(items, "other_cores"),
        }
    for label, name in (("", "ws_diag"), ("aa_", "bare again")):
        ratios = paired_ratios(out[name]["rate_samples"], out["bare"]["rate_samples"])
        out[f"{label}ratio"] = None if not ratios else round(median(ratios) or 0.0, 4)
        out[f"{label}ratio_ci"] = bootstrap_ci(ratios)
    out["verdict"] = at_least(out["ratio"], out["ratio_ci"], GOAL_RATIO)
    out["goal_met"] = out["verdict"] == MET
    return out


def render(result: dict[str, Any]) -> str:
    """Markdown table."""
    lines = [
        f"{result['concurrency']} concurrent workers, each looping connect / upgrade / close handshake / "
        f"end of TCP; windows of {result['duration_s']} s after {result['warmup_s']} s warm-up, one server at a "
        f"time, {result['rounds']} interleaved rounds per server kind. Medians of rounds; ratios are medians of "
        "per-round ratios to `bare` with 95 % bootstrap intervals; `bare again` is the A/A control.",
        "",
        "| server | bare handshakes/s | ws_diag handshakes/s | ratio [95 % CI] | A/A ratio [95 % CI] "
        "| bare p50 / p99 upgrade ms | ws_diag p50 / p99 upgrade ms | CPU server / loadgen / other | errors | goal |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for kind, k in result["kinds"].items():
        bare, wrapped = k["bare"], k["ws_diag"]
        cpu = f"{_c(wrapped['server_cores'])} / {_c(wrapped['loadgen_cores'])} / {_c(wrapped['other_cores'])}"
        errors = sum(k[n]["errors"] for n in VARIANTS)
        lines.append(
            f"| {kind} | {_n(bare['rate'])} | {_n(wrapped['rate'])} | {_f(k['ratio'])} {_ci(k['ratio_ci'])} "
            f"| {_f(k['aa_ratio'])} {_ci(k['aa_ratio_ci'])} "
            f"| {_ms(bare['handshake_p50_us'])} / {_ms(bare['handshake_p99_us'])} "
            f"| {_ms(wrapped['handshake_p50_us'])} / {_ms(wrapped['handshake_p99_us'])} | {cpu} "
            f"| {errors} | {k['verdict']} |"
        )
    goal = result["goal"]
    discarded = {kind: k["discarded_rounds"] for kind, k in result["kinds"].items() if k.get("discarded_rounds")}
    lines += [
        "",
        f"Probe I/O while healthy: probe executions {result['probe_runs']}, checker runs {result['checker_runs']}, "
        f"PINGs executed by Redis {result['redis_pings']}: **{'zero' if goal['probe_io'] == 0 else 'NOT zero'}**. "
        f"Rounds thrown away because other processes used CPU: {discarded or 'none'}.",
    ]
    return "\n".join(lines)


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _ci(value: list[float] | None) -> str:
    return "" if not value else f"[{value[0]:.3f}, {value[1]:.3f}]"


def _c(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value / 1000:.2f}"
