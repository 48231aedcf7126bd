"""The test client users write their tests with: Starlette's and FastAPI's ``TestClient``.

``TestClient`` closes its message stream when the app raises after accept and re-raises the
exception as ``websocket_connect`` exits, so the frame and close ws_diag sent before re-raising
are lost to the test (pinned in ``tests/test_server_facts.py``). With ``reraise=False`` ws_diag
logs an exception it diagnosed and delivered (as the server would) instead of raising it into
the server, and the test reads the frame and the close code.
"""

from __future__ import annotations

import logging

import pytest
import redis.exceptions
from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from ws_diag import DiagnosticsMiddleware, DiagSettings

app = FastAPI()


@app.websocket("/ws")
async def live_prices(websocket: WebSocket) -> None:
    """Accept, then lose Redis."""
    await websocket.accept()
    raise redis.exceptions.ConnectionError("Error 111 connecting to localhost:6379. Connection refused.")


@app.websocket("/before-accept")
async def refused(websocket: WebSocket) -> None:
    """Lose Redis before accept."""
    raise redis.exceptions.ConnectionError("Error 111 connecting to localhost:6379. Connection refused.")


def test_failure_code_and_frame_reach_the_test(caplog: pytest.LogCaptureFixture) -> None:
    """With reraise=False the test reads the diagnosis and the close code; the exception is logged once at ERROR
    on ws_diag with its traceback, not raised."""
    caplog.set_level(logging.INFO, logger="ws_diag")
    client = TestClient(DiagnosticsMiddleware(app, settings=DiagSettings(reraise=False)))

    with client.websocket_connect("/ws") as ws:
        frame = ws.receive_json()  # the diagnosis
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == 4007 and frame["error"]["component"] == "Redis"  # noqa: PT018 - the documented pattern

    logged = [r for r in caplog.records if r.exc_info is not None]
    assert len(logged) == 1
    (record,) = logged
    assert (record.name, record.levelname, getattr(record, "ws_diag_event", None)) == (
        "ws_diag",
        "ERROR",
        "app_exception",
    )
    assert record.exc_info is not None
    assert type(record.exc_info[1]) is redis.exceptions.ConnectionError
    assert getattr(record, "incident_id", None) == frame["error"]["incident_id"]


def test_reraise_by_default_loses_the_frame_to_the_test() -> None:
    """By default (reraise=True) the app's exception reaches the server: TestClient re-raises it as the block
    exits, whatever the test read."""
    client = TestClient(DiagnosticsMiddleware(app))
    with pytest.raises(redis.exceptions.ConnectionError), client.websocket_connect("/ws") as ws:
        ws.receive_json()


def test_undelivered_failures_are_still_raised() -> None:
    """What ws_diag did not deliver (here: pre-accept failures left to the server) is raised with reraise=False."""
    settings = DiagSettings(reraise=False, preaccept="passthrough")
    client = TestClient(DiagnosticsMiddleware(app, settings=settings))
    with pytest.raises(redis.exceptions.ConnectionError), client.websocket_connect("/before-accept"):
        pass


def test_preaccept_failure_reaches_the_test() -> None:
    """A failure before accept, delivered as accept + frame + close (the default), reaches the test too."""
    client = TestClient(DiagnosticsMiddleware(app, settings=DiagSettings(reraise=False)))
    with client.websocket_connect("/before-accept") as ws:
        frame = ws.receive_json()
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == 4007
    assert frame["error"]["component"] == "Redis"
