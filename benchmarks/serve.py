"""Run an ASGI app on hypercorn or uvicorn in this event loop, configured as in production.

Like ``tests/servers.py`` (a socket bound before the server starts, bounded
startup and shutdown), with one difference that matters for latency: the
listening socket is created with ``IPPROTO_TCP`` and ``TCP_NODELAY``, as
``hypercorn --bind`` and ``uvicorn --host/--port`` create theirs. A socket made
with ``socket.socket(AF_INET, SOCK_STREAM)`` has ``proto == 0``; asyncio then
skips ``TCP_NODELAY`` on the accepted connections, and Nagle's algorithm with
the client's delayed ACK holds the second of two back-to-back small frames
(a frame then a close) for about 40 ms on uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any

import hypercorn.asyncio
import hypercorn.config
import uvicorn

with warnings.catch_warnings():  # uvicorn's legacy websockets module warns on first import
    warnings.simplefilter("ignore")
    import uvicorn.protocols.websockets.websockets_impl

__all__ = ["SERVER_KINDS", "serve"]

SERVER_KINDS: tuple[str, ...] = ("hypercorn", "uvicorn-websockets", "uvicorn-wsproto")
_UVICORN_WS = {"uvicorn-websockets": "websockets", "uvicorn-wsproto": "wsproto"}

log = logging.getLogger(__name__)


def _listening_socket(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets
        sock.bind((host, 0))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _HypercornConfig(hypercorn.config.Config):
    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def create_sockets(self) -> hypercorn.config.Sockets:
        return hypercorn.config.Sockets(secure_sockets=[], insecure_sockets=[self._sock], quic_sockets=[])


def _start(app: Any, kind: str, sock: socket.socket) -> tuple[asyncio.Task[None], Callable[[], None]]:
    host, port = sock.getsockname()[:2]
    if kind == "hypercorn":
        config = _HypercornConfig(sock)
        config.bind = [f"{host}:{port}"]
        config.errorlog = logging.getLogger("hypercorn.error")
        config.accesslog = None
        config.graceful_timeout = 3.0
        config.backlog = 2048
        stop = asyncio.Event()
        coro = hypercorn.asyncio.serve(app, config, shutdown_trigger=stop.wait, mode="asgi")
        return asyncio.create_task(coro, name=f"hypercorn:{port}"), stop.set
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            ws=_UVICORN_WS[kind],
            interface="asgi3",
            lifespan="off",
            log_level="warning",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=3,
            backlog=2048,
        )
    )

    def stop_uvicorn() -> None:
        server.should_exit = True

    return asyncio.create_task(server.serve(sockets=[sock]), name=f"{kind}:{port}"), stop_uvicorn


async def _wait_listening(host: str, port: int, task: asyncio.Task[None], limit_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        if task.done():
            raise RuntimeError(f"server ended before it listened: {task.exception() if not task.cancelled() else ''}")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 0.5)
        except (OSError, TimeoutError):
            if loop.time() >= deadline:
                raise RuntimeError(f"server did not listen on {host}:{port} within {limit_s} s") from None
            await asyncio.sleep(0.01)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


@contextlib.asynccontextmanager
async def serve(app: Any, kind: str, *, host: str = "127.0.0.1", limit_s: float = 10.0) -> AsyncIterator[str]:
    """Serve ``app`` with ``kind`` (see ``SERVER_KINDS``) in this loop; yield ``ws://host:port``."""
    if kind not in SERVER_KINDS:
        raise ValueError(f"unknown server kind {kind!r}; expected one of {SERVER_KINDS}")
    sock = _listening_socket(host)
    port: int = sock.getsockname()[1]
    try:
        task, stop = _start(app, kind, sock)
        try:
            await _wait_listening(host, port, task, limit_s)
            yield f"ws://{host}:{port}"
        finally:
            if not task.done():
                stop()
                await asyncio.wait({task}, timeout=limit_s)
            if not task.done():
                log.warning("%s server on port %d did not stop; cancelling it", kind, port)
                task.cancel()
                await asyncio.wait({task}, timeout=limit_s)
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("%s server on port %d failed", kind, port, exc_info=task.exception())
    finally:
        sock.close()
