"""End to end: readiness and liveness of a FastAPI app on a SQLAlchemy engine while PostgreSQL stops and restarts.

Real servers, the suite's own PostgreSQL, a real websocket client and a real
HTTP client (httpx). The database probe is a ``SQLAlchemyProbe`` on the app's own
engine; readiness tolerates one failed run (``failure_threshold=2``).
"""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest
from fastapi import FastAPI, WebSocket
from servers import run_server
from services import PostgresServer
from sqlalchemy.ext.asyncio import create_async_engine
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ws_diag import DiagnosticsMiddleware, DiagSettings
from ws_diag.health import HealthChecker, StatusChange
from ws_diag.health.probes import SQLAlchemyProbe

CLIENT_TIMEOUT = 10
THRESHOLD = 2
# How many readiness polls recovery may take after PostgreSQL answers again (each bounded).
MAX_POLLS = 50


async def echo(ws: ClientConnection, text: str) -> str:
    """Send one message and return the answer."""
    await ws.send(text)
    return str(await asyncio.wait_for(ws.recv(), CLIENT_TIMEOUT))


async def closing_frame(ws: ClientConnection, text: str) -> tuple[dict[str, object], int | None]:
    """Send one message on a session whose query will fail; the JSON frame and the close code."""
    await ws.send(text)
    messages: list[str] = []
    try:
        async with asyncio.timeout(CLIENT_TIMEOUT):
            async for message in ws:
                messages.append(str(message))
    except ConnectionClosed:
        pass
    assert len(messages) == 1, messages
    return json.loads(messages[0]), ws.close_code


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["hypercorn", "uvicorn"])
async def test_readiness_follows_postgres_and_liveness_stays(
    kind: str, postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL stops with sessions open: readiness 503 on the threshold's run, liveness 200; both recover."""
    caplog.set_level(logging.INFO, logger="ws_diag")
    engine = create_async_engine(postgres.dsn.replace("postgresql://", "postgresql+asyncpg://"), pool_size=4)
    app = FastAPI()

    @app.websocket("/chat")
    async def chat(websocket: WebSocket) -> None:
        await websocket.accept()
        async with engine.connect() as conn:
            while True:
                text = await websocket.receive_text()
                value = (await conn.exec_driver_sql("SELECT 1")).scalar()
                await websocket.send_text(f"{text}:{value}")

    settings = DiagSettings(
        liveness_path="/livez",
        readiness_path="/readyz",
        cache_ttl=0,  # every readiness request is one probe run: the threshold counts them
        failure_threshold=THRESHOLD,
        probe_timeout=5,
    )
    changes: list[StatusChange] = []
    checker = HealthChecker.from_settings(
        settings, [SQLAlchemyProbe(engine, timeout=5)], on_status_change=[changes.append]
    )
    middleware = DiagnosticsMiddleware(app, settings=settings, checker=checker)
    try:
        async with (
            run_server(middleware, kind) as url,
            httpx.AsyncClient(base_url=url.replace("ws://", "http://", 1), timeout=CLIENT_TIMEOUT) as http,
        ):

            async def probe_both() -> tuple[int, int]:
                return (await http.get("/readyz")).status_code, (await http.get("/livez")).status_code

            async with (
                connect(url + "/chat", open_timeout=CLIENT_TIMEOUT, close_timeout=CLIENT_TIMEOUT) as first,
                connect(url + "/chat", open_timeout=CLIENT_TIMEOUT, close_timeout=CLIENT_TIMEOUT) as second,
            ):
                assert await echo(first, "a") == "a:1"
                assert await echo(second, "b") == "b:1"
                assert await probe_both() == (200, 200)

                await postgres.astop()
                frame, code = await closing_frame(first, "during the outage")
                assert (frame["error"]["component"], frame["error"]["source"], code) == ("Database", "exception", 4005)  # type: ignore[index]
                # The first failed run is tolerated (warn, 200); the threshold's run turns readiness 503.
                outage = [await probe_both() for _ in range(THRESHOLD + 1)]
                assert outage == [(200, 200), (503, 200), (503, 200)]
                assert (await http.get("/readyz")).json() == {"status": "fail"}
                frame, code = await closing_frame(second, "still down")
                assert (frame["error"]["component"], code) == ("Database", 4005)  # type: ignore[index]

            await postgres.astart()
            statuses = []
            for _ in range(MAX_POLLS):
                statuses.append(await probe_both())
                if statuses[-1] == (200, 200):
                    break
                await asyncio.sleep(0.1)  # between polls of a bounded loop, not a readiness wait
            assert statuses[-1] == (200, 200), statuses
            assert all(live == 200 for _, live in statuses)
            async with connect(url + "/chat", open_timeout=CLIENT_TIMEOUT, close_timeout=CLIENT_TIMEOUT) as again:
                assert await echo(again, "back") == "back:1"
            assert await probe_both() == (200, 200)
    finally:
        await postgres.astart()
        await asyncio.wait_for(engine.dispose(), CLIENT_TIMEOUT)
    lines = [r.getMessage() for r in caplog.records if getattr(r, "ws_diag_event", None) == "status_change"]
    assert lines == ["component database: healthy -> failed", "component database: failed -> healthy"]
    assert [(c.previous, c.current, c.result.failures) for c in changes] == [
        ("healthy", "failed", THRESHOLD),
        ("failed", "healthy", 0),
    ]
