"""ws_diag under trio: ``hypercorn --worker-class trio`` with a real client (issue 18, item 1).

The app (tests/trio_apps.py: Starlette behind ws_diag) runs in hypercorn's trio
worker, started as users start it (``python -m hypercorn --worker-class trio``) in
a subprocess: each test gets its own trio run, and this test process stays asyncio.
The same behaviour as under asyncio: frame and component code by exception type and
by a probe, health and readiness endpoints, the background refresh, Service Restart
on a graceful stop, the closing 1000. The asyncio-only probes (asyncpg, redis-py's
asyncio client) are not run under trio: one ERROR line each, and they never fail a
request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.exceptions
import sniffio
from servers import free_port
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from clients import CLIENT_TIMEOUT, Session, talk
from ws_diag import DiagnosticsMiddleware

TESTS = Path(__file__).parent
STARTUP_S = 30.0
STOP_S = 20.0


@dataclass
class TrioServer:
    """A running ``hypercorn --worker-class trio`` and where its log goes."""

    url: str
    http: str
    log: Path
    process: subprocess.Popen[bytes]

    def lines(self) -> list[str]:
        """The server's stderr so far (hypercorn's and ws_diag's log lines)."""
        return self.log.read_text(errors="replace").splitlines()


def _read(log: Path) -> str:
    return log.read_text(errors="replace")


async def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_S
    while loop.time() < deadline:
        if process.poll() is not None:
            pytest.fail(f"hypercorn exited with {process.returncode}:\n{_read(log)}")
        with contextlib.suppress(OSError, TimeoutError):
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 0.5)
            writer.close()
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"hypercorn did not listen within {STARTUP_S}s:\n{_read(log)}")


def _start(command: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as stderr:
        return subprocess.Popen(command, env=env, stdout=stderr, stderr=stderr, cwd=cwd)


@contextlib.asynccontextmanager
async def hypercorn_trio(tmp_path: Path, app: str = "trio_apps:app") -> AsyncIterator[TrioServer]:
    """``python -m hypercorn --worker-class trio`` serving ``app`` on a free port; stopped with SIGTERM."""
    port = free_port()
    log = tmp_path / "hypercorn.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        "TRIO_APPS_DOWN": str(tmp_path / "database-down"),
    }
    command = [
        sys.executable,
        "-m",
        "hypercorn",
        "--worker-class",
        "trio",
        "--bind",
        f"127.0.0.1:{port}",
        "--graceful-timeout",
        "1",
        app,
    ]
    process = _start(command, env, log, tmp_path)
    try:
        await _wait_listening(port, process, log)
        yield TrioServer(f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}", log, process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, STOP_S)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait, STOP_S)


def _no_fallback(server: TrioServer) -> None:
    lines = server.lines()
    assert not [line for line in lines if "could not diagnose" in line or "no running event loop" in line], lines


@pytest.mark.asyncio
async def test_exception_type_gives_frame_and_code(tmp_path: Path) -> None:
    """A redis ConnectionError after accept: the Redis frame and 4007 under trio."""
    async with hypercorn_trio(tmp_path) as server:
        session = await talk(server.url + "/ws/redis")
        _no_fallback(server)
    assert session.code == 4007
    assert session.frame["component"] == "Redis"
    assert session.frame["source"] == "exception"


@pytest.mark.asyncio
async def test_probe_names_the_component(tmp_path: Path) -> None:
    """A plain RuntimeError while the (threaded) database probe fails: 4005 from the probe."""
    async with hypercorn_trio(tmp_path) as server:
        (tmp_path / "database-down").touch()
        session = await talk(server.url + "/ws/broken")
        _no_fallback(server)
    assert session.code == 4005
    assert session.frame["component"] == "Database"
    assert session.frame["source"] == "probe"


@pytest.mark.asyncio
async def test_nothing_to_blame_gives_generic(tmp_path: Path) -> None:
    """A plain RuntimeError with every probe healthy: a Generic frame and 1011, not hypercorn's bare 1011."""
    async with hypercorn_trio(tmp_path) as server:
        session = await talk(server.url + "/ws/broken")
        _no_fallback(server)
    assert session.code == 1011
    assert session.frame["component"] == "Generic Internal"


@pytest.mark.asyncio
async def test_health_and_readiness_answer(tmp_path: Path) -> None:
    """/health and /ready answer 200 while healthy and 503 while the database probe fails; /live stays 200."""
    async with hypercorn_trio(tmp_path) as server, httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        healthy, ready = await http.get("/health"), await http.get("/ready")
        (tmp_path / "database-down").touch()
        sick, unready, live = await http.get("/health"), await http.get("/ready"), await http.get("/live")
    assert (healthy.status_code, ready.status_code) == (200, 200)
    assert (sick.status_code, unready.status_code, live.status_code) == (503, 503, 200)
    assert set(healthy.json()["component_details"]) == {"database", "queue"}
    assert sick.json()["failed_components"] == ["database"]


@pytest.mark.asyncio
async def test_asyncio_only_probes_are_skipped_with_one_error_line(tmp_path: Path) -> None:
    """asyncpg and redis-py probes are not run under trio: one ERROR line each, and readiness stays 200."""
    async with hypercorn_trio(tmp_path) as server, httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        statuses = [(await http.get("/ready")).status_code for _ in range(3)]
        lines = server.lines()
    assert statuses == [200, 200, 200]
    for name in ("postgres", "redis"):
        said = [line for line in lines if f"probe {name!r}" in line and "needs asyncio" in line]
        assert len(said) == 1, lines


@pytest.mark.asyncio
async def test_refresh_interval_keeps_healthy_requests_healthy(tmp_path: Path) -> None:
    """With refresh_interval set, handshakes, messages and HTTP answer normally; the refresh sees an outage."""
    async with hypercorn_trio(tmp_path, "trio_apps:refreshing") as server:
        async with connect(server.url + "/ws/echo") as ws:
            await ws.send("ping")
            assert await asyncio.wait_for(ws.recv(), CLIENT_TIMEOUT) == "ping"
        async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
            assert (await http.get("/ready")).status_code == 200
            (tmp_path / "database-down").touch()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + CLIENT_TIMEOUT
            while "component database: healthy -> failed" not in "\n".join(server.lines()):
                assert loop.time() < deadline, server.lines()
                await asyncio.sleep(0.05)
        session = await talk(server.url + "/ws/broken")
        _no_fallback(server)
        lines = server.lines()
    assert session.code == 4005
    assert not [line for line in lines if "health refresh" in line or "health check failed" in line], lines


@pytest.mark.asyncio
async def test_app_returning_closes_1000(tmp_path: Path) -> None:
    """An app that returns after accept without closing: the client gets 1000, not hypercorn's 1011."""
    async with hypercorn_trio(tmp_path) as server:
        session = await talk(server.url + "/ws/done", outgoing=())
    assert session.messages == ["bye"]
    assert session.code == 1000


async def _hold(url: str, live: asyncio.Event) -> Session:
    messages: list[str] = []
    async with connect(url, close_timeout=CLIENT_TIMEOUT) as ws:
        await ws.send("hi")
        try:
            while True:
                message = await ws.recv()
                live.set()
                messages.append(message if isinstance(message, str) else message.decode())
        except ConnectionClosed:
            pass
        return Session(messages, ws.close_code, ws.close_reason)


@pytest.mark.asyncio
async def test_graceful_stop_sends_service_restart(tmp_path: Path) -> None:
    """SIGTERM: after the graceful timeout trio cancels the session; the client gets the restart frame and 1012."""
    async with hypercorn_trio(tmp_path) as server:
        live = asyncio.Event()
        client = asyncio.create_task(_hold(server.url + "/ws/echo", live))
        await asyncio.wait_for(live.wait(), CLIENT_TIMEOUT)
        server.process.send_signal(signal.SIGTERM)
        session = await asyncio.wait_for(client, STOP_S)
        await asyncio.to_thread(server.process.wait, STOP_S)
        lines = server.lines()
    assert session.code == 1012
    assert session.frame["component"] == "Service Restart"
    assert session.frame["source"] == "shutdown"
    assert [line for line in lines if "service restart: session closed with 1012" in line], lines
    assert not [line for line in lines if "diagnosis:" in line], lines


@pytest.mark.asyncio
async def test_an_unsupported_library_passes_everything_through(caplog: pytest.LogCaptureFixture) -> None:
    """Under a library that is neither asyncio nor trio: no frame, the app's own exception, one ERROR line."""
    sent: list[dict[str, object]] = []

    async def app(scope: dict[str, object], receive: object, send: Any) -> None:
        await send({"type": "websocket.accept"})
        raise RuntimeError("handler failed")

    async def receive() -> dict[str, object]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    middleware = DiagnosticsMiddleware(app, settings={"health_path": "/health"})
    token = sniffio.current_async_library_cvar.set("curio")
    try:
        with caplog.at_level(logging.ERROR, logger="ws_diag"):
            for _ in range(2):
                with pytest.raises(RuntimeError, match="handler failed"):
                    await middleware({"type": "websocket", "path": "/ws", "headers": []}, receive, send)
    finally:
        sniffio.current_async_library_cvar.reset(token)
    assert sent == [{"type": "websocket.accept"}] * 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        "ws_diag cannot run here (ws_diag runs under asyncio or trio, not 'curio'): every connection "
        "passes through unwatched"
    ]


def test_starlette_test_client_on_trio() -> None:
    """Starlette's TestClient with backend="trio" (an anyio host on trio): the Redis frame and 4007 reach the test."""
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocket, WebSocketDisconnect

    async def live_prices(websocket: WebSocket) -> None:
        await websocket.accept()
        raise redis.exceptions.ConnectionError("Error 111 connecting to localhost:6379. Connection refused.")

    app = DiagnosticsMiddleware(Starlette(routes=[WebSocketRoute("/ws", live_prices)]), settings={"reraise": False})
    with TestClient(app, backend="trio") as client, client.websocket_connect("/ws") as ws:
        frame = ws.receive_json()
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == 4007
    assert frame["error"]["component"] == "Redis"
