"""Set-up mistakes get a clear answer: lazy construction under uvicorn's lifespan modes, settings as a mapping.

Starlette's ``add_middleware`` builds the middleware on the first event it gets,
under uvicorn the lifespan startup. With ``lifespan="auto"`` uvicorn swallows an
error raised there and starts anyway; these tests run a real uvicorn and check
that ws_diag's own ERROR record names the field, and that ``lifespan="on"``
(what the README recommends) refuses to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from servers import run_server
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ws_diag import DiagnosticsMiddleware, WebSocketComponentError

pytestmark = pytest.mark.asyncio

TIMEOUT = 10
# uvicorn's exit status when the lifespan startup fails (uvicorn.config.STARTUP_FAILURE).
STARTUP_FAILURE = 3


async def database_down(websocket: WebSocket) -> None:
    """A Starlette endpoint whose database is down."""
    await websocket.accept()
    await websocket.receive_text()
    raise WebSocketComponentError.database_failure("Database session factory unavailable")


def starlette_app(**options: Any) -> Starlette:
    """A Starlette app with ws_diag added the lazy way, ``app.add_middleware(DiagnosticsMiddleware)``."""
    app = Starlette(routes=[WebSocketRoute("/ws", database_down)])
    app.add_middleware(DiagnosticsMiddleware, **options)
    return app


class Uvicorn:
    """A uvicorn server task on a pre-bound loopback socket; ``exit_code`` once it has ended."""

    def __init__(self, app: Any, lifespan: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        config = uvicorn.Config(app, lifespan=lifespan, log_config=None, log_level="info", access_log=False)  # type: ignore[arg-type]
        self.server = uvicorn.Server(config)
        self.exit_code: int | str | None = None
        self.task = asyncio.create_task(self._serve())

    async def _serve(self) -> None:
        # uvicorn calls sys.exit() when the startup fails: keep it inside this task.
        try:
            await self.server.serve(sockets=[self.sock])
        except SystemExit as exc:
            self.exit_code = exc.code

    async def listening(self) -> bool:
        """Poll until the server accepts connections (True) or its task ended (False), bounded."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while loop.time() < deadline:
            if self.task.done():
                return False
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                return True
            await asyncio.sleep(0.01)
        msg = f"uvicorn neither listened nor ended within {TIMEOUT} s"
        raise AssertionError(msg)

    async def stop(self) -> None:
        """Ask the server to exit and wait for it, bounded."""
        self.server.should_exit = True
        await asyncio.wait({self.task}, timeout=TIMEOUT)
        if not self.task.done():
            self.task.cancel()
            await asyncio.wait({self.task}, timeout=TIMEOUT)
        self.sock.close()


@contextlib.asynccontextmanager
async def uvicorn_server(app: Any, lifespan: str) -> AsyncIterator[Uvicorn]:
    """Run ``app`` under uvicorn with the given lifespan mode; stop it on exit."""
    server = Uvicorn(app, lifespan)
    try:
        yield server
    finally:
        await server.stop()


async def http_get(port: int, path: str) -> bytes:
    """Raw HTTP/1.1 GET; the whole response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    response = await asyncio.wait_for(reader.read(), TIMEOUT)
    writer.close()
    await writer.wait_closed()
    return response


def ws_diag_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The messages of ERROR records on the ws_diag logger."""
    return [r.getMessage() for r in caplog.records if r.name == "ws_diag" and r.levelno >= logging.ERROR]


async def test_invalid_environment_under_lifespan_auto_is_logged_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn's lifespan "auto" swallows the error and serves 500s; ws_diag's ERROR names the field and variable."""
    monkeypatch.setenv("WS_DIAG_PROBE_TIMEOUT", "-1")
    caplog.set_level(logging.INFO)
    async with uvicorn_server(starlette_app(), "auto") as server:
        assert await server.listening()  # the failure that must not go unnoticed: it started anyway
        response = await http_get(server.port, "/")
    assert response.startswith(b"HTTP/1.1 500")
    errors = ws_diag_errors(caplog)
    assert errors
    assert all("WS_DIAG_PROBE_TIMEOUT (probe_timeout)" in message for message in errors)
    # ws_diag's record comes before uvicorn's "lifespan unsupported" note, which is all uvicorn says.
    uvicorn_notes = [r.getMessage() for r in caplog.records if r.name == "uvicorn.error"]
    assert any("unsupported" in note for note in uvicorn_notes)


async def test_invalid_environment_under_lifespan_on_stops_the_server(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With lifespan "on" (the README's advice) the server refuses to start, and ws_diag's ERROR names the field."""
    monkeypatch.setenv("WS_DIAG_PROBE_TIMEOUT", "-1")
    caplog.set_level(logging.INFO)
    async with uvicorn_server(starlette_app(), "on") as server:
        assert not await server.listening()
    assert server.exit_code == STARTUP_FAILURE
    assert any("WS_DIAG_PROBE_TIMEOUT (probe_timeout)" in message for message in ws_diag_errors(caplog))


async def test_redis_url_without_scheme_under_lifespan_auto_is_logged_without_password(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """WS_DIAG_REDIS_URL=:pw@localhost:6379 fails at startup, not at the first probe: ERROR naming it, no password."""
    monkeypatch.setenv("WS_DIAG_REDIS_URL", ":Pa55-lifespan@localhost:6379")
    caplog.set_level(logging.INFO)
    async with uvicorn_server(starlette_app(), "auto") as server:
        assert await server.listening()
        response = await http_get(server.port, "/")
    assert response.startswith(b"HTTP/1.1 500")
    invalid = [r for r in caplog.records if getattr(r, "ws_diag_event", None) == "settings_invalid"]
    assert invalid
    assert all(r.name == "ws_diag" and r.levelno == logging.ERROR for r in invalid)
    assert all("WS_DIAG_REDIS_URL (redis_url): needs a redis://" in r.getMessage() for r in invalid)
    assert "Pa55-lifespan" not in caplog.text


async def test_invalid_mapping_under_lifespan_auto_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """add_middleware(DiagnosticsMiddleware, settings={...}) with a bad value: the ERROR names settings['field']."""
    caplog.set_level(logging.INFO)
    async with uvicorn_server(starlette_app(settings={"send_timeout": 0}), "auto") as server:
        assert await server.listening()
    assert any("settings['send_timeout']" in message for message in ws_diag_errors(caplog))


async def test_settings_given_as_a_mapping_take_effect_end_to_end() -> None:
    """add_middleware(DiagnosticsMiddleware, settings={"code_scheme": "legacy"}): a real client sees legacy codes."""
    app = starlette_app(settings={"code_scheme": "legacy"})
    async with (
        run_server(app, "uvicorn-wsproto") as url,
        connect(f"{url}/ws", open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws,
    ):
        await ws.send("hi")
        frame = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        with contextlib.suppress(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert frame["error"]["code"] == 1005  # the legacy frame code of Database
    assert ws.close_code == 4005  # 1005 cannot be sent: the wire carries the private code
