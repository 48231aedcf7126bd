"""Section 2: the message path through real servers: echo throughput and round-trip latency.

Per server kind, three servers run side by side in this process: the bare
echo app, the same bare app again (an A/A control: what "no difference"
looks like on this machine), and the app wrapped by ws_diag with probes
configured (a PostgreSQL pool and a Redis client, counted). The load
generator, a separate process, keeps ``clients`` connections open to each and
runs closed-loop windows against one server at a time, A A' B ..., order
reversed every other round, for ``rounds`` rounds (rounds disturbed by other
processes are thrown away and run again). Reported: medians over rounds of
throughput and p50/p99 round-trip latency, medians of the per-round ratios
with 95 % bootstrap intervals, the CPU each side used (the server saturating
one core while the load generator does not is what makes the throughput the
server's), and probe executions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ws_diag import DiagnosticsMiddleware, DiagSettings

from .common import SERVER_KINDS, ProbeClients, cores, echo_app, progress, run_loadgen, run_server
from .stats import MET, at_least, at_most, bootstrap_ci, median, paired_ratios, worst

__all__ = ["ServerPathConfig", "render", "run"]

GOAL_THROUGHPUT_RATIO = 0.99
GOAL_P99_RATIO = 1.05
VARIANTS = ("bare", "bare again", "ws_diag")


@dataclass(frozen=True)
class ServerPathConfig:
    kinds: tuple[str, ...] = SERVER_KINDS
    rounds: int = 11
    clients: int = 64
    warmup_s: float = 0.25
    duration_s: float = 1.0
    quiet_budget_s: float = 15.0
    text: str = '{"type":"chat","body":"hello, websocket"}'

    @classmethod
    def quick(cls) -> ServerPathConfig:
        return cls(
            kinds=("hypercorn", "uvicorn-websockets"),
            rounds=1,
            clients=4,
            warmup_s=0.05,
            duration_s=0.2,
            quiet_budget_s=0.0,
        )


async def run(cfg: ServerPathConfig, clients: ProbeClients) -> dict[str, Any]:
    """Measure every server kind; returns the JSON-ready result."""
    probes = clients.probes()
    wrapped = DiagnosticsMiddleware(echo_app, settings=DiagSettings(), probes=probes)
    pings_before = await clients.redis_pings()
    kinds: dict[str, Any] = {}
    for kind in cfg.kinds:
        progress(f"server: echo on {kind}")
        async with (
            run_server(echo_app, kind) as bare,
            run_server(echo_app, kind) as again,
            run_server(wrapped, kind) as diag,
        ):
            job = {
                "mode": "echo",
                "urls": {"bare": f"{bare}/ws", "bare again": f"{again}/ws", "ws_diag": f"{diag}/ws"},
                "rounds": cfg.rounds,
                "clients": cfg.clients,
                "warmup_s": cfg.warmup_s,
                "duration_s": cfg.duration_s,
                "text": cfg.text,
                "server_pid": os.getpid(),
                "quiet_budget_s": cfg.quiet_budget_s,
            }
            limit = 2 * cfg.rounds * len(VARIANTS) * (cfg.warmup_s + cfg.duration_s + 1) + cfg.quiet_budget_s + 60
            outcome = await run_loadgen(job, limit)
        kinds[kind] = _summarise(outcome["runs"])
        kinds[kind]["discarded_rounds"] = outcome["discarded_rounds"]
        kinds[kind]["waited_for_quiet_s"] = outcome["waited_for_quiet_s"]
    pings = await clients.redis_pings() - pings_before
    probe_runs = {p.name: p.runs for p in probes}
    return {
        "benchmark": "echo through real servers",
        "clients": cfg.clients,
        "rounds": cfg.rounds,
        "warmup_s": cfg.warmup_s,
        "duration_s": cfg.duration_s,
        "message_bytes": len(cfg.text.encode()),
        "kinds": kinds,
        "probe_runs": probe_runs,
        "checker_runs": wrapped.checker.runs,
        "redis_pings": pings,
        "goal": {
            "text": f"wrapped/bare throughput >= {GOAL_THROUGHPUT_RATIO} and p99 ratio <= {GOAL_P99_RATIO}",
            "met": all(k["goal_met"] for k in kinds.values()),
        },
    }


def _summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    def series(name: str, key: str, sub: str | None = None) -> list[float | None]:
        return [(r[key][sub] if sub else r[key]) for r in runs[name]]

    out: dict[str, Any] = {}
    for name in runs:
        out[name] = {
            "throughput": median(series(name, "throughput")),
            "p50_us": median(series(name, "latency_us", "p50")),
            "p99_us": median(series(name, "latency_us", "p99")),
            "throughput_samples": series(name, "throughput"),
            "p99_us_samples": series(name, "latency_us", "p99"),
            "server_cores": cores(runs[name], "server_cores"),
            "loadgen_cores": cores(runs[name], "loadgen_cores"),
            "other_cores": cores(runs[name], "other_cores"),
            "wrong_replies": sum(r["wrong_replies"] for r in runs[name]),
            "stalled_clients": sum(r["stalled_clients"] for r in runs[name]),
        }
    for label, name in (("", "ws_diag"), ("aa_", "bare again")):
        throughput = paired_ratios(series(name, "throughput"), series("bare", "throughput"))
        p99 = paired_ratios(series(name, "latency_us", "p99"), series("bare", "latency_us", "p99"))
        out[f"{label}throughput_ratio"] = _r(median(throughput))
        out[f"{label}throughput_ci"] = bootstrap_ci(throughput)
        out[f"{label}p99_ratio"] = _r(median(p99))
        out[f"{label}p99_ci"] = bootstrap_ci(p99)
    servers = [out[n]["server_cores"] for n in VARIANTS if out[n]["server_cores"] is not None]
    loadgens = [out[n]["loadgen_cores"] for n in VARIANTS if out[n]["loadgen_cores"] is not None]
    out["server_bound"] = bool(servers and loadgens and min(servers) >= 0.9 and max(loadgens) < min(servers))
    out["verdict"] = worst(
        at_least(out["throughput_ratio"], out["throughput_ci"], GOAL_THROUGHPUT_RATIO),
        at_most(out["p99_ratio"], out["p99_ci"], GOAL_P99_RATIO),
    )
    out["goal_met"] = out["verdict"] == MET
    return out


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def render(result: dict[str, Any]) -> str:
    """Markdown table."""
    lines = [
        f"{result['clients']} connections per server, closed loop (send, wait for the echo, send again), "
        f"{result['message_bytes']}-byte text messages; windows of {result['duration_s']} s after "
        f"{result['warmup_s']} s warm-up, one server at a time, {result['rounds']} interleaved rounds per server kind. "
        "Medians of rounds; ratios are medians of per-round ratios to `bare`, with 95 % bootstrap intervals. "
        "`bare again` is a second, identical bare server: its ratios show how far apart two identical "
        "servers land on this machine.",
        "",
        "| server | bare msg/s | ws_diag msg/s | throughput ratio [95 % CI] | A/A ratio [95 % CI] "
        "| bare p50 / p99 ms | ws_diag p50 / p99 ms | p99 ratio [95 % CI] | A/A p99 ratio "
        "| CPU server / loadgen / other | goal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for kind, k in result["kinds"].items():
        bare, wrapped = k["bare"], k["ws_diag"]
        cpu = f"{_c(wrapped['server_cores'])} / {_c(wrapped['loadgen_cores'])} / {_c(wrapped['other_cores'])}"
        lines.append(
            f"| {kind} | {_n(bare['throughput'])} | {_n(wrapped['throughput'])} "
            f"| {_f(k['throughput_ratio'])} {_ci(k['throughput_ci'])} | {_f(k['aa_throughput_ratio'])} "
            f"{_ci(k['aa_throughput_ci'])} | {_ms(bare['p50_us'])} / {_ms(bare['p99_us'])} "
            f"| {_ms(wrapped['p50_us'])} / {_ms(wrapped['p99_us'])} | {_f(k['p99_ratio'])} {_ci(k['p99_ci'])} "
            f"| {_f(k['aa_p99_ratio'])} | {cpu} | {k['verdict']} |"
        )
    discarded = {kind: k["discarded_rounds"] for kind, k in result["kinds"].items() if k.get("discarded_rounds")}
    lines += [
        "",
        f"Probe executions during the runs: {result['probe_runs']} (checker runs: {result['checker_runs']}, "
        f"PINGs seen by Redis: {result['redis_pings']}). Rounds thrown away because other processes used CPU: "
        f"{discarded or 'none'}.",
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
