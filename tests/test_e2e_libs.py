"""End to end: FastAPI websocket apps whose database (SQLAlchemy) or HTTP dependency goes down.

Real servers (hypercorn, uvicorn with websockets and wsproto), the suite's own
PostgreSQL, a real client. No probe is configured: the diagnosis has to come
from the exception the library raises, by its type or, for a plain OSError or
TimeoutError, by the library it was raised in.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re

import aiohttp
import httpx
import jsonschema
import openai
import pytest
from fastapi import FastAPI, WebSocket
from servers import SERVER_KINDS, run_server
from services import PostgresServer, SilentListener, free_port
from sqlalchemy.ext.asyncio import create_async_engine
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ws_diag import DiagnosticsMiddleware, DiagSettings
from ws_diag.wire.frame import frame_schema

CLIENT_TIMEOUT = 10


@pytest.mark.asyncio
@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_postgres_stopped_mid_session_gives_4005_by_type(
    kind: str, driver: str, postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The session's next query after PostgreSQL stops closes it with 4005 Database, diagnosed from the exception."""
    caplog.set_level(logging.INFO, logger="ws_diag")
    engine = create_async_engine(postgres.dsn.replace("postgresql://", f"postgresql+{driver}://"), pool_size=2)
    app = FastAPI()

    @app.websocket("/chat")
    async def chat(websocket: WebSocket) -> None:
        await websocket.accept()
        async with engine.connect() as conn:  # one connection per session, as a session-scoped unit of work does
            while True:
                text = await websocket.receive_text()
                value = (await conn.exec_driver_sql("SELECT 1")).scalar()
                await websocket.send_text(f"{text}:{value}")

    middleware = DiagnosticsMiddleware(app, settings=DiagSettings())
    messages: list[str] = []
    try:
        async with (
            run_server(middleware, kind) as url,
            connect(url + "/chat", open_timeout=CLIENT_TIMEOUT, close_timeout=CLIENT_TIMEOUT) as ws,
        ):
            await ws.send("hello")
            messages.append(str(await asyncio.wait_for(ws.recv(), CLIENT_TIMEOUT)))
            await postgres.astop()
            await ws.send("after the outage")
            try:
                async with asyncio.timeout(CLIENT_TIMEOUT):
                    async for message in ws:
                        messages.append(str(message))
            except ConnectionClosed:
                pass
            code = ws.close_code
    finally:
        await postgres.astart()
        await asyncio.wait_for(engine.dispose(), CLIENT_TIMEOUT)
    assert messages[0].startswith("hello:")
    frames = [json.loads(m) for m in messages[1:]]
    assert len(frames) == 1, messages
    jsonschema.validate(frames[0], frame_schema())
    assert frames[0]["error"]["component"] == "Database"
    assert code == 4005
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("diagnosis:")]
    assert len(logged) == 1, logged
    assert re.search(r"component=Database code=4005 source=exception ", logged[0]), logged[0]


@pytest.mark.asyncio
@pytest.mark.parametrize("client", ["httpx", "openai"])
@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_http_dependency_down_gives_4010_by_type(
    kind: str, client: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler whose httpx call or OpenAI SDK call is refused closes with 4010 Integration, diagnosed by type."""
    caplog.set_level(logging.INFO, logger="ws_diag")
    down = f"http://127.0.0.1:{free_port()}"
    app = FastAPI()

    @app.websocket("/chat")
    async def chat(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()
        if client == "httpx":
            async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as http:
                await http.get(f"{down}/search")
        else:
            async with openai.AsyncOpenAI(api_key="sk-test", base_url=down, max_retries=0) as llm:
                await llm.models.list()

    async with (
        run_server(DiagnosticsMiddleware(app, settings=DiagSettings()), kind) as url,
        connect(url + "/chat", open_timeout=CLIENT_TIMEOUT, close_timeout=CLIENT_TIMEOUT) as ws,
    ):
        await ws.send("hello")
        messages: list[str] = []
        try:
            async with asyncio.timeout(CLIENT_TIMEOUT):
                async for message in ws:
                    messages.append(str(message))
        except ConnectionClosed:
            pass
        code = ws.close_code
    assert len(messages) == 1, messages
    assert json.loads(messages[0])["error"]["component"] == "Integration"
    assert code == 4010
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("diagnosis:")]
    assert len(logged) == 1, logged
    assert re.search(r"component=Integration code=4010 source=exception ", logged[0]), logged[0]


async def _one_failure(url: str) -> tuple[list[str], int | None]:
    """Connect, send one message, collect what comes back until the close."""
    messages: list[str] = []
    async with connect(url, open_timeout=CLIENT_TIMEOUT, close_timeout=CLIENT_TIMEOUT) as ws:
        await ws.send("hello")
        try:
            async with asyncio.timeout(CLIENT_TIMEOUT):
                async for message in ws:
                    messages.append(str(message))
        except ConnectionClosed:
            pass
        return messages, ws.close_code


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["hypercorn", "uvicorn"])
async def test_new_connection_refused_over_asyncpg_gives_4005_by_origin(
    kind: str, postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLAlchemy over asyncpg refused a new connection (a plain ConnectionRefusedError): 4005, source exception."""
    caplog.set_level(logging.INFO, logger="ws_diag")
    engine = create_async_engine(postgres.dsn.replace("postgresql://", "postgresql+asyncpg://"))
    app = FastAPI()

    @app.websocket("/chat")
    async def chat(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    await postgres.astop()
    try:
        async with run_server(DiagnosticsMiddleware(app, settings=DiagSettings()), kind) as url:
            messages, code = await _one_failure(url + "/chat")
    finally:
        await postgres.astart()
        await asyncio.wait_for(engine.dispose(), CLIENT_TIMEOUT)
    assert len(messages) == 1, messages
    error = json.loads(messages[0])["error"]
    assert (error["component"], error["source"], error["retryable"]) == ("Database", "exception", True)
    assert code == 4005
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("diagnosis:")]
    assert len(logged) == 1, logged
    assert re.search(r"component=Database code=4005 source=exception ", logged[0]), logged[0]
    assert "ConnectionRefusedError" in caplog.text  # the plain OSError, logged unchanged


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["hypercorn", "uvicorn"])
async def test_aiohttp_total_timeout_gives_4010_by_origin(
    kind: str, silent_listener: SilentListener, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp's ClientTimeout(total=...) against a black hole (a plain TimeoutError): 4010, source exception."""
    caplog.set_level(logging.INFO, logger="ws_diag")
    app = FastAPI()

    @app.websocket("/chat")
    async def chat(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()
        limits = aiohttp.ClientTimeout(total=0.3)
        async with aiohttp.ClientSession(timeout=limits) as session, session.get(silent_listener.url("http", "/")):
            pass

    async with run_server(DiagnosticsMiddleware(app, settings=DiagSettings()), kind) as url:
        messages, code = await _one_failure(url + "/chat")
    assert len(messages) == 1, messages
    error = json.loads(messages[0])["error"]
    assert (error["component"], error["source"], error["retryable"]) == ("Integration", "exception", True)
    assert code == 4010
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("diagnosis:")]
    assert len(logged) == 1, logged
    assert re.search(r"component=Integration code=4010 source=exception ", logged[0]), logged[0]
