"""granian: what ws_diag does when granian stops (its command line, SIGINT and SIGTERM).

granian drops open sessions before the app hears of the stop (pinned in
``tests/test_server_facts.py``), so no Service Restart frame can reach a client there.
ws_diag must then count each session as a departure, quietly: outcome ``client_gone``,
no diagnosis, nothing of its own above DEBUG. The rest of granian's behaviour with ws_diag
is in the end-to-end matrix (``tests/test_e2e.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

import pytest
from granian_cli import run_granian
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ws_diag import DiagnosticsMiddleware, DiagSettings
from ws_diag.lifecycle import Connection, ConnectionListener

WAIT_S = 20  # the lifespan shutdown may wait up to 8 s for sessions granian never tells
SESSIONS = 2


# -- served by `python -m granian` -----------------------------------------------------------


def _say(*words: object) -> None:
    print("SAW", *words, file=sys.stderr, flush=True)


class _Printed(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        _say("log", record.levelname, getattr(record, "ws_diag_event", "-"))


class _Sessions(ConnectionListener):
    """Reports each connection's outcome; the lifespan shutdown waits (bounded) for the open ones."""

    def __init__(self) -> None:
        self.open = 0
        self.idle = asyncio.Event()

    def opened(self, connection: Connection) -> None:
        self.open += 1
        self.idle.clear()

    def diagnosed(self, connection: Connection, event: Any) -> None:
        _say("diagnosed")

    def closed(self, connection: Connection) -> None:
        _say("outcome", connection.outcome)
        self.open -= 1
        if not self.open:
            self.idle.set()


_sessions = _Sessions()


@contextlib.asynccontextmanager
async def _lifespan(app: Any) -> Any:
    ws_diag_log = logging.getLogger("ws_diag")
    ws_diag_log.addHandler(_Printed())
    ws_diag_log.setLevel(logging.DEBUG)
    yield
    if _sessions.open:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_sessions.idle.wait(), 8)  # granian hands them websocket.disconnect


async def _echo(websocket: WebSocket) -> None:
    await websocket.accept()
    while True:  # Starlette raises WebSocketDisconnect when the client leaves
        await websocket.send_text(await websocket.receive_text())


async def _raw_echo(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await Starlette(lifespan=_lifespan)(scope, receive, send)
        return
    await receive()
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        await send({"type": "websocket.send", "text": message.get("text") or ""})


starlette_app = DiagnosticsMiddleware(
    Starlette(routes=[WebSocketRoute("/", _echo)], lifespan=_lifespan), listeners=[_sessions]
)
# A raw app returns on websocket.disconnect: ws_diag sees the departure with track_disconnect.
raw_app = DiagnosticsMiddleware(_raw_echo, settings=DiagSettings(track_disconnect=True), listeners=[_sessions])


# -- the tests ----------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("app", ["starlette_app", "raw_app"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_stop_counts_dropped_sessions_as_departures_quietly(app: str, sig: signal.Signals) -> None:
    """granian's stop drops the sessions (client 1006); ws_diag counts each as client_gone, diagnoses nothing and
    logs nothing above DEBUG."""
    async with run_granian(f"test_granian:{app}") as server, asyncio.timeout(WAIT_S):
        clients = [await connect(server.url) for _ in range(SESSIONS)]
        for number, ws in enumerate(clients):
            await ws.send(f"hi {number}")
            assert await ws.recv() == f"hi {number}"
        server.send_signal(sig)
        received = []
        for ws in clients:
            with pytest.raises(ConnectionClosed):
                received.append(await ws.recv())
        assert await server.wait_exit() == 0
    assert received == []  # no frame
    assert {ws.close_code for ws in clients} <= {1006, 1000}  # granian's drop (now and then its own 1000)
    # A session whose app heard the disconnect is a departure. granian may stop its worker before a
    # session's app hears of it at all (then nobody, ws_diag included, learns anything).
    outcomes = server.matching("SAW outcome")
    assert outcomes, server.log
    assert set(outcomes) == {"SAW outcome client_gone"}, server.log
    assert server.matching("SAW diagnosed") == []
    logged = server.matching("SAW log")
    assert [line for line in logged if not line.startswith("SAW log DEBUG")] == [], server.log
