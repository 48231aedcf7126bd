"""A Starlette app behind ws_diag, for ``hypercorn --worker-class trio`` in tests/test_trio.py.

Loaded by hypercorn in its own process (``trio_apps:app`` or ``trio_apps:refreshing``),
so every test gets a fresh trio run. The environment says where the test's switch is:
while the file ``TRIO_APPS_DOWN`` exists, the database probe (a sync
``CallableProbe``, run in its own thread) fails.

Routes: ``/ws/redis`` raises redis-py's ``ConnectionError`` after accept (type rule:
Redis, 4007); ``/ws/broken`` raises a plain ``RuntimeError`` (probes decide: 4005
while the database is down, else Generic 1011); ``/ws/echo`` echoes until the client
leaves or the server stops; ``/ws/done`` sends one message and returns.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import anyio.lowlevel
import redis.exceptions
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ws_diag import Component, DiagnosticsMiddleware
from ws_diag.health.probes import CallableProbe, PostgresProbe, RedisProbe

# ws_diag's lines (INFO and up) on the server's stderr, where the test reads them.
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")

DOWN = Path(os.environ.get("TRIO_APPS_DOWN", "/nonexistent/ws-diag-trio-down"))


def database_up() -> bool:
    """The database probe: healthy unless the test's switch file exists."""
    return not DOWN.exists()


async def queue_up() -> dict[str, Any]:
    """An async probe that awaits under trio (anyio), always healthy."""
    await anyio.lowlevel.checkpoint()
    return {"library": "anyio"}


async def redis_down(websocket: WebSocket) -> None:
    """Accept, then lose Redis."""
    await websocket.accept()
    raise redis.exceptions.ConnectionError("Error 111 connecting to redis:6379. Connection refused.")


async def broken(websocket: WebSocket) -> None:
    """Accept, then fail with nothing but a RuntimeError: the probes must say why."""
    await websocket.accept()
    raise RuntimeError("session handler failed")


async def echo(websocket: WebSocket) -> None:
    """Accept, then echo until the client leaves."""
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass


async def done(websocket: WebSocket) -> None:
    """Accept, send one message and return without closing."""
    await websocket.accept()
    await websocket.send_text("bye")


routes = [
    WebSocketRoute("/ws/redis", redis_down),
    WebSocketRoute("/ws/broken", broken),
    WebSocketRoute("/ws/echo", echo),
    WebSocketRoute("/ws/done", done),
]


def build(**settings: Any) -> DiagnosticsMiddleware:
    """The app behind ws_diag with health endpoints, a sync and an async probe, and two asyncio-only ones."""
    probes = [
        CallableProbe("database", Component.DATABASE, database_up),
        CallableProbe("queue", Component.DEPENDENCY, queue_up, required=False),
        # asyncpg and redis-py's asyncio client need asyncio: under trio they are not run.
        PostgresProbe("postgresql://ws_diag@127.0.0.1:9/nowhere", name="postgres", timeout=0.3),
        RedisProbe("redis://127.0.0.1:9/0", name="redis", timeout=0.3, required=True),
    ]
    base = {
        "health_path": "/health",
        "readiness_path": "/ready",
        "liveness_path": "/live",
        "probe_timeout": 1.0,
        "cache_ttl": 0,
        "failure_cache_ttl": 0,
        "send_timeout": 1.0,
        "expose_details": True,
    }
    return DiagnosticsMiddleware(Starlette(routes=routes), settings={**base, **settings}, probes=probes)


app = build()
refreshing = build(refresh_interval=0.2)
