"""The server process of the scale benchmark (section 9): a chat-like app on Redis, under a real server.

``python -m benchmarks.scale_server '<json config>'`` runs in its own process so
that its memory (``/proc/<pid>/status``) is the server's alone. Protocol on its
standard streams, one JSON object per line:

1. it prints ``{"url": ..., "pid": ...}`` once the server accepts connections;
2. it waits for a line on stdin (the benchmark writes one when the load
   generator is done), then prints its report (probe runs, ws_diag's log
   events, the worst event-loop lag) and stops the server.

The app is what a chat back end does with Redis: one shared ``redis.asyncio``
client per process, one pub/sub subscription on it (a hub), fanned out to every
session; each session awaits the next message from the hub. When Redis goes
away the hub's read fails, and every session's handler raises: redis-py's own
exception type (``"redis"`` errors, which ws_diag classifies by type), or an
application error without a cause (``"app"`` errors: then the probes decide).
Variants: ``bare`` (the app alone) and ``ws_diag`` (``DiagnosticsMiddleware``
with a counting ``RedisProbe`` on the same shared client). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from typing import Any

from .common import CountingProbe, LogEvents, LoopLag, run_server
from .runner import quiet_logging, raise_fd_limit

__all__ = ["Hub", "TimedProbe", "chat_app", "main"]

CHANNEL = "room:lobby"
PROFILE_ENV = "WS_DIAG_SCALE_PROFILE"
"""Set to a file name: the failure phase is profiled (cProfile) and the stats written there."""
PROFILE: Any = None


class Hub:
    """One pub/sub subscription per process, fanned out to the sessions waiting in :meth:`next`."""

    def __init__(self, client: Any, errors: str) -> None:
        self.client = client
        self.errors = errors
        self.failed: BaseException | None = None
        self.waiters: set[asyncio.Future[bytes]] = set()
        self.subscribed = asyncio.Event()
        self.failed_at: float | None = None  # time.perf_counter() when the subscription failed

    def _error(self, cause: BaseException) -> BaseException:
        """A fresh exception for one session: redis-py's own type, or the app's own error (no cause)."""
        if self.errors == "app":
            return RuntimeError("chat room feed stopped")
        import redis.exceptions

        kind = type(cause) if isinstance(cause, redis.exceptions.RedisError) else redis.exceptions.ConnectionError
        return kind("Redis pub/sub connection lost")

    async def run(self) -> None:
        """Read the subscription until it fails; then fail every waiting session, and every later one."""
        pubsub = self.client.pubsub()
        try:
            await pubsub.subscribe(CHANNEL)
            self.subscribed.set()
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None:
                    for waiter in list(self.waiters):
                        if not waiter.done():
                            waiter.set_result(message["data"])
        except Exception as exc:  # redis-py's ConnectionError/TimeoutError when Redis goes away
            self.failed, self.failed_at = exc, time.perf_counter()
            if PROFILE is not None:  # profile the failure phase only: from here to the report
                PROFILE.enable()
            for waiter in list(self.waiters):
                if not waiter.done():
                    waiter.set_exception(self._error(exc))
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), 1.0)

    async def next(self) -> bytes:
        """The next message published to the room."""
        if self.failed is not None:
            raise self._error(self.failed)
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.waiters.add(waiter)
        try:
            return await waiter
        finally:
            self.waiters.discard(waiter)


class TimedProbe(CountingProbe):
    """A counting probe that also records when its runs started and ended (``time.perf_counter()``)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.spans: list[tuple[float, float]] = []

    async def check(self) -> Any:
        began = time.perf_counter()
        try:
            return await super().check()
        finally:
            self.spans.append((began, time.perf_counter()))


class Stalls:
    """The event loop's long iterations: (start, end) of every wake-up of a 5 ms ticker that came > 20 ms late."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []

    async def watch(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            after = time.perf_counter()
            if after - before > 0.025:
                self.spans.append((before + 0.005, after))


def chat_app(hub: Hub) -> Any:
    """Accept, then forward every room message to the client until the hub fails."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            data = await hub.next()
            await send({"type": "websocket.send", "text": data.decode(errors="replace")})

    return app


async def _readline(limit_s: float) -> str:
    try:
        return await asyncio.wait_for(asyncio.to_thread(sys.stdin.readline), limit_s)
    except TimeoutError:
        return ""


async def _serve(cfg: dict[str, Any]) -> dict[str, Any]:
    import redis.asyncio

    from ws_diag import DiagnosticsMiddleware, DiagSettings
    from ws_diag.health.probes import RedisProbe

    client = redis.asyncio.Redis.from_url(cfg["redis_url"], socket_timeout=2.0, socket_connect_timeout=1.0)
    hub = Hub(client, cfg.get("errors", "redis"))
    hub_task = asyncio.create_task(hub.run())
    stalls = Stalls()
    stall_task = asyncio.create_task(stalls.watch())
    await asyncio.wait_for(hub.subscribed.wait(), 10.0)
    app = chat_app(hub)
    probes: list[TimedProbe] = []
    middleware: DiagnosticsMiddleware | None = None
    if cfg["variant"] == "ws_diag":
        probes = [TimedProbe(RedisProbe(client=client, timeout=cfg["probe_timeout"]))]
        settings = DiagSettings(probe_timeout=cfg["probe_timeout"], cache_ttl=cfg["cache_ttl"])
        middleware = DiagnosticsMiddleware(app, settings=settings, probes=probes)
        app = middleware
    report: dict[str, Any] = {}
    try:
        with LogEvents() as events:
            async with run_server(app, cfg["kind"], startup_timeout=30.0, shutdown_timeout=10.0) as url:
                print(json.dumps({"url": url, "pid": os.getpid()}), flush=True)
                with LoopLag(0.01) as lag:
                    await _readline(cfg["deadline_s"])
                report = {
                    "probe_runs": {p.name: p.runs for p in probes},
                    "checker_runs": middleware.checker.runs if middleware is not None else None,
                    "log_events": dict(events.counts),
                    "loop_lag_ms": round(lag.worst_s * 1000, 1),
                    "hub_failed_with": type(hub.failed).__qualname__ if hub.failed is not None else None,
                    # from the subscription's failure to each probe run's start and end, ms
                    "probe_spans_ms": [
                        [round((a - hub.failed_at) * 1000, 1), round((b - hub.failed_at) * 1000, 1)]
                        for p in probes
                        for a, b in p.spans
                    ]
                    if hub.failed_at is not None
                    else [],
                    # the loop's stalls after the failure (late ticker wake-ups), ms from the failure
                    "stalls_ms": [
                        [round((a - hub.failed_at) * 1000, 1), round((b - hub.failed_at) * 1000, 1)]
                        for a, b in stalls.spans
                        if b >= hub.failed_at
                    ][:20]
                    if hub.failed_at is not None
                    else [],
                }
    finally:
        stall_task.cancel()
        hub_task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(hub_task, 2.0)
        if middleware is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(middleware.checker.aclose(), 2.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.aclose(), 2.0)
    return report


def main(argv: list[str] | None = None) -> int:
    """Serve until told to report (or until ``deadline_s``); print the report as one JSON line."""
    args = sys.argv[1:] if argv is None else argv
    cfg = json.loads(args[0])
    raise_fd_limit()
    global PROFILE
    target = os.environ.get(PROFILE_ENV)
    if target:
        import cProfile

        PROFILE = cProfile.Profile()
    with quiet_logging():
        report = asyncio.run(_serve(cfg))
    if PROFILE is not None:
        PROFILE.disable()
        PROFILE.dump_stats(f"{target}.{cfg['kind']}.{cfg['variant']}.{cfg.get('errors')}")
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
