"""Section 6: memory: bytes per open connection added by ws_diag, growth over many sessions, tasks.

In-process, in-memory (no sockets: what is measured is the ASGI side only):

* ``connections`` sessions are opened at once (connected and accepted, each app
  parked in ``receive``) under ``tracemalloc``, bare and wrapped, interleaved
  for ``rounds`` rounds; bytes per connection = (wrapped - bare) / connections.
* ``cycles`` connect / echo / close sessions run one after another through a
  wrapped app (after a warm-up), then as many failing sessions (the app raises,
  ws_diag probes with ``cache_ttl=0``, sends frame and close); traced memory
  before and after, after a full collection: the growth per session.
* ``len(asyncio.all_tasks())`` before, with the connections open, and after.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ws_diag
from ws_diag import DiagnosticsMiddleware, DiagSettings
from ws_diag._types import ASGIApp, Message
from ws_diag.bench import echo_app, websocket_scope
from ws_diag.health.probes import CallableProbe, EnvProbe, Probe

from .common import MISSING_ENV, QuietGate, failing_app
from .stats import median

__all__ = ["MemoryConfig", "render", "run"]

GOAL_BYTES_PER_CONNECTION = 1024
# Anything a session could leave behind (a dict entry, a log record, a task) is 50 B or more; caches
# inside the standard library (regex, strftime, logging) move the total by some 10 KB either way.
GOAL_GROWTH_PER_SESSION = 5.0
_WS_DIAG_DIR = os.path.dirname(ws_diag.__file__)


@dataclass(frozen=True)
class MemoryConfig:
    connections: int = 1000
    rounds: int = 7
    cycles: int = 10_000
    warmup_cycles: int = 1_000
    quiet_budget_s: float = 30.0

    @classmethod
    def quick(cls) -> MemoryConfig:
        return cls(connections=20, rounds=2, cycles=100, warmup_cycles=20, quiet_budget_s=0.0)


def _wrapped(app: ASGIApp, *, failing: bool = False) -> DiagnosticsMiddleware:
    async def alive() -> bool:
        return True

    probes: list[Probe] = [CallableProbe("supervisor", ws_diag.Component.SUPERVISOR, alive), EnvProbe([MISSING_ENV])]
    settings = DiagSettings(cache_ttl=0.0 if failing else 2.0, probe_timeout=1.0)
    return DiagnosticsMiddleware(app, settings=settings, probes=probes)


async def _open(app: ASGIApp, count: int) -> tuple[int, list[asyncio.Task[None]], asyncio.Event]:
    """Open ``count`` sessions, parked after accept; returns the traced bytes they hold."""
    gate = asyncio.Event()
    accepted = 0

    def callables() -> tuple[Any, Any]:
        connected = False

        async def receive() -> Message:
            nonlocal connected
            if not connected:
                connected = True
                return {"type": "websocket.connect"}
            await gate.wait()
            return {"type": "websocket.disconnect", "code": 1000}

        async def send(message: Message) -> None:
            nonlocal accepted
            if message["type"] == "websocket.accept":
                accepted += 1

        return receive, send

    # Everything the harness needs is built before the first reading, so only
    # what the app (and ws_diag) allocate per session is in the difference.
    pairs = [callables() for _ in range(count)]
    scopes = [websocket_scope() for _ in range(count)]
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    tasks = [asyncio.ensure_future(app(scope, r, s)) for scope, (r, s) in zip(scopes, pairs, strict=True)]
    for _ in range(100):
        if accepted == count:
            break
        await asyncio.sleep(0)
    if accepted != count:
        msg = f"only {accepted} of {count} sessions accepted"
        raise RuntimeError(msg)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    return held, tasks, gate


async def _per_connection(cfg: MemoryConfig) -> dict[str, Any]:
    variants: dict[str, ASGIApp] = {"bare": echo_app, "ws_diag": _wrapped(echo_app)}
    held: dict[str, list[float]] = {name: [] for name in variants}
    tasks_seen: dict[str, Any] = {"baseline": len(asyncio.all_tasks())}
    top: list[dict[str, Any]] = []
    for round_index in range(cfg.rounds + 1):  # round 0 warms caches and is not counted
        names = list(variants) if round_index % 2 == 0 else list(reversed(variants))
        for name in names:
            snapshot = tracemalloc.take_snapshot() if round_index == 1 and name == "ws_diag" else None
            size, tasks, gate = await _open(variants[name], cfg.connections)
            if snapshot is not None:
                top = _top_lines(snapshot, tracemalloc.take_snapshot(), cfg.connections)
            tasks_seen[f"open_{name}"] = len(asyncio.all_tasks())
            gate.set()
            await asyncio.gather(*tasks)
            del tasks
            await asyncio.sleep(0)
            tasks_seen[f"after_{name}"] = len(asyncio.all_tasks())
            if round_index:
                held[name].append(size / cfg.connections)
    added = [w - b for w, b in zip(held["ws_diag"], held["bare"], strict=True)]
    return {
        "connections": cfg.connections,
        "bare_bytes_per_connection": median(held["bare"]),
        "ws_diag_bytes_per_connection": median(held["ws_diag"]),
        "added_bytes_per_connection": median(added),
        "added_samples": [round(a, 1) for a in added],
        "ws_diag_top_lines": top,
        "tasks": tasks_seen,
    }


def _top_lines(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, count: int) -> list[dict[str, Any]]:
    """Where ws_diag's per-connection bytes are allocated (tracemalloc attributes frames to the call site)."""
    only_ws_diag = [
        tracemalloc.Filter(True, os.path.join(_WS_DIAG_DIR, "*")),
        tracemalloc.Filter(False, os.path.join(_WS_DIAG_DIR, "bench.py")),  # the echo app, there bare too
    ]
    stats = after.filter_traces(only_ws_diag).compare_to(before.filter_traces(only_ws_diag), "lineno")
    lines = []
    for stat in stats[:6]:
        if stat.size_diff <= 0:
            continue
        frame = stat.traceback[0]
        lines.append(
            {
                "where": f"{os.path.relpath(frame.filename, os.path.dirname(_WS_DIAG_DIR))}:{frame.lineno}",
                "bytes_per_connection": round(stat.size_diff / count, 1),
            }
        )
    return lines


async def _cycles(app: ASGIApp, count: int, *, fail: bool) -> int:
    """Run ``count`` sessions one after another; return how many ended as expected."""
    ok = 0
    for _ in range(count):
        incoming: list[Message] = [
            {"type": "websocket.connect"},
            {"type": "websocket.receive", "text": "fail" if fail else "hello"},
            {"type": "websocket.disconnect", "code": 1000},
        ]
        sent: list[str] = []

        async def receive(incoming: list[Message] = incoming) -> Message:
            return incoming.pop(0) if len(incoming) > 1 else incoming[0]

        async def send(message: Message, sent: list[str] = sent) -> None:
            sent.append(message["type"])

        try:
            await app(websocket_scope(), receive, send)
        except RuntimeError:
            ok += fail and sent[-1] == "websocket.close"
        else:
            ok += not fail
    return ok


async def _growth(cfg: MemoryConfig, *, fail: bool) -> dict[str, Any]:
    """Traced bytes after warm-up, halfway and at the end: a leak grows in both halves alike."""
    app = _wrapped(failing_app(RuntimeError) if fail else echo_app, failing=fail)
    tasks_before = len(asyncio.all_tasks())
    await _cycles(app, cfg.warmup_cycles, fail=fail)
    readings = []
    ok = 0
    for batch in (0, cfg.cycles // 2, cfg.cycles - cfg.cycles // 2):
        ok += await _cycles(app, batch, fail=fail)
        for _ in range(3):
            await asyncio.sleep(0)
        gc.collect()
        readings.append(tracemalloc.get_traced_memory()[0])
    await app.checker.aclose()
    growth = readings[-1] - readings[0]
    return {
        "sessions": cfg.cycles,
        "ended_as_expected": ok,
        "traced_bytes": readings,
        "growth_bytes": growth,
        "growth_per_session": round(growth / cfg.cycles, 3),
        "halves_bytes": [readings[1] - readings[0], readings[2] - readings[1]],
        "checker_runs": app.checker.runs,
        "tasks_before": tasks_before,
        "tasks_after": len(asyncio.all_tasks()),
    }


@contextlib.contextmanager
def _quiet_ws_diag_logs() -> Iterator[None]:
    """ws_diag's log records are formatted and written to /dev/null, not kept by anyone."""
    logger = logging.getLogger("ws_diag")
    with open(os.devnull, "w") as sink:
        handler = logging.StreamHandler(sink)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        propagate, level = logger.propagate, logger.level
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.INFO)
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.propagate, logger.level = propagate, level


async def run(cfg: MemoryConfig) -> dict[str, Any]:
    """Measure; returns the JSON-ready result."""
    await QuietGate(cfg.quiet_budget_s).wait()
    started_tracing = not tracemalloc.is_tracing()
    if started_tracing:
        tracemalloc.start(1)
    try:
        with _quiet_ws_diag_logs():
            per_connection = await _per_connection(cfg)
            clean = await _growth(cfg, fail=False)
            failing = await _growth(cfg, fail=True)
    finally:
        if started_tracing:
            tracemalloc.stop()
    added = per_connection["added_bytes_per_connection"]
    tasks = per_connection["tasks"]
    tasks_back = (
        tasks["after_bare"] == tasks["baseline"]
        and tasks["after_ws_diag"] == tasks["baseline"]
        and clean["tasks_after"] == clean["tasks_before"]
        and failing["tasks_after"] == failing["tasks_before"]
    )
    no_growth = all(g["growth_per_session"] < GOAL_GROWTH_PER_SESSION for g in (clean, failing))
    return {
        "benchmark": "memory",
        "per_connection": per_connection,
        "growth": {"clean sessions": clean, "failing sessions": failing},
        "goal": {
            "text": f"< {GOAL_BYTES_PER_CONNECTION} bytes per connection, no growth, tasks back to baseline",
            "met": added is not None and added < GOAL_BYTES_PER_CONNECTION and no_growth and tasks_back,
            "per_connection_met": added is not None and added < GOAL_BYTES_PER_CONNECTION,
            "no_growth": no_growth,
            "tasks_back_to_baseline": tasks_back,
        },
    }


def render(result: dict[str, Any]) -> str:
    """Markdown tables."""
    pc = result["per_connection"]
    tasks = pc["tasks"]
    goal = result["goal"]
    where = ", ".join(f"`{t['where']}` {t['bytes_per_connection']:.0f} B" for t in pc["ws_diag_top_lines"])
    lines = [
        f"{pc['connections']:,} sessions open at once (accepted, parked in `receive`), tracemalloc, "
        f"bare and wrapped interleaved over {len(pc['added_samples'])} rounds, medians.",
        "",
        "| measure | value | goal |",
        "|---|---:|---|",
        f"| bare app, bytes per open connection (ASGI side) | {_b(pc['bare_bytes_per_connection'])} | |",
        f"| with ws_diag, bytes per open connection | {_b(pc['ws_diag_bytes_per_connection'])} | |",
        f"| **added by ws_diag, bytes per open connection** | **{_b(pc['added_bytes_per_connection'])}** "
        f"| < {GOAL_BYTES_PER_CONNECTION}: {'met' if goal['per_connection_met'] else 'NOT met'} |",
    ]
    for name, g in result["growth"].items():
        lines.append(
            f"| growth after {g['sessions']:,} {name} (after warm-up) | {g['growth_bytes']:,} B "
            f"({g['growth_per_session']:.2f} B/session; halves "
            f"{g['halves_bytes'][0]:+,} / {g['halves_bytes'][1]:+,} B) "
            f"| {'none' if g['growth_per_session'] < GOAL_GROWTH_PER_SESSION else 'GROWS'} |"
        )
    lines += [
        f"| asyncio tasks: baseline / {pc['connections']:,} open / after close | {tasks['baseline']} / "
        f"{tasks.get('open_ws_diag', '-')} / {tasks.get('after_ws_diag', '-')} "
        f"| {'back to baseline' if goal['tasks_back_to_baseline'] else 'NOT back'} |",
        "",
        f"Where the wrapped app's bytes are allocated in ws_diag's files (per connection, by line): {where or '-'}. "
        "A coroutine is counted where it is created, so the app's own coroutine shows up at ws_diag's "
        "`await self.app(...)` line although it is in the bare figure too.",
    ]
    return "\n".join(lines)


def _b(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"
