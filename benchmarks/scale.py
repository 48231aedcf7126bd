"""Section 9: scale: 10,000 open sessions on one server process, then Redis stops for real.

Per run: a fresh private Redis (``tests/services.py``'s ``RedisServer``: its own
port and data directory), the server in its own process
(``benchmarks/scale_server.py``: a chat-like app with one shared redis-py client
and one pub/sub hub, under ``run_server``), the load generator in another
(``benchmarks/loadgen.py``, mode ``hold``: raw asyncio sockets from several
loopback source addresses). Once every session is open, Redis gets SIGTERM; the
hub's read fails and every session's handler raises. Measured:

* time from the stop (``time.monotonic_ns()`` just before the signal) to each
  client's close, on the shared monotonic clock; the last one is the figure;
* the server process's memory from ``/proc/<pid>/status``: ``VmRSS`` before the
  sessions open and once they are open, ``VmHWM`` (peak) at the end;
* close codes, diagnostic frames, sessions closed without a close frame (1006)
  or not at all, probe executions, ws_diag's fallbacks.

Variants, interleaved per round (order reversed every other round): ``bare`` (the
app alone), ``ws_diag`` (the handlers raise redis-py's ``ConnectionError``:
classified by type) and ``ws_diag, app error`` (the handlers raise the app's own
error without a cause: the ``RedisProbe`` on the shared client decides).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from .common import ROOT, progress
from .stats import median

__all__ = ["ScaleConfig", "render", "run"]

EXPECTED_CODE = 4007  # Redis
VARIANTS: dict[str, dict[str, str]] = {
    "bare": {"variant": "bare", "errors": "redis"},
    "ws_diag": {"variant": "ws_diag", "errors": "redis"},
    "ws_diag, app error": {"variant": "ws_diag", "errors": "app"},
}


@dataclass(frozen=True)
class ScaleConfig:
    kinds: tuple[str, ...] = ("uvicorn", "hypercorn")
    sessions: int = 10_000
    rounds: int = 3
    variants: tuple[str, ...] = tuple(VARIANTS)
    sources: tuple[str, ...] = field(default=("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"))
    connect_concurrency: int = 64
    cache_ttl: float = 2.0  # DiagSettings' default
    probe_timeout: float = 1.0
    close_timeout_s: float = 120.0

    @classmethod
    def quick(cls) -> ScaleConfig:
        return cls(kinds=("uvicorn",), sessions=50, rounds=1, close_timeout_s=30.0)


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in bytes (empty if it is gone)."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) * 1024
    return out


def _load_average() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/loadavg") as f:
        return float(f.read().split()[0])
    return None


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONDEVMODE", None)
    return env


async def _line(proc: asyncio.subprocess.Process, limit_s: float, what: str) -> dict[str, Any]:
    assert proc.stdout is not None
    raw = await asyncio.wait_for(proc.stdout.readline(), limit_s)
    if not raw:
        err = b""
        if proc.stderr is not None:
            with contextlib.suppress(TimeoutError):
                err = await asyncio.wait_for(proc.stderr.read(), 5.0)
        raise RuntimeError(f"{what} ended without output: {err.decode(errors='replace')[-2000:]}")
    result: dict[str, Any] = json.loads(raw)
    return result


async def _spawn(module: str, cfg: dict[str, Any]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        json.dumps(cfg),
        cwd=ROOT,
        env=_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def _finish(proc: asyncio.subprocess.Process, limit_s: float) -> None:
    """Close its stdin, wait for it to exit within ``limit_s``, else kill it."""
    if proc.stdin is not None and not proc.stdin.is_closing():
        proc.stdin.close()
    try:
        await asyncio.wait_for(proc.wait(), limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def _one(cfg: ScaleConfig, kind: str, name: str) -> dict[str, Any]:
    """One run: fresh Redis, server process, load generator, stop Redis, collect."""
    from services import RedisServer

    redis = RedisServer()
    server: asyncio.subprocess.Process | None = None
    loadgen: asyncio.subprocess.Process | None = None
    load_before = _load_average()
    try:
        await asyncio.to_thread(redis.start)
        job = {
            "kind": kind,
            **VARIANTS[name],
            "redis_url": redis.url,
            "cache_ttl": cfg.cache_ttl,
            "probe_timeout": cfg.probe_timeout,
            "deadline_s": 600.0,
        }
        server = await _spawn("benchmarks.scale_server", job)
        ready = await _line(server, 60.0, "the server process")
        pid = int(ready["pid"])
        before = _status(pid)
        loadgen = await _spawn(
            "benchmarks.loadgen",
            {
                "mode": "hold",
                "url": f"{ready['url']}/ws",
                "sessions": cfg.sessions,
                "sources": list(cfg.sources),
                "connect_concurrency": cfg.connect_concurrency,
                "hold_s": 120.0,
                "timeout_s": cfg.close_timeout_s,
            },
        )
        opened = await _line(loadgen, 300.0, "the load generator")
        if opened.get("opened") != cfg.sessions:
            outcome = await _line(loadgen, 30.0, "the load generator")
            return {"error": outcome.get("error", f"opened {opened.get('opened')} of {cfg.sessions}")}
        after_open = _status(pid)
        stopped_ns = time.monotonic_ns()
        await asyncio.to_thread(redis.stop)
        assert loadgen.stdin is not None
        loadgen.stdin.write(f"{stopped_ns}\n".encode())
        await loadgen.stdin.drain()
        outcome = await _line(loadgen, cfg.close_timeout_s + 30.0, "the load generator")
        end = _status(pid)
        assert server.stdin is not None
        server.stdin.write(b"report\n")
        await server.stdin.drain()
        report = await _line(server, 30.0, "the server process")
    finally:
        for proc in (loadgen, server):
            if proc is not None:
                await _finish(proc, 20.0)
        await asyncio.to_thread(redis.close)
    rss0, rss1 = before.get("VmRSS"), after_open.get("VmRSS")
    outcome.update(
        {
            "rss_before_open": rss0,
            "rss_open": rss1,
            "hwm_open": after_open.get("VmHWM"),
            "peak_rss": end.get("VmHWM"),
            "rss_end": end.get("VmRSS"),
            "bytes_per_connection": round((rss1 - rss0) / cfg.sessions, 1) if rss0 and rss1 else None,
            "server": report,
            "load_average": load_before,
            "connect_s": opened.get("connect_s"),
        }
    )
    return outcome


async def run(cfg: ScaleConfig) -> dict[str, Any]:
    """Run every kind x variant ``rounds`` times, interleaved; returns the JSON-ready result."""
    kinds: dict[str, Any] = {}
    for kind in cfg.kinds:
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in cfg.variants}
        for index in range(cfg.rounds):
            order = list(cfg.variants) if index % 2 == 0 else list(reversed(cfg.variants))
            for name in order:
                progress(f"scale: {kind}, {name}, round {index + 1} of {cfg.rounds}, {cfg.sessions:,} sessions")
                try:
                    rounds[name].append(await _one(cfg, kind, name))
                except (RuntimeError, OSError, TimeoutError) as exc:
                    rounds[name].append({"error": f"{type(exc).__name__}: {exc}"})
        kinds[kind] = _summarise_kind(rounds, cfg.sessions)
    met = all(v["goal_met"] for k in kinds.values() for n, v in k["variants"].items() if n != "bare")
    return {
        "benchmark": "scale",
        "sessions": cfg.sessions,
        "rounds": cfg.rounds,
        "cache_ttl_s": cfg.cache_ttl,
        "probe_timeout_s": cfg.probe_timeout,
        "expected_code": EXPECTED_CODE,
        "kinds": kinds,
        "goal": {
            "text": "<= 1 run per probe per cache window, < 1 KiB per connection added, 0 wrong codes, "
            "0 clients without a close frame",
            "met": met,
        },
    }


def _summarise_kind(rounds: dict[str, list[dict[str, Any]]], sessions: int) -> dict[str, Any]:
    variants = {name: _summarise(name, items, sessions) for name, items in rounds.items()}
    bare = variants.get("bare")
    for name, v in variants.items():
        if name == "bare" or bare is None:
            continue
        if v["last_close_ms"] is not None and bare["last_close_ms"] is not None and v["last_close_ms"] > 0:
            v["added_ms"] = round(v["last_close_ms"] - bare["last_close_ms"], 1)
            v["share"] = round(v["added_ms"] / v["last_close_ms"], 3)
        if v["bytes_per_connection"] is not None and bare["bytes_per_connection"] is not None:
            v["added_bytes_per_connection"] = round(v["bytes_per_connection"] - bare["bytes_per_connection"], 1)
        v["goal_met"] = bool(
            v["goal_met"] and v.get("added_bytes_per_connection") is not None and v["added_bytes_per_connection"] < 1024
        )
    return {"variants": variants}


def _summarise(name: str, items: list[dict[str, Any]], sessions: int) -> dict[str, Any]:
    errors = [i["error"] for i in items if "error" in i]
    good = [i for i in items if "error" not in i]
    codes: dict[str, list[int]] = {}
    frames: dict[str, list[int]] = {}
    for item in good:
        for code, n in item["codes"].items():
            codes.setdefault(code, []).append(n)
        for code, n in item["frame_codes"].items():
            frames.setdefault(code, []).append(n)
    no_close_frame = [i["codes"].get("1006", 0) + i["never_closed"] for i in good]
    wrong = [sessions - i["codes"].get(str(EXPECTED_CODE), 0) for i in good] if name != "bare" else []
    probe_runs = [sum(i["server"].get("probe_runs", {}).values()) for i in good]
    fallbacks = [i["server"].get("log_events", {}).get("fallback", 0) for i in good]
    deadlines = [i["server"].get("log_events", {}).get("deadline", 0) for i in good]
    per_conn = median(i["bytes_per_connection"] for i in good)
    result = {
        "runs": len(items),
        "errors": errors[:3],
        "codes": {c: median(ns) for c, ns in codes.items()},
        "frame_codes": {c: median(ns) for c, ns in frames.items()},
        "reasons": good[0]["reasons"] if good else {},
        "frame_codes_runs": [i["frame_codes"] for i in good],
        "closed_before_stop": max((i["closed_before_stop"] for i in good), default=0),
        "no_close_frame": max(no_close_frame, default=0),
        "wrong_codes": max(wrong, default=0) + len(errors) * sessions,
        "last_close_ms": median(i["stop_to_close_ms"]["max"] for i in good),
        "last_close_ms_runs": [i["stop_to_close_ms"]["max"] for i in good],
        "p50_close_ms": median(i["stop_to_close_ms"]["p50"] for i in good),
        "p99_close_ms": median(i["stop_to_close_ms"]["p99"] for i in good),
        "probe_runs": probe_runs,
        "checker_runs": [i["server"].get("checker_runs") for i in good],
        "fallbacks": max(fallbacks, default=0),
        "deadlines_runs": deadlines,
        "codes_runs": [i["codes"] for i in good],
        "closed_before_stop_runs": [i["closed_before_stop"] for i in good],
        "log_events_runs": [i["server"].get("log_events", {}) for i in good],
        "loop_lag_ms_runs": [i["server"].get("loop_lag_ms") for i in good],
        "probe_spans_ms_runs": [i["server"].get("probe_spans_ms") for i in good],
        "stalls_ms_runs": [i["server"].get("stalls_ms") for i in good],
        "connect_s_runs": [i["connect_s"] for i in good],
        "loop_lag_ms": median(i["server"].get("loop_lag_ms") for i in good),
        "rss_before_open_mb": _mb(median(i["rss_before_open"] for i in good)),
        "rss_open_mb": _mb(median(i["rss_open"] for i in good)),
        "peak_rss_mb": _mb(median(i["peak_rss"] for i in good)),
        "bytes_per_connection": per_conn,
        "bytes_per_connection_runs": [i["bytes_per_connection"] for i in good],
        "connect_s": median(i["connect_s"] for i in good),
        "load_average": [i["load_average"] for i in good],
        "hub_failed_with": sorted({str(i["server"].get("hub_failed_with")) for i in good}),
    }
    result["goal_met"] = name == "bare" or (
        bool(good)
        and not errors
        and result["wrong_codes"] == 0
        and result["no_close_frame"] == 0
        and max(probe_runs, default=0) <= 1
    )
    return result


def _per_run(runs: list[dict[str, Any]], skip: str | None = None) -> str:
    """``code: n`` per run (runs separated by ``;``), or once when every run saw the same."""
    texts = [", ".join(f"{c}: {n:,.0f}" for c, n in sorted(run.items()) if c != skip) for run in runs]
    return texts[0] if len(set(texts)) == 1 else "; ".join(texts)


def _mb(value: float | None) -> float | None:
    return None if value is None else round(value / 2**20, 1)


def _f(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render(result: dict[str, Any]) -> str:
    """Markdown table."""
    lines = [
        f"{result['sessions']:,} websocket sessions open on one server process (a chat-like app: one shared "
        "redis-py client, one pub/sub hub fanned out to every session), then the private Redis is stopped "
        f"(SIGTERM). {result['rounds']} run(s) per variant, interleaved, each with a fresh Redis and server "
        f"process; medians over runs. ws_diag: `cache_ttl` {result['cache_ttl_s']:g} s, `probe_timeout` "
        f"{result['probe_timeout_s']:g} s, a counting `RedisProbe` on the shared client. Memory: the server "
        "process's VmRSS before the sessions open and once they are open (per connection = the difference / "
        "sessions), VmHWM at the end (peak).",
        "",
        "| server | variant | stop to last close, ms (runs) | p50 / p99 ms | ws_diag's share of it | close codes "
        "(frames) | no close frame | wrong codes | probe runs | RSS before / open / peak MB | B per connection "
        "(added) | load avg | goal |",
        "|---|---|---:|---:|---:|---|---:|---:|---|---|---:|---|---|",
    ]
    for kind, k in result["kinds"].items():
        for name, v in k["variants"].items():
            runs = ", ".join(_f(x, ",.0f") for x in v["last_close_ms_runs"])
            codes = _per_run(v.get("codes_runs") or [v["codes"]])
            frames = _per_run(v.get("frame_codes_runs") or [v["frame_codes"]], skip="None")
            share = "-"
            if v.get("share") is not None:
                share = f"{v['share'] * 100:.0f} % ({v['added_ms']:+,.0f} ms)"
            added = f" ({v['added_bytes_per_connection']:+,.0f})" if v.get("added_bytes_per_connection") else ""
            goal = "-" if name == "bare" else ("met" if v["goal_met"] else "**NOT met**")
            loads = ", ".join(_f(x, ".1f") for x in v["load_average"])
            lines.append(
                f"| {kind} | {name} | {_f(v['last_close_ms'], ',.0f')} ({runs}) | {_f(v['p50_close_ms'], ',.0f')} / "
                f"{_f(v['p99_close_ms'], ',.0f')} | {share} | {codes} ({frames or 'no frames'}) | "
                f"{v['no_close_frame']:,} | {v['wrong_codes'] if name != 'bare' else '-'} | "
                f"{', '.join(map(str, v['probe_runs'])) if name != 'bare' else '-'} | "
                f"{_f(v['rss_before_open_mb'], '.0f')} / {_f(v['rss_open_mb'], '.0f')} / {_f(v['peak_rss_mb'], '.0f')} "
                f"| {_f(v['bytes_per_connection'], ',.0f')}{added} | {loads} | {goal} |"
            )
    spans = {
        f"{kind} / {name}": "; ".join(
            ", ".join(f"{a:,.0f}-{b:,.0f}" for a, b in run) or "none" for run in v["probe_spans_ms_runs"]
        )
        for kind, k in result["kinds"].items()
        for name, v in k["variants"].items()
        if any(v.get("probe_spans_ms_runs") or [])
    }
    if spans:
        lines += [
            "",
            "Probe runs, ms from the subscription's failure to the run's start and end, per run "
            "(the first diagnosis starts it; the run itself takes under 1 ms of CPU): "
            + "; ".join(f"{key}: {text}" for key, text in spans.items())
            + ".",
        ]
    deadlines = {
        f"{kind} / {name}": v["deadlines_runs"]
        for kind, k in result["kinds"].items()
        for name, v in k["variants"].items()
        if any(v.get("deadlines_runs") or [])
    }
    if deadlines:
        lines += [
            "",
            "Diagnoses that passed ws_diag's deadline (`probe_timeout` + 250 ms) and were reported as Generic "
            f"(1011 and a Generic frame), per run: {deadlines}.",
        ]
    early = {
        f"{kind} / {name}": v["closed_before_stop_runs"]
        for kind, k in result["kinds"].items()
        for name, v in k["variants"].items()
        if any(v.get("closed_before_stop_runs") or [])
    }
    if early:
        lines += ["", f"Sessions that had ended before Redis was stopped, per run: {early}."]
    errors = {
        f"{kind} / {name}": v["errors"] for kind, k in result["kinds"].items() for name, v in k["variants"].items()
    }
    errors = {key: value for key, value in errors.items() if value}
    if errors:
        lines += ["", f"Runs that failed: {errors}."]
    return "\n".join(lines)
