"""The Python reconnecting helper against real servers: wait as told, come back after recovery, stop on auth."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
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
from ws_diag.health.probes import CallableProbe, ProbeFailed
from ws_diag.retry import RetryAction
from ws_diag.wire.closecodes import CLOSE_NO_STATUS, CLOSE_NORMAL, CLOSE_SERVICE_RESTART

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
    left: list[int] = field(default_factory=list)  # the close code of each client that left a healthy session
    departed: asyncio.Event = field(default_factory=asyncio.Event)  # set at each of those departures
    settings: DiagSettings = field(default_factory=lambda: DiagSettings(cache_ttl=0.4, retry_after=0.3))

    def app(self) -> DiagnosticsMiddleware:
        """The wrapped app: auth failure on ?auth=bad; a probe-diagnosed timeout while broken (before
        accept on ?early=1); else hello."""

        async def check() -> None:
            if self.broken:
                raise ProbeFailed("database broken by the test")

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            assert scope["type"] == "websocket"
            await receive()  # websocket.connect
            self.connects.append(time.monotonic())
            if scope["query_string"] == b"auth=bad":
                raise WebSocketComponentError.auth_failure("Token expired: sign in again")
            if scope["query_string"] == b"early=1" and self.broken:
                raise TimeoutError("ambiguous, before accept: the probes decide")
            await send({"type": "websocket.accept"})
            if scope["query_string"] == b"restart=1" and len(self.connects) == 1:
                await send({"type": "websocket.close", "code": CLOSE_SERVICE_RESTART})  # a deploy, not a failure
                return
            if self.broken:
                raise TimeoutError("ambiguous: the probes decide")
            await send({"type": "websocket.send", "text": "hello"})
            while (event := await receive())["type"] != "websocket.disconnect":
                pass
            self.left.append(event.get("code", CLOSE_NO_STATUS))
            self.departed.set()

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


@pytest.mark.parametrize("kind", ["hypercorn", "uvicorn"])
@pytest.mark.parametrize("preaccept", ["accept_close", "http_denial"])
async def test_give_up_on_authentication_is_the_same_in_both_preaccept_modes(
    backend: Backend, preaccept: str, kind: str
) -> None:
    """An authentication denial ends the loop quietly with gave_up set, whether it came as a close or a 403 + frame."""
    backend.settings = DiagSettings(preaccept=preaccept, cache_ttl=0.4, retry_after=0.3)  # type: ignore[arg-type]
    events: list[ReconnectEvent] = []
    async with run_server(backend.app(), kind) as url:
        client = reconnecting(url + "/ws?auth=bad", policy=FAST, on_event=events.append)
        async with asyncio.timeout(BOUND):
            async for ws in client:
                with contextlib.suppress(ConnectionClosed):
                    await ws.recv()
    assert len(backend.connects) == 1
    assert client.gave_up is not None
    assert client.gave_up.action == RetryAction("stop", None, "Authentication failure is not retryable")
    assert client.last is not None
    assert (client.last.component, client.last.retryable, client.last.frame_code) == ("Authentication", False, 4002)
    if preaccept == "http_denial":
        assert [e.kind for e in events] == ["diagnosis", "giveup"]
        assert isinstance(client.gave_up.error, InvalidStatus)
        assert client.gave_up.error.response.status_code == 403
    else:
        assert [e.kind for e in events] == ["open", "close", "diagnosis", "giveup"]
        assert client.gave_up.error is None


@pytest.mark.parametrize("kind", ["hypercorn", "uvicorn"])
@pytest.mark.parametrize("preaccept", ["accept_close", "http_denial"])
async def test_attempts_run_out_the_same_in_both_preaccept_modes(backend: Backend, preaccept: str, kind: str) -> None:
    """A diagnosed pre-accept Database failure, repeated past max_attempts, ends the loop quietly in both modes."""
    backend.settings = DiagSettings(preaccept=preaccept, cache_ttl=0.4, retry_after=0.05)  # type: ignore[arg-type]
    events: list[ReconnectEvent] = []
    policy = RetryPolicy(min_delay=0.01, max_delay=0.02, max_attempts=2)
    async with run_server(backend.app(), kind) as url:
        client = reconnecting(url + "/ws?early=1", policy=policy, on_event=events.append)
        async with asyncio.timeout(BOUND):
            async for ws in client:
                with contextlib.suppress(ConnectionClosed):
                    await ws.recv()
    assert len(backend.connects) == 3
    assert [e.kind for e in events if e.kind in ("reconnecting", "giveup")] == ["reconnecting"] * 2 + ["giveup"]
    assert client.gave_up is not None
    assert client.gave_up.action == RetryAction("stop", None, "gave up after 2 reconnects in a row")
    assert client.last is not None
    assert (client.last.component, client.last.frame_code, client.last.source) == ("Database", 4005, "probe")
    assert isinstance(client.gave_up.error, InvalidStatus) == (preaccept == "http_denial")


async def test_an_undiagnosed_http_status_is_still_raised() -> None:
    """A handshake refused without a ws_diag frame (plain 403) is not a diagnosis: it is raised, and last says so."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.close", "code": CLOSE_NORMAL})  # before accept: the server's plain 403

    events: list[ReconnectEvent] = []
    async with run_server(app, "hypercorn") as url:
        client = reconnecting(url + "/ws", policy=FAST, on_event=events.append)
        async with asyncio.timeout(BOUND):
            with pytest.raises(InvalidStatus):
                await first_connection(client)
    assert [e.kind for e in events] == ["giveup"]
    assert client.last is not None
    assert (client.last.code, client.last.component, client.last.frame_code) == (None, None, None)
    assert client.last.message == "Connection failed (HTTP 403)"


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
    assert client.last is not None
    assert (client.last.code, client.last.component) == (None, None)
    assert client.last.message == "Connection failed (ConnectionRefusedError)"


async def test_reserved_connect_options_are_refused() -> None:
    """Options the helper sets itself cannot be passed through."""
    with pytest.raises(TypeError, match="process_exception"):
        reconnecting("ws://127.0.0.1:1/", process_exception=lambda exc: exc)


async def test_breaking_out_is_silent_and_closes_normally(
    served: str, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """break out of the loop: the connection ends with a 1000 close; asyncio reports nothing, nothing is logged."""
    backend.broken = False
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        with caplog.at_level(logging.WARNING):
            async with asyncio.timeout(BOUND):
                async for ws in reconnecting(served + "/ws", policy=FAST):
                    assert await ws.recv() == "hello"
                    break
                gc.collect()
                await backend.departed.wait()  # the server saw the client leave
                await ws.wait_closed()
                for _ in range(3):  # let any finalizer's task run to its end
                    await asyncio.sleep(0)
                gc.collect()
    finally:
        loop.set_exception_handler(previous)
    assert ws.close_code == CLOSE_NORMAL  # the closing handshake: ours 1000, echoed by the server
    assert len(backend.left) == 1
    assert reported == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_aclose_closes_the_open_connection_at_once(served: str, backend: Backend) -> None:
    """aclose() on the iterator closes the open connection with 1000 before it returns."""
    backend.broken = False
    async with asyncio.timeout(BOUND):
        connections = aiter(reconnecting(served + "/ws", policy=FAST))
        ws = await anext(connections)
        assert await ws.recv() == "hello"
        await connections.aclose()
        assert ws.close_code == CLOSE_NORMAL
        with pytest.raises(StopAsyncIteration):
            await anext(connections)


# A script that ends right after breaking out: asyncio.run's own shutdown finalizes the loop.
BREAK_THEN_EXIT = """
import asyncio, sys
from ws_diag.client import reconnecting

async def main():
    async for ws in reconnecting(sys.argv[1]):
        print(await ws.recv())
        break

asyncio.run(main())
"""


# uvicorn hands the app the client's own close code; hypercorn reports 1006 even for a clean close
# (test_server_facts.py::test_client_clean_close_code_reaches_the_app).
@pytest.mark.parametrize("kind", ["uvicorn", "uvicorn-wsproto"])
async def test_a_script_that_breaks_and_exits_prints_nothing(backend: Backend, kind: str) -> None:
    """The reported case: break, then asyncio.run ends; stderr stays empty and the server sees a 1000 close."""
    backend.broken = False
    async with run_server(backend.app(), kind) as url, asyncio.timeout(BOUND):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-W",
            "default",
            "-c",
            BREAK_THEN_EXIT,
            url + "/ws",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        await backend.departed.wait()
    assert (process.returncode, out.decode(), err.decode()) == (0, "hello\n", "")
    assert backend.left == [CLOSE_NORMAL]


async def test_last_describes_the_open_connection_after_a_reconnect(served: str, backend: Backend) -> None:
    """After a 4005 close and a successful reconnect, last is None (nothing is failing); the close event kept 4005."""
    events: list[ReconnectEvent] = []
    client = reconnecting(served + "/ws", policy=FAST, on_event=events.append)
    lasts = []
    async with asyncio.timeout(BOUND):
        async for ws in client:
            lasts.append(client.last)
            try:
                async for message in ws:
                    if message == "hello":
                        break
            except ConnectionClosed:
                backend.broken = False
                continue
            break
    assert lasts == [None, None]
    closes = [e.explanation for e in events if e.kind == "close"]
    assert [(e.code, e.component) for e in closes if e is not None] == [(4005, "Database")]
    assert client.last is None
    assert client.gave_up is None


@pytest.mark.parametrize("kind", ["hypercorn", "uvicorn"])
async def test_other_stacks_http_status_codes(kind: str) -> None:
    """Codes of Litestar/graphql-ws (no frame): 4500 and 4429 back off and reconnect, 4403 ends the loop."""
    codes = [4500, 4429, 4403]
    seen: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        seen.append(codes[len(seen)])
        await send({"type": "websocket.close", "code": seen[-1]})

    events: list[ReconnectEvent] = []
    async with run_server(app, kind) as url:
        client = reconnecting(url + "/ws", policy=FAST, on_event=events.append)
        async with asyncio.timeout(BOUND):
            async for ws in client:
                with contextlib.suppress(ConnectionClosed):
                    await ws.recv()
    assert seen == codes
    decisions = [(e.kind, e.action.kind) for e in events if e.action is not None]
    assert decisions == [("reconnecting", "retry"), ("reconnecting", "retry"), ("giveup", "stop")]
    whys = [e.action.why for e in events if e.action is not None]
    assert ["server error" in whys[0], "retry later" in whys[1], "refused request" in whys[2]] == [True] * 3
    assert client.last is not None
    assert (client.last.code, client.last.component, client.last.retryable) == (4403, None, False)
