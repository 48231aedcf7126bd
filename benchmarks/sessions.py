"""Per-connection cost of the Prometheus listener, in-process: ws_diag with and without PrometheusMetrics.

A session is what a connection costs end to end without a socket: the scope,
connect, accept, one text message echoed, disconnect, the app returning. Four
variants wrap the same raw echo app: the bare app, ws_diag with default
settings, ws_diag with a listener that does nothing (the cost of raising the
lifecycle events at all), and ws_diag with
``listeners=[PrometheusMetrics(registry=...)]`` (its own registry; two counter
increments per session: ``opened`` and ``closed{outcome}``). Each round runs ``sessions`` sessions per variant back to
back, variants interleaved and their order reversed every other round; the
report gives the median over rounds of nanoseconds per session, and per round
the difference to and ratio with each variant before it.

The message path is untouched by listeners (the middleware's send wrapper does
not know them): section 1 (``message_path``) measures it.

Run: ``python -m benchmarks.sessions [--quick] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from ws_diag import DiagnosticsMiddleware, DiagSettings
from ws_diag._types import ASGIApp, Message
from ws_diag.bench import echo_app, environment, websocket_scope
from ws_diag.integrations.prometheus import PrometheusMetrics
from ws_diag.lifecycle import ConnectionListener

__all__ = ["SessionsConfig", "render", "run"]

_TEXT = '{"type":"ping"}'
NOOP = "ws_diag + no-op listener"
METRICS = "ws_diag + PrometheusMetrics"


@dataclass(frozen=True)
class SessionsConfig:
    sessions: int = 2_000
    rounds: int = 51

    @classmethod
    def quick(cls) -> SessionsConfig:
        return cls(sessions=50, rounds=3)


async def _sessions(app: ASGIApp, count: int) -> int:
    """Run ``count`` sessions one after another; return the elapsed nanoseconds."""
    started = time.perf_counter_ns()
    for _ in range(count):
        step = 0

        async def receive() -> Message:
            nonlocal step
            step += 1
            if step == 1:
                return {"type": "websocket.connect"}
            if step == 2:
                return {"type": "websocket.receive", "text": _TEXT}
            return {"type": "websocket.disconnect", "code": 1000}

        async def send(message: Message) -> None:
            return None

        await app(websocket_scope(), receive, send)
    return time.perf_counter_ns() - started


def variants() -> tuple[dict[str, ASGIApp], CollectorRegistry]:
    """The three apps, and the listener's registry (to check what it counted)."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry=registry)
    return {
        "bare": echo_app,
        "ws_diag": DiagnosticsMiddleware(echo_app, settings=DiagSettings()),
        NOOP: DiagnosticsMiddleware(echo_app, settings=DiagSettings(), listeners=[ConnectionListener()]),
        METRICS: DiagnosticsMiddleware(echo_app, settings=DiagSettings(), listeners=[metrics]),
    }, registry


async def run(cfg: SessionsConfig) -> dict[str, Any]:
    """Measure; returns the JSON-ready result."""
    apps, registry = variants()
    names = list(apps)
    for name in names:  # warm-up: imports, caches, first allocations
        await _sessions(apps[name], max(cfg.sessions // 10, 1))
    samples: dict[str, list[float]] = {name: [] for name in names}
    gc.collect()
    gc.disable()  # a collection inside one variant's window would be charged to it
    try:
        for round_ in range(cfg.rounds):
            order = names if round_ % 2 == 0 else names[::-1]
            for name in order:
                samples[name].append(await _sessions(apps[name], cfg.sessions) / cfg.sessions)
            gc.collect()
    finally:
        gc.enable()
    counted = registry.get_sample_value("ws_diag_sessions_closed_total", {"outcome": "normal"})
    result: dict[str, Any] = {
        "benchmark": "per-connection cost of PrometheusMetrics, in-process",
        "unit": "ns per session (scope, connect, accept, one echoed message, disconnect)",
        "sessions": cfg.sessions,
        "rounds": cfg.rounds,
        "counted_sessions": counted,
        "expected_counted": cfg.sessions * cfg.rounds + max(cfg.sessions // 10, 1),
        "variants": {},
        "environment": environment(),
    }
    for name in names:
        entry: dict[str, Any] = {"ns_per_session": round(statistics.median(samples[name]), 1)}
        for base in names[: names.index(name)]:
            added = [a - b for a, b in zip(samples[name], samples[base], strict=True)]
            ratio = [a / b for a, b in zip(samples[name], samples[base], strict=True)]
            entry[f"added_ns_vs_{base}"] = round(statistics.median(added), 1)
            entry[f"ratio_vs_{base}"] = round(statistics.median(ratio), 4)
        entry["samples_ns"] = [round(s, 1) for s in samples[name]]
        result["variants"][name] = entry
    return result


def render(result: dict[str, Any]) -> str:
    """A Markdown table."""
    lines = [
        f"{result['sessions']:,} sessions per variant and round, {result['rounds']} interleaved rounds; "
        "medians of rounds; added and ratio are medians of per-round differences and ratios.",
        "",
        "| variant | ns/session | added vs bare | ratio vs bare | added vs ws_diag | ratio vs ws_diag |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, v in result["variants"].items():

        def cell(key: str, fmt: str, entry: dict[str, Any] = v) -> str:
            return "-" if key not in entry else format(entry[key], fmt)

        lines.append(
            f"| {name} | {v['ns_per_session']:,.0f} | {cell('added_ns_vs_bare', '+,.0f')} "
            f"| {cell('ratio_vs_bare', '.3f')} | {cell('added_ns_vs_ws_diag', '+,.0f')} "
            f"| {cell('ratio_vs_ws_diag', '.3f')} |"
        )
    own = result["variants"][METRICS]
    lines += [
        "",
        f"PrometheusMetrics' own cost (against a no-op listener, same dispatch): "
        f"{own[f'added_ns_vs_{NOOP}']:+,.0f} ns per session, ratio {own[f'ratio_vs_{NOOP}']:.3f}. "
        f"Sessions the listener counted: {result['counted_sessions']:.0f} of {result['expected_counted']}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.sessions``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sessions", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: proves it runs, numbers meaningless")
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON ('-': only JSON, on stdout)")
    args = parser.parse_args(argv)
    cfg = SessionsConfig.quick() if args.quick else SessionsConfig()
    result = asyncio.run(run(cfg))
    result["config"] = asdict(cfg)
    if args.json == "-":  # the JSON on stdout, nothing else
        json.dump(result, sys.stdout, indent=2)
        return 0
    print(render(result))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
