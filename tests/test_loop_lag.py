"""A storm of failures on an event loop that lags: the deadline belongs to the shared probe run, not to each waiter.

Measured with 10,000 sessions on one process (benchmarks, section 9): every session raises in the same loop
iteration, and joining the shared probe run took longer than the diagnosis deadline. With the deadline measured
from each waiter's own start, the first sessions gave up before the run had even begun, their Generic closes
lengthened the next iteration, and every later waiter gave up too: 10,000 wrong codes from one healthy-looking
probe run. These tests make the same backlog with a few sessions that each block the loop briefly.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from harness import drive

from ws_diag import Component, DiagnosticsMiddleware, DiagSettings
from ws_diag.health.probes import CallableProbe, ProbeFailed

SESSIONS = 40
BLOCK_S = 0.02  # per session: 40 x 20 ms = 0.8 s of backlog, far past probe_timeout + slack (0.1 + 0.25 s)


def lagging_storm(runs: list[int]) -> DiagnosticsMiddleware:
    """Sessions that each block the loop a little, then fail with an exception no type rule names."""

    async def redis_down() -> None:
        runs.append(1)
        raise ProbeFailed("redis: connection refused")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        time.sleep(BLOCK_S)  # noqa: ASYNC251 - the point: this session's own work holds the event loop
        raise TimeoutError("upstream timed out")

    probe = CallableProbe("redis", Component.REDIS, redis_down)
    return DiagnosticsMiddleware(app, settings=DiagSettings(probe_timeout=0.1), probes=[probe])


@pytest.mark.asyncio
async def test_waiters_of_a_shared_run_get_its_answer_on_a_lagging_loop() -> None:
    """A storm whose joining alone outlasts the deadline still gets the one probe run's answer: Redis, never Generic."""
    runs: list[int] = []
    app = lagging_storm(runs)
    results = await asyncio.gather(*(drive(app) for _ in range(SESSIONS)))
    codes = [run.close["code"] if run.close else None for run in results]
    assert codes == [Component.REDIS.code] * SESSIONS
    assert len(runs) == 1  # one shared run answered them all
