"""The Python reconnecting helper against real servers: wait as told, come back after recovery, stop on auth."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from servers import SERVER_KINDS, free_port, run_server
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ws_diag import Component, DiagnosticsMiddleware, DiagSettings, WebSocketComponentError
from ws_diag.client import ReconnectEvent, Reconnecting, RetryPolicy, reconnecting
from ws_diag.codes import CLOSE_SERVICE_RESTART
from ws_diag.probes import CallableProbe, ProbeFailed

pytestmark = pytest.mark.asyncio

BOUND = 30  # seconds: no scenario may take longer
# asyncio's timers may fire up to the clock's resolution early; a lower bound allows for that.
CLOCK_SLACK = 0.005
FAST = RetryPolicy(min_delay=0.02, max_delay=0.1, max_attempts=20)


@dataclass
class Backend:
    """A raw ASGI app behind ws_diag whose database probe the test breaks and fixes."""

    broken: bool = True
    connects: list[float] = field(default_factory=list)  # time.monotonic() of each websocket.connect
    settings: DiagSettings = field(default_factory=lambda: DiagSettings(cache_ttl=0.4, retry_after=0.3))

    def app(self) -> DiagnosticsMiddleware:
        """The wrapped app: auth failure on ?auth=bad; a probe-diagnosed timeout while broken; else hello."""

        async def check() -> None:
            if self.broken:
                raise ProbeFailed("database broken by the test")

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            assert scope["type"] == "websocket"
            await receive()  # websocket.connect
            self.connects.append(time.monotonic())
            if scope["query_string"] == b"auth=bad":
                raise WebSocketComponentError.auth_failure("Token expired: sign in again")
            await send({"type": "websocket.accept"})
            if scope["query_string"] == b"restart=1" and len(self.connects) == 1:
                await send({"type": "websocket.close", "code": CLOSE_SERVICE_RESTART})  # a deploy, not a failure
                return
            if self.broken:
                raise TimeoutError("ambiguous: the probes decide")
            await send({"type": "websocket.send", "text": "hello"})
            while (await receive())["type"] != "websocket.disconnect":
                pass

        probe = CallableProbe("database", Component.DATABASE, check)
        return DiagnosticsMiddleware(app, settings=self.settings, probes=[probe])


async def first_connection(client: Reconnecting) -> None:
    """Iterate ``client``; fail if a connection opens."""
    async for _ in client:
        pytest.fail("no connection may open")


@pytest.fixture
def backend() -> Backend:
    """A fresh backend, database broken."""
    return Backend()


@pytest_asyncio.fixture(params=SERVER_KINDS)
async def served(request: pytest.FixtureRequest, backend: Backend) -> AsyncIterator[str]:
    """The backend served by each real server kind; yields ws://host:port."""
    async with run_server(backend.app(), request.param) as url:
        yield url


async def test_waits_as_told_then_reconnects_after_recovery(served: str, backend: Backend) -> None:
    """While the probe fails, each reconnect waits at least retry_after_ms; after recovery the helper is back."""
    events: list[tuple[float, ReconnectEvent]] = []
    client = reconnecting(served + "/ws", policy=FAST, on_event=lambda e: events.append((time.monotonic(), e)))
    greeting = None
    failures = 0
    async with asyncio.timeout(BOUND):
        async for ws in client:
            try:
                async for message in ws:
                    if message == "hello":
                        greeting = message
                        break
            except ConnectionClosed:
                failures += 1
                backend.broken = failures < 2  # recover after two failures
                continue
            break
    assert greeting == "hello"
    kinds = [e.kind for _, e in events]
    assert kinds == ["open", "close", "diagnosis", "reconnecting"] * 2 + ["open"]
    closes = [(t, e) for t, e in events if e.kind == "close"]
    for (closed_at, close), connected_at in zip(closes, backend.connects[1:], strict=True):
        explanation = close.explanation
        assert explanation is not None
        assert (explanation.code, explanation.component, explanation.source) == (4005, "Database", "probe")
        hint = explanation.retry_after_ms
        assert hint is not None
        assert hint >= 300  # the configured floor; the probe's cache window may ask for more
        assert connected_at - closed_at >= hint / 1000 - CLOCK_SLACK
    waits = [e for _, e in events if e.kind == "reconnecting"]
    assert [e.attempt for e in waits] == [1, 2]
    assert all(e.delay is not None and e.action is not None for e in waits)
    assert all(e.delay >= (e.action.retry_after_ms or 0) / 1000 for e in waits)  # type: ignore[operator, union-attr]
    assert client.gave_up is None


async def test_stops_on_authentication_failure(served: str, backend: Backend) -> None:
    """An authentication failure is not retried: the loop ends at once and says why."""
    events: list[ReconnectEvent] = []
    bodies = 0
    async with asyncio.timeout(BOUND):
        client = reconnecting(served + "/ws?auth=bad", policy=FAST, on_event=events.append)
        async for ws in client:
            bodies += 1
            try:
                async for _ in ws:
                    pass
            except ConnectionClosed:
                continue
    assert bodies == 1
    assert len(backend.connects) == 1
    assert [e.kind for e in events] == ["open", "close", "diagnosis", "giveup"]
    assert client.last is not None
    assert (client.last.code, client.last.component, client.last.retryable) == (4002, "Authentication", False)
    assert client.last.retry_after_ms is None
    assert client.gave_up is not None
    assert client.gave_up.action is not None
    assert client.gave_up.action.kind == "stop"


async def test_service_restart_reconnects_promptly(served: str, backend: Backend) -> None:
    """After a 1012 Service Restart the helper comes back within the jitter window, without backoff."""
    backend.broken = False
    events: list[ReconnectEvent] = []
    policy = RetryPolicy(min_delay=0.05, max_delay=10, max_attempts=3)
    async with asyncio.timeout(BOUND):
        async for ws in reconnecting(served + "/ws?restart=1", policy=policy, on_event=events.append):
            try:
                if await ws.recv() == "hello":
                    break
            except ConnectionClosed:
                continue
    waits = [e for e in events if e.kind == "reconnecting"]
    assert len(waits) == 1
    assert waits[0].action is not None
    assert waits[0].action.kind == "retry_now"
    assert waits[0].delay is not None
    assert waits[0].delay <= policy.min_delay
    assert len(backend.connects) == 2


async def test_http_denial_frame_goes_through_websockets_process_exception(backend: Backend) -> None:
    """With http_denial, the 403's frame reaches the helper through websockets' process_exception: it stops."""
    backend.settings = DiagSettings(preaccept="http_denial", cache_ttl=0.4, retry_after=0.3)
    events: list[ReconnectEvent] = []
    async with run_server(backend.app(), "hypercorn") as url:
        client = reconnecting(url + "/ws?auth=bad", policy=FAST, on_event=events.append)
        async with asyncio.timeout(BOUND):
            with pytest.raises(InvalidStatus) as raised:
                await first_connection(client)
    assert raised.value.response.status_code == 403
    assert [e.kind for e in events] == ["diagnosis", "giveup"]
    assert client.last is not None
    assert client.last.component == "Authentication"


async def test_refused_connections_back_off_then_give_up() -> None:
    """Nothing listening: websockets' own retry runs our backoff, and past max_attempts the error is raised."""
    events: list[ReconnectEvent] = []
    policy = RetryPolicy(min_delay=0.01, max_delay=0.02, max_attempts=3)
    client = reconnecting(f"ws://127.0.0.1:{free_port()}/ws", policy=policy, on_event=events.append, open_timeout=5)
    async with asyncio.timeout(BOUND):
        with pytest.raises(ConnectionRefusedError):
            await first_connection(client)
    assert [e.kind for e in events] == ["reconnecting"] * 3 + ["giveup"]
    assert [e.attempt for e in events] == [1, 2, 3, 3]
    assert all(isinstance(e.error, ConnectionRefusedError) for e in events)


async def test_reserved_connect_options_are_refused() -> None:
    """Options the helper sets itself cannot be passed through."""
    with pytest.raises(TypeError, match="process_exception"):
        reconnecting("ws://127.0.0.1:1/", process_exception=lambda exc: exc)
