"""Load: a thousand concurrent sessions through real servers, one in ten failing in its own way."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from reliability import record
from servers import SERVER_KINDS, run_server
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import ws_diag
from ws_diag import DiagnosticsMiddleware, DiagSettings, WebSocketComponentError

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

SESSIONS = 1000
ECHOES = 10
TIMEOUT = 60
# Allocations made by ws_diag's own code: by the package's real directory, never by a name that
# a checkout's folder ("/home/me/ws_diag/.venv/.../uvicorn/...") or another package could share.
OURS = [tracemalloc.Filter(True, os.path.join(os.path.dirname(os.path.abspath(ws_diag.__file__)), "*"))]
# Expected close code and frame component for each failing path.
FAILURES = {
    "/db": (4005, "Database"),
    "/crash": (1011, "Generic Internal"),
    "/close": (1011, "Generic Internal"),
    "/auth": (4002, "Authentication"),
}


async def app(scope: Any, receive: Any, send: Any) -> None:
    """Echo on /ok; fail on the other paths after a few echoes (or before accept on /auth)."""
    path = scope["path"]
    await receive()
    if path == "/auth":
        raise WebSocketComponentError.auth_failure()
    await send({"type": "websocket.accept"})
    count = 0
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message["text"]})
        count += 1
        if count == 3 and path == "/db":
            raise WebSocketComponentError.database_failure()
        if count == 3 and path == "/crash":
            raise RuntimeError("handler bug")
        if count == 3 and path == "/close":
            await send({"type": "websocket.close", "code": 1011})
            return


def path_for(index: int) -> str:
    """One session in ten fails, cycling through the failure kinds."""
    if index % 10:
        return "/ok"
    return list(FAILURES)[(index // 10) % len(FAILURES)]


async def session(base: str, index: int) -> list[str]:
    """Run one session; return the problems seen (empty when all went as expected)."""
    path = path_for(index)
    expected = [f"{index}-{n}" for n in range(ECHOES)]
    received: list[str] = []
    frames: list[dict[str, Any]] = []
    async with connect(base + path, open_timeout=TIMEOUT, close_timeout=TIMEOUT, max_queue=None) as ws:
        with contextlib.suppress(ConnectionClosed):
            for text in expected:
                await ws.send(text)
        try:
            while len(received) < ECHOES:
                message = await asyncio.wait_for(ws.recv(), TIMEOUT)
                if isinstance(message, str) and message.startswith('{"type":"error"'):
                    frames.append(json.loads(message)["error"])
                else:
                    received.append(str(message))
            await ws.close()
        except ConnectionClosed:
            pass
        code = ws.close_code
    problems = []
    if path == "/ok":
        if received != expected:
            problems.append(f"{index}: echoes lost or reordered")
        if code != 1000 or frames:
            problems.append(f"{index}: healthy session closed with {code} and {len(frames)} frames")
    else:
        want_code, want_component = FAILURES[path]
        if code != want_code or [f["component"] for f in frames] != [want_component]:
            problems.append(f"{index} {path}: got {code} {[f['component'] for f in frames]}")
        if received != expected[: len(received)]:
            problems.append(f"{index}: echoes before the failure reordered")
    return problems


async def storm(base: str) -> list[str]:
    """All sessions at once."""
    results = await asyncio.gather(*(session(base, i) for i in range(SESSIONS)))
    return [p for problems in results for p in problems]


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    """No log records at all: pytest keeps every captured record, tracebacks and their frames included,
    which at this volume would be the very growth this test measures."""
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_thousand_sessions(kind: str, quiet_logs: None) -> None:
    """1,000 concurrent sessions: no wrong code, no lost or reordered echo, tasks and memory back to baseline."""
    middleware = DiagnosticsMiddleware(app, settings=DiagSettings(probe_timeout=2, send_timeout=10))
    async with run_server(middleware, kind) as base:
        baseline_tasks = {t for t in asyncio.all_tasks() if not t.done()}
        assert await storm(base) == []  # warm-up round: caches, imports, lazy setup
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            problems = await storm(base)
            for _ in range(500):  # server-side connection tasks finish a moment after the clients
                leftover = {t for t in asyncio.all_tasks() if not t.done()} - baseline_tasks
                if not leftover:
                    break
                await asyncio.sleep(0.01)
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    ours = after.filter_traces(OURS).compare_to(before.filter_traces(OURS), "filename")
    middleware_grown = sum(stat.size_diff for stat in ours)
    record("load", sessions=2 * SESSIONS, failing_sessions=2 * SESSIONS // 10, echo_messages=2 * SESSIONS * ECHOES)
    assert problems == []
    assert leftover == set()
    assert middleware_grown < 64 * 1024, f"ws_diag kept {middleware_grown} bytes after {SESSIONS} sessions"
    assert grown < 4 * 1024 * 1024, f"the process kept {grown} bytes after {SESSIONS} sessions"
