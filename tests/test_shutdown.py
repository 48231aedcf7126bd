"""Deploys are not failures: a graceful stop tells open sessions 1012 Service Restart (issue 10, section 3).

Sessions are held open by real clients while the real server is stopped
gracefully. Where the server lets the app speak first (hypercorn cancels the
session's task after its graceful timeout; daphne too), ws_diag sends a frame
(source ``shutdown``, retryable, a short ``retry_after_ms``) and 1012; uvicorn
sends its own 1012 before the app hears of the shutdown, so there the 1012
alone is the signal. Never a ``diagnosis:`` line, never a failure.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from servers import SERVER_KINDS, run_daphne, run_server
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from clients import CLIENT_TIMEOUT, Session
from ws_diag import DiagnosticsMiddleware, DiagSettings
from ws_diag.lifecycle import Connection, ConnectionListener

pytestmark = pytest.mark.asyncio

SESSIONS = 3


async def chat(scope: Any, receive: Any, send: Any) -> None:
    """A raw ASGI chat session: accept, then echo until the client leaves (ends quietly)."""
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        await send({"type": "websocket.send", "text": message.get("text") or ""})


class Outcomes(ConnectionListener):
    """Records how connections ended, and whether anything was diagnosed."""

    def __init__(self) -> None:
        self.outcomes: list[str] = []
        self.diagnoses = 0

    def diagnosed(self, connection: Connection, event: Any) -> None:
        self.diagnoses += 1

    def closed(self, connection: Connection) -> None:
        self.outcomes.append(connection.outcome)


async def hold(url: str, live: asyncio.Queue[None]) -> Session:
    """One client session that stays open until the server closes it; ``live`` hears when its echo came back."""
    messages: list[str] = []
    async with connect(url, close_timeout=CLIENT_TIMEOUT) as ws:
        await ws.send("hi")
        try:
            while True:
                message = await ws.recv()
                if not messages:
                    live.put_nowait(None)
                messages.append(message if isinstance(message, str) else message.decode())
        except ConnectionClosed:
            pass
        return Session(messages, ws.close_code, ws.close_reason)


async def hold_sessions(url: str) -> list[asyncio.Task[Session]]:
    """SESSIONS live sessions (each has had its echo), held open by their clients."""
    live: asyncio.Queue[None] = asyncio.Queue()
    clients = [asyncio.create_task(hold(url, live)) for _ in range(SESSIONS)]
    async with asyncio.timeout(CLIENT_TIMEOUT):
        for _ in range(SESSIONS):
            await live.get()
    return clients


def shutdown_frame(session: Session) -> dict[str, Any]:
    """The session's frame, which must say Service Restart."""
    frame = session.frame
    assert (frame["code"], frame["component"], frame["source"]) == (1012, "Service Restart", "shutdown")
    assert frame["retryable"] is True
    assert session.reason == f"Service Restart (incident {frame['incident_id']})"  # no "failure": a deploy
    return frame


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_graceful_stop_tells_open_sessions_to_come_back(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """Sessions open during a graceful stop get 1012, with the frame where the server lets the app speak first."""
    caplog.set_level(logging.DEBUG, logger="ws_diag")
    outcomes = Outcomes()
    app = DiagnosticsMiddleware(chat, settings=DiagSettings(retry_after=0.5), listeners=[outcomes])
    async with run_server(app, kind, shutdown_timeout=3.0) as url:
        clients = await hold_sessions(url)
    sessions = await asyncio.wait_for(asyncio.gather(*clients), CLIENT_TIMEOUT)
    assert [s.code for s in sessions] == [1012] * SESSIONS
    if kind == "hypercorn":  # it cancels the sessions after its graceful timeout: the app speaks first
        assert [shutdown_frame(s)["retry_after_ms"] for s in sessions] == [500] * SESSIONS
        assert outcomes.outcomes == ["restart"] * SESSIONS
    else:  # uvicorn closes with 1012 itself before the app hears of it
        assert all(s.frames == [] for s in sessions)
        assert len(outcomes.outcomes) == SESSIONS
        assert "restart" not in outcomes.outcomes
    assert outcomes.diagnoses == 0
    ws_diag_records = [r for r in caplog.records if r.name.startswith("ws_diag")]
    assert not [r for r in ws_diag_records if getattr(r, "ws_diag_event", None) == "diagnosis"]
    assert not [r for r in ws_diag_records if r.levelno >= logging.WARNING]


daphne_app = DiagnosticsMiddleware(chat, settings=DiagSettings())


async def test_daphne_stop_drops_sessions_before_the_app_hears() -> None:
    """Fact (daphne 4.2): on SIGTERM its kill_all_applications raises KeyError, so apps are never cancelled and
    open sessions are dropped (1006): ws_diag cannot speak first there, and reports no failure either."""
    async with run_daphne("test_shutdown:daphne_app", args=["-v", "2"]) as daphne:
        clients = await hold_sessions(daphne.url)
    sessions = await asyncio.wait_for(asyncio.gather(*clients), CLIENT_TIMEOUT)
    assert [s.code for s in sessions] == [1006] * SESSIONS
    assert all(s.frames == [] for s in sessions)
    assert "KeyError: 'application_instance'" in daphne.log
    assert "diagnosis:" not in daphne.log
