"""The test infrastructure itself: the server runner (``ws_diag.testing.servers``) and private services."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from servers import KINDS, SERVER_KINDS, ServerError, run_daphne, run_server
from services import PostgresServer, RedisServer, SilentListener, free_port
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

Scope = dict[str, Any]
Message = dict[str, Any]


async def echo_app(scope: Scope, receive: Any, send: Any) -> None:
    """Echo text frames; close with 4001 "bye" when told "close"; raise when told "boom"."""
    if scope["type"] != "websocket":  # hypercorn always sends "lifespan"; ignore it
        return
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        message: Message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text == "close":
            await send({"type": "websocket.close", "code": 4001, "reason": "bye"})
            return
        if text == "boom":
            raise RuntimeError("boom from echo_app")
        await send({"type": "websocket.send", "text": text})


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_server_echoes_and_closes(kind: str) -> None:
    """Each server kind serves the echo app and relays the app's close code."""
    async with run_server(echo_app, kind) as url, connect(f"{url}/ws", open_timeout=5) as ws:
        await ws.send("hello")
        assert await asyncio.wait_for(ws.recv(), 5) == "hello"
        await ws.send("close")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert (ws.close_code, ws.close_reason) == (4001, "bye")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("kind", "logger", "message", "close_code"),
    [
        ("hypercorn", "hypercorn.error", "Error in ASGI Framework", 1011),
        ("uvicorn", "uvicorn.error", "Exception in ASGI application", 1006),
        ("uvicorn-websockets", "uvicorn.error", "Exception in ASGI application", 1006),
        ("uvicorn-wsproto", "uvicorn.error", "Exception in ASGI application", 1006),
    ],
)
async def test_server_logs_app_exception(
    kind: str, logger: str, message: str, close_code: int, caplog: pytest.LogCaptureFixture
) -> None:
    """An app exception reaches caplog through the server's logger; the client sees a close."""
    async with run_server(echo_app, kind) as url, connect(f"{url}/ws", open_timeout=5) as ws:
        await ws.send("boom")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == close_code
    records = [r for r in caplog.records if r.name == logger and message in r.getMessage()]
    assert records, caplog.text
    assert records[0].exc_info is not None
    assert "boom from echo_app" in str(records[0].exc_info[1])


# The protocol object each kind serves a connection with (the owner of the app's ``send``).
IMPLEMENTATIONS = {
    "hypercorn": "hypercorn.protocol.ws_stream.WSStream",
    "uvicorn": "uvicorn.protocols.websockets.websockets_sansio_impl.WebSocketsSansIOProtocol",
    "uvicorn-wsproto": "uvicorn.protocols.websockets.wsproto_impl.WSProtocol",
    "uvicorn-websockets": "uvicorn.protocols.websockets.websockets_impl.WebSocketProtocol",
    "uvicorn-websockets-sansio": "uvicorn.protocols.websockets.websockets_sansio_impl.WebSocketsSansIOProtocol",
    "granian": "granian._granian.ASGIWebsocketProtocol",
}


async def served_by(kind: str) -> str:
    """The class of the protocol object that serves one websocket connection under ``kind``."""
    seen: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        owner = type(send.__self__)
        seen.append(f"{owner.__module__}.{owner.__qualname__}")
        await send({"type": "websocket.close", "code": 1000})

    async with run_server(app, kind) as url:
        with pytest.raises(InvalidStatus):  # closed before accept: HTTP 403
            await connect(f"{url}/ws", open_timeout=5)
    (implementation,) = seen
    return implementation


@pytest.mark.asyncio
async def test_server_matrix() -> None:
    """The matrix serves through hypercorn and each of uvicorn's three websocket implementations (its default is
    websockets-sansio), once each; sansio by name, granian and daphne run on demand."""
    served = {kind: await served_by(kind) for kind in KINDS if kind != "daphne"}  # daphne: a subprocess, below
    assert served == IMPLEMENTATIONS
    matrix = [served[kind] for kind in SERVER_KINDS]
    assert len(set(matrix)) == len(matrix) == 4
    assert set(matrix) == set(served.values()) - {served["granian"]}
    assert set(KINDS) == {*served, "daphne"}


@pytest.mark.asyncio
async def test_run_server_rejects_unknown_kind() -> None:
    """An unknown server kind is a ValueError naming the known ones, not a silent default."""
    with pytest.raises(ValueError, match=r"unknown server kind 'gunicorn'.*'daphne'"):
        async with run_server(echo_app, "gunicorn"):
            pass


@pytest.mark.asyncio
async def test_run_server_rejects_unknown_hypercorn_option() -> None:
    """An option hypercorn does not have is a ValueError naming it, not an attribute silently set."""
    with pytest.raises(ValueError, match="'no_such_setting'"):
        async with run_server(echo_app, "hypercorn", options={"no_such_setting": 1}):
            pass


@pytest.mark.asyncio
async def test_daphne_needs_an_import_string() -> None:
    """daphne runs in a subprocess: an app object is a TypeError that says an import string is needed."""
    with pytest.raises(TypeError, match="import string 'module:attribute'"):
        async with run_server(echo_app, "daphne"):
            pass


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["uvicorn", "daphne"])
async def test_run_server_serves_an_import_string(kind: str) -> None:
    """An import string is served in-process (uvicorn) and by a daphne subprocess alike."""
    async with run_server(f"{__name__}:echo_app", kind) as url, connect(f"{url}/ws", open_timeout=5) as ws:
        await ws.send("hello")
        assert await asyncio.wait_for(ws.recv(), 5) == "hello"


@pytest.mark.asyncio
async def test_run_daphne_reports_an_app_that_does_not_import() -> None:
    """daphne exiting before it listens is a ServerError carrying daphne's log."""
    with pytest.raises(ServerError, match="no_such_module"):
        async with run_daphne("no_such_module:app", startup_timeout=10):
            pass


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["uvicorn", "uvicorn-wsproto", "uvicorn-websockets", "uvicorn-websockets-sansio"])
async def test_accepted_connections_have_tcp_nodelay(kind: str) -> None:
    """Accepted connections have TCP_NODELAY, as under ``uvicorn --host/--port`` (no Nagle delay on a close)."""
    nodelay: list[int] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        sock = send.__self__.transport.get_extra_info("socket")  # uvicorn's protocol object
        nodelay.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        await send({"type": "websocket.close", "code": 1000})

    async with run_server(app, kind) as url:
        with pytest.raises(InvalidStatus):  # closed before accept: HTTP 403
            await connect(f"{url}/ws", open_timeout=5)
    assert nodelay == [1]


def test_free_port_is_bindable() -> None:
    """free_port returns a port that can be bound right away."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))


@pytest.mark.asyncio
async def test_postgres_password_dsn(postgres: PostgresServer) -> None:
    """The password DSN answers SELECT 1 on a private port."""
    assert postgres.port != 5432
    conn = await asyncpg.connect(postgres.dsn, timeout=5)
    try:
        assert await conn.fetchval("SELECT 1") == 1
        assert await conn.fetchval("SELECT current_user") == PostgresServer.user
    finally:
        await conn.close()


@pytest.mark.asyncio
async def test_postgres_rejects_wrong_password(postgres: PostgresServer) -> None:
    """The role's password is really checked."""
    bad = postgres.dsn.replace(PostgresServer.password, "wrong-pw")
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(bad, timeout=5)


@pytest.mark.asyncio
async def test_postgres_stop_and_start(postgres: PostgresServer) -> None:
    """stop refuses connections; start brings it back on the same port with its data."""
    port = postgres.port
    await postgres.astop()
    assert not postgres.running
    with pytest.raises(ConnectionRefusedError):
        await asyncpg.connect(postgres.dsn, timeout=2)
    await postgres.astart()
    assert postgres.port == port
    conn = await asyncpg.connect(postgres.dsn, timeout=5)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


@pytest.mark.asyncio
async def test_postgres_freeze_and_thaw(postgres: PostgresServer) -> None:
    """freeze hangs new and existing connections (backends too); thaw revives them."""
    conn = await asyncpg.connect(postgres.dsn, timeout=5)
    try:
        postgres.freeze()
        assert postgres.frozen
        with pytest.raises(TimeoutError):
            await asyncpg.connect(postgres.dsn, timeout=0.5)
        with pytest.raises(TimeoutError):  # the backend of `conn` is stopped too
            await conn.fetchval("SELECT 1", timeout=0.5)
        postgres.thaw()
        assert await conn.fetchval("SELECT 2", timeout=5) == 2
    finally:
        postgres.thaw()
        await conn.close(timeout=5)


@pytest.mark.asyncio
async def test_postgres_kill_leaves_no_processes(postgres: PostgresServer) -> None:
    """kill drops connections and reaps the postmaster and its backends; start recovers."""
    conn = await asyncpg.connect(postgres.dsn, timeout=5)
    try:
        tree = postgres._tree()
        assert len(tree) > 1  # postmaster + backends/aux processes
        await postgres.akill()
        assert not any(_alive(pid) for pid in tree)
        with pytest.raises((asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)):
            await conn.fetchval("SELECT 1", timeout=5)
    finally:
        conn.terminate()
    await postgres.astart()
    conn = await asyncpg.connect(postgres.dsn, timeout=5)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


def test_postgres_ensure_running_heals(postgres: PostgresServer) -> None:
    """ensure_running thaws a frozen server and restarts a stopped one."""
    postgres.freeze()
    postgres.ensure_running()
    assert postgres.running
    assert not postgres.frozen
    postgres.stop()
    postgres.ensure_running()
    assert postgres.running


@pytest.mark.asyncio
async def test_redis_ping_kill_start(redis: RedisServer) -> None:
    """PING works; after kill it fails; after start it works again on the same port."""
    assert redis.port != 6379
    port = redis.port
    client = redis_client(redis.url)
    try:
        assert await client.ping()
        await redis.akill()
        with pytest.raises(REDIS_ERRORS):
            await client.ping()
        await redis.astart()
        assert redis.port == port
        assert await client.ping()
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_redis_freeze_and_thaw(redis: RedisServer) -> None:
    """A frozen Redis times out; a thawed one answers."""
    client = redis_client(redis.url)
    try:
        assert await client.ping()
        redis.freeze()
        with pytest.raises(REDIS_ERRORS):
            await client.ping()
        redis.thaw()
        assert await client.ping()
    finally:
        redis.thaw()
        await client.aclose()


def redis_client(url: str) -> aioredis.Redis:
    """A client that fails fast instead of retrying."""
    return aioredis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))


REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError)


@pytest.mark.asyncio
async def test_silent_listener_accepts_and_never_answers(silent_listener: SilentListener) -> None:
    """A connection to the silent listener opens, and a read times out."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", silent_listener.port), 5)
    try:
        writer.write(b"hello?\r\n")
        await writer.drain()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.3)
        assert silent_listener.accepted == 1
    finally:
        writer.close()
        await writer.wait_closed()
    assert silent_listener.ws_url == f"ws://127.0.0.1:{silent_listener.port}"


def test_silent_listener_closes_cleanly() -> None:
    """close() with open client connections frees the port and the thread."""
    with SilentListener() as listener, socket.create_connection(("127.0.0.1", listener.port), 5):
        pass
    assert not listener._thread.is_alive()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", listener.port))
