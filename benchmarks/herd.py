"""The herd after an outage: the reconnect rate servers face when 100,000 clients come back.

A simulation in simulated time, no sockets, deterministic for a seed. Every
client loses its connection at t = 0 because a dependency (Redis) died; for
``outage_s`` seconds every reconnect attempt gets a session that fails again
and is closed the way ws_diag closes it; from ``outage_s`` on an attempt
succeeds and the client stays. An attempt is counted when the client starts
it; its failing close arrives one round trip later (uniform between
``rtt_min_ms`` and ``rtt_max_ms``: handshake, the app's failure, the frame and
the close), and the client's next delay starts from there. Servers are assumed
to answer every attempt (no capacity limit): the figures are the load they are
offered, not what they survive.

Policies compared:

* ``shipped``: the clients ws_diag ships. The close the clients get is made by
  the real :class:`ws_diag.DiagnosticsMiddleware` (an app that raises
  ``redis.exceptions.ConnectionError``, default settings: 4007 and a frame with
  ``retry_after_ms`` 1000), read with :func:`ws_diag.client.parse_frame`; the
  decision is :func:`ws_diag.retry.retry_action` (the table) and the delay
  :meth:`ws_diag.client.RetryPolicy.delay` (``retry_delay_ms``: the frame's
  ``retry_after_ms`` plus full jitter between ``min_delay`` and
  ``min(max_delay, min_delay * 2 ** (attempt + 1))``), both called, not copied.
  The few lines around them (give up after ``max_attempts`` reconnects in a row,
  the count reset after a connection open ``reset_after``) live in
  ``Reconnecting._decide``/``_closed`` (ws_diag/client/reconnect.py) and in ``connect()``
  of clients/js/ws-diag.js (the ``close`` listener: reset, ``retryAction``,
  ``maxAttempts``, ``retryDelayMs``, ``attempt += 1``); they are mirrored in
  :func:`shipped_policy`, and ``tests/test_bench.py`` checks the mirror
  against ``Reconnecting._decide``. The JS helper computes the same delays
  (``retryDelayMs``, checked against the Python one by tests/retry_cases.json)
  with the same defaults (500 ms, 30 s, 10 attempts, reset after 5 s).
* ``fixed``: reconnect every ``fixed_delay_s`` (1 s), forever.
* ``plain exponential``: 1, 2, 4, ... s capped at ``exp_cap_s`` (30 s), no jitter, forever.
* ``previous: max(retry_after_ms, backoff)``: the policy ws_diag shipped before
  (up to git 4ce7a5d), for comparison: the same backoff, but floored by the
  server's ``retry_after_ms`` (the larger of the two) instead of added to it. With
  the default 1000 ms hint and a first backoff in [500, 1000) ms it puts every
  client's first reconnect at exactly 1000 ms.

Run: ``python -m benchmarks run --only herd`` (writes benchmarks/herd.png) or
``python -m benchmarks.herd [--quick] [--json PATH] [--plot PATH]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import random
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ws_diag import DiagnosticsMiddleware, DiagSettings
from ws_diag._types import Message, Receive, Scope, Send
from ws_diag.bench import websocket_scope
from ws_diag.client import RetryPolicy, parse_frame
from ws_diag.retry import RetryAction, retry_action

__all__ = ["PLOT", "HerdConfig", "Policy", "outage_close", "plot", "policies", "render", "run", "shipped_policy"]

PLOT = Path(__file__).resolve().parent / "herd.png"
SHIPPED = "shipped"
FIXED = "fixed"
PLAIN = "plain exponential"
PREVIOUS = "previous: max(retry_after_ms, backoff)"

# (attempt, rand in [0, 1)) -> seconds to wait before reconnect number ``attempt`` (0-based), None: give up.
NextDelay = Callable[[int, float], float | None]


@dataclass(frozen=True)
class HerdConfig:
    clients: int = 100_000
    outage_s: float = 30.0
    seed: int = 18
    bin_ms: int = 100
    rtt_min_ms: float = 20.0
    rtt_max_ms: float = 80.0
    fixed_delay_s: float = 1.0
    exp_first_s: float = 1.0
    exp_cap_s: float = 30.0
    plot: bool = True

    @classmethod
    def quick(cls) -> HerdConfig:
        return cls(clients=500, plot=False)


@dataclass(frozen=True)
class Policy:
    """A reconnect policy: its name, a one-line description and its delay function."""

    name: str
    description: str
    next_delay: NextDelay


async def outage_close() -> tuple[int, dict[str, Any]]:
    """The close code and frame body ws_diag sends when the app fails because Redis is down (default settings)."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        msg = "Error 111 connecting to 127.0.0.1:6379. Connection refused."
        raise RedisConnectionError(msg)

    sent: list[Message] = []
    inbox: list[Message] = [{"type": "websocket.connect"}]

    async def receive() -> Message:
        return inbox.pop(0) if inbox else {"type": "websocket.disconnect", "code": 1006}

    async def send(message: Message) -> None:
        sent.append(message)

    with contextlib.suppress(RedisConnectionError):  # ws_diag re-raises the app's exception, as it should
        await DiagnosticsMiddleware(app, settings=DiagSettings())(websocket_scope(), receive, send)
    code = next(m["code"] for m in sent if m["type"] == "websocket.close")
    frame = next((parse_frame(m.get("text")) for m in sent if m["type"] == "websocket.send"), None)
    if frame is None:
        msg = f"ws_diag sent no frame: {sent!r}"
        raise RuntimeError(msg)
    return code, frame


def shipped_policy(code: int, frame: dict[str, Any], policy: RetryPolicy | None = None) -> Policy:
    """ws_diag's clients after a close with ``code`` and ``frame``, every time (the outage's close).

    Mirrors ``Reconnecting._decide`` (ws_diag/client/reconnect.py) and the ``close`` listener of
    ``connect()`` in clients/js/ws-diag.js: ``retry_action`` decides; past
    ``max_attempts`` reconnects in a row it stops; the delay is ``RetryPolicy.delay``.
    The count's reset (a connection open ``reset_after``, 5 s) never happens here: the
    sessions that fail during the outage live one round trip.
    """
    retry = policy if policy is not None else RetryPolicy()

    def next_delay(attempt: int, rand: float) -> float | None:
        action = retry_action(code, frame)
        limit = retry.max_attempts
        if action.kind != "stop" and limit is not None and attempt >= limit:
            return None
        if action.kind == "stop":
            return None
        return retry.delay(action, attempt, rand)

    return Policy(
        SHIPPED,
        f"ws_diag's clients: retry_action + RetryPolicy() (min {retry.min_delay} s, max {retry.max_delay} s, "
        f"{retry.max_attempts} attempts): retry_after_ms {frame.get('retry_after_ms')} + backoff",
        next_delay,
    )


def _previous(code: int, frame: dict[str, Any]) -> Policy:
    """The policy shipped up to git 4ce7a5d: the same backoff, the hint taken as the larger of the two."""
    retry = RetryPolicy()

    def next_delay(attempt: int, rand: float) -> float | None:
        action = retry_action(code, frame)
        limit = retry.max_attempts
        if action.kind == "stop" or (limit is not None and attempt >= limit):
            return None
        backoff = retry.delay(RetryAction(action.kind, 0, action.why), attempt, rand)
        return max((action.retry_after_ms or 0) / 1000, backoff)

    return Policy(
        PREVIOUS, "the shipped backoff floored by retry_after_ms (the larger of the two), up to git 4ce7a5d", next_delay
    )


def policies(cfg: HerdConfig, code: int, frame: dict[str, Any]) -> list[Policy]:
    """The policies compared, shipped first."""

    def fixed(attempt: int, rand: float) -> float:
        return cfg.fixed_delay_s

    def plain(attempt: int, rand: float) -> float:
        return min(cfg.exp_cap_s, cfg.exp_first_s * 2 ** min(attempt, 40))

    return [
        shipped_policy(code, frame),
        Policy(FIXED, f"every {cfg.fixed_delay_s:g} s, no limit", fixed),
        Policy(PLAIN, f"{cfg.exp_first_s:g}, {2 * cfg.exp_first_s:g}, ... s, capped at {cfg.exp_cap_s:g} s", plain),
        _previous(code, frame),
    ]


def _simulate(cfg: HerdConfig, policy: Policy, seed: int) -> tuple[list[float], list[float], int]:
    """Attempt times, reconnect times and the number of clients that gave up."""
    rng = random.Random(seed)  # noqa: S311 -- jitter and round trips of a seeded simulation
    rtt_min, rtt_max = cfg.rtt_min_ms / 1000, cfg.rtt_max_ms / 1000
    attempts: list[float] = []
    reconnected: list[float] = []
    gave_up = 0
    for _ in range(cfg.clients):
        t = 0.0  # the close that came with the dependency's death
        attempt = 0
        while True:
            delay = policy.next_delay(attempt, rng.random())
            if delay is None:
                gave_up += 1
                break
            attempt += 1
            t += delay
            attempts.append(t)
            if t >= cfg.outage_s:
                reconnected.append(t)
                break
            t += rng.uniform(rtt_min, rtt_max)  # the failing session's close arrives
    return attempts, reconnected, gave_up


def _bins(times: list[float], width: float) -> list[int]:
    counts = [0] * (int(max(times, default=0.0) / width) + 1)
    for t in times:
        counts[int(t / width)] += 1
    return counts


def _peak(counts: list[int], width: float, start: int = 0) -> tuple[float, float]:
    """(attempts per second, bin start in seconds) of the busiest bin from index ``start`` on."""
    window = counts[start:]
    if not window:
        return 0.0, 0.0
    best = max(range(len(window)), key=window.__getitem__)
    return window[best] / width, (start + best) * width


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


async def run(cfg: HerdConfig, plot_to: Path | None = None) -> dict[str, Any]:
    """Simulate every policy; returns the JSON-ready result (and writes the plot when ``cfg.plot``)."""
    code, frame = await outage_close()
    width = cfg.bin_ms / 1000
    recovery_bin = int(cfg.outage_s / width)
    result: dict[str, Any] = {
        "benchmark": "reconnect herd after an outage, simulated",
        "clients": cfg.clients,
        "outage_s": cfg.outage_s,
        "close": {"code": code, "retry_after_ms": frame.get("retry_after_ms"), "component": frame.get("component")},
        "policies": {},
    }
    series: dict[str, list[int]] = {}
    for policy in policies(cfg, code, frame):
        # Every policy gets the same seed (common random numbers): the clients draw the same
        # jitter stream, so a difference between two rows is the policies', not the draws'.
        attempts, reconnected, gave_up = _simulate(cfg, policy, cfg.seed)
        counts = _bins(attempts, width)
        series[policy.name] = counts
        peak, peak_at = _peak(counts, width)
        after, after_at = _peak(counts, width, recovery_bin)
        back = [t - cfg.outage_s for t in reconnected]
        per_second = _bins(attempts, 1.0)
        result["policies"][policy.name] = {
            "description": policy.description,
            "attempts": len(attempts),
            "attempts_per_client": round(len(attempts) / cfg.clients, 2),
            "attempts_during_outage": sum(1 for t in attempts if t < cfg.outage_s),
            "peak_per_s": peak,
            "peak_at_s": round(peak_at, 3),
            "peak_after_recovery_per_s": after,
            "peak_after_recovery_at_s": round(after_at, 3),
            "reconnected": len(reconnected),
            "gave_up": gave_up,
            "all_back_after_s": round(max(back), 3) if back else None,
            "p50_back_after_s": None if not back else round(statistics.median(back), 3),
            "p99_back_after_s": None if not back else round(_quantile(back, 0.99) or 0.0, 3),
            "attempts_per_second": per_second,
        }
    ours = result["policies"][SHIPPED]
    result["ratios"] = {
        f"{SHIPPED} / {other}": {
            "peak": _ratio(ours["peak_per_s"], result["policies"][other]["peak_per_s"]),
            "peak_after_recovery": _ratio(
                ours["peak_after_recovery_per_s"], result["policies"][other]["peak_after_recovery_per_s"]
            ),
        }
        for other in (FIXED, PLAIN, PREVIOUS)
    }
    naive = [result["policies"][name] for name in (FIXED, PLAIN)]
    peak_below = all(ours["peak_per_s"] < p["peak_per_s"] for p in naive)
    after_below = all(ours["peak_after_recovery_per_s"] < p["peak_after_recovery_per_s"] for p in naive)
    result["goal"] = {"peak_below_naive": peak_below, "after_recovery_below_naive": after_below}
    result["goal"]["met"] = peak_below and after_below
    if cfg.plot or plot_to is not None:
        path = plot_to if plot_to is not None else PLOT
        plot(series, width, cfg, path)
        result["plot"] = path.name
    return result


def plot(series: dict[str, list[int]], width: float, cfg: HerdConfig, path: Path) -> None:
    """Attempts per second over time, one line per policy, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5), dpi=110)
    styles = {SHIPPED: ("C0", 1.8, 5), FIXED: ("C3", 0.9, 2), PLAIN: ("C1", 1.2, 3), PREVIOUS: ("C2", 1.0, 4)}
    for name, counts in series.items():
        color, line, z = styles.get(name, ("k", 1.0, 1))
        xs = [i * width for i in range(len(counts) + 1)]
        ys = [c / width for c in counts]
        ax.stairs(ys, xs, color=color, linewidth=line, label=name, zorder=z)
    ax.axvspan(0, cfg.outage_s, color="0.92", zorder=0)
    ax.axvline(cfg.outage_s, color="0.4", linestyle="--", linewidth=0.8)
    ax.text(cfg.outage_s, ax.get_ylim()[1], " dependency back", va="top", fontsize=8, color="0.3")
    ax.set_yscale("log")
    ax.set_ylim(bottom=1 / width)
    ax.set_xlim(0, min(max(len(c) for c in series.values()) * width, cfg.outage_s + 32))
    ax.set_xlabel(f"seconds after the outage began (bins of {cfg.bin_ms} ms)")
    ax.set_ylabel("reconnect attempts per second (log)")
    ax.set_title(
        f"{cfg.clients:,} clients, {cfg.outage_s:g} s outage: reconnect attempts the servers face (seed {cfg.seed})"
    )
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _n(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def render(result: dict[str, Any]) -> str:
    """A Markdown table."""
    close = result["close"]
    lines = [
        f"{result['clients']:,} simulated clients lose their connection at t = 0 ({close['component']}: close "
        f"{close['code']}, frame retry_after_ms {close['retry_after_ms']}); every attempt fails the same way for "
        f"{result['outage_s']:g} s. Rates in 100 ms bins; 'back' is counted from the recovery.",
        "",
        "| policy | peak attempts/s (at s) | peak after recovery/s (at s) | attempts/client | all back after s "
        "| p99 back s | gave up |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, p in result["policies"].items():
        lines.append(
            f"| {name} | {_n(p['peak_per_s'])} ({p['peak_at_s']:g}) | {_n(p['peak_after_recovery_per_s'])} "
            f"({p['peak_after_recovery_at_s']:g}) | {p['attempts_per_client']:g} | {_n(p['all_back_after_s'], '.1f')} "
            f"| {_n(p['p99_back_after_s'], '.1f')} | {p['gave_up']:,} |"
        )
    lines += ["", "| ratio | peak | peak after recovery |", "|---|---:|---:|"]
    for name, r in result["ratios"].items():
        lines.append(f"| {name} | {_n(r['peak'], '.3f')} | {_n(r['peak_after_recovery'], '.3f')} |")
    lines += ["", *(f"- {name}: {p['description']}" for name, p in result["policies"].items())]
    if result.get("plot"):
        lines += ["", f"![reconnect attempts per second]({result['plot']})"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.herd``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.herd", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="500 clients, no plot unless --plot")
    parser.add_argument("--clients", type=int, default=None)
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    parser.add_argument("--plot", type=Path, default=None, help=f"PNG path (default {PLOT.name} unless --quick)")
    args = parser.parse_args(argv)
    cfg = HerdConfig.quick() if args.quick else HerdConfig()
    if args.clients is not None:
        cfg = HerdConfig(**{**asdict(cfg), "clients": args.clients})
    logging.getLogger("ws_diag").setLevel(logging.CRITICAL)  # the outage's one diagnosis record
    result = asyncio.run(run(cfg, args.plot))
    result["config"] = asdict(cfg)
    print(render(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
