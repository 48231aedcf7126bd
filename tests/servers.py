"""Run an ASGI app on a real server, in-process, in the running event loop.

``run_server(app, kind)`` binds a socket on an ephemeral port *before* the
server starts and hands that socket to the server, so there is no window in
which another process could grab the port. Both the startup and the shutdown
are bounded, and the server's loggers (``uvicorn.error``, ``hypercorn.error``)
are left without handlers of their own so that records propagate to the root
logger, where pytest's ``caplog`` sees them.
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

__all__ = ["SERVER_KINDS", "ServerError", "free_port", "run_server"]

SERVER_KINDS: tuple[str, ...] = ("hypercorn", "uvicorn-websockets", "uvicorn-wsproto")

# ``kind`` -> uvicorn's ``ws=`` value. "uvicorn-websockets-sansio" is accepted
# too, but is not in SERVER_KINDS.
_UVICORN_WS: dict[str, str] = {
    "uvicorn-websockets": "websockets",
    "uvicorn-wsproto": "wsproto",
    "uvicorn-websockets-sansio": "websockets-sansio",
}

# uvicorn's legacy ``ws="websockets"`` module warns (UvicornDeprecationWarning)
# when it is first imported. Import it here, quietly, so that the warning does
# not land in the summary of whichever test happens to start it first.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import uvicorn.protocols.websockets.websockets_impl

log = logging.getLogger(__name__)

ASGIApp = Callable[..., Any]


class ServerError(RuntimeError):
    """The server did not start, did not stop, or crashed."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago (racy: prefer a pre-bound socket)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _bound_socket(host: str) -> socket.socket:
    """A TCP socket bound to an ephemeral port of ``host`` but not yet listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # so asyncio sets TCP_NODELAY
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _PreboundHypercornConfig(hypercorn.config.Config):
    """Hypercorn config that serves on an already bound socket.

    ``Config.bind = ["fd://N"]`` would also work, but hypercorn then wraps the
    fd in a socket object of its own and closes it, which leaves our object
    closing a stale fd (or the fd leaking if the server fails before it binds).
    Overriding ``create_sockets`` keeps one socket object with one owner.
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._prebound = sock

    def create_sockets(self) -> hypercorn.config.Sockets:
        return hypercorn.config.Sockets(secure_sockets=[], insecure_sockets=[self._prebound], quic_sockets=[])


def _start_hypercorn(
    app: ASGIApp, sock: socket.socket, graceful_timeout: float
) -> tuple[asyncio.Task[None], Callable[[], None]]:
    host, port = sock.getsockname()[:2]
    config = _PreboundHypercornConfig(sock)
    config.bind = [f"{host}:{port}"]  # informational only: create_sockets is overridden
    # A Logger instance (not "-") makes hypercorn use it as is: no stream
    # handler is added and ``propagate`` is left alone, so records reach root.
    config.errorlog = logging.getLogger("hypercorn.error")
    config.accesslog = None
    config.graceful_timeout = graceful_timeout
    config.backlog = 2048  # load tests open a thousand connections at once, like uvicorn's default
    stop = asyncio.Event()
    coro = hypercorn.asyncio.serve(app, config, shutdown_trigger=stop.wait, mode="asgi")
    return asyncio.create_task(coro, name=f"hypercorn:{port}"), stop.set


def _start_uvicorn(
    app: ASGIApp, sock: socket.socket, ws: str, graceful_timeout: float
) -> tuple[asyncio.Task[None], Callable[[], None]]:
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ws=ws,  # type: ignore[arg-type]
        interface="asgi3",
        lifespan="off",
        log_level="warning",
        log_config=None,  # do not install uvicorn's handlers; let records propagate
        access_log=False,
        timeout_graceful_shutdown=int(graceful_timeout) or 1,
    )
    server = uvicorn.Server(config)

    def request_stop() -> None:
        server.should_exit = True

    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"uvicorn-{ws}:{port}")
    return task, request_stop


def _task_error(task: asyncio.Task[None]) -> BaseException | None:
    if not task.done() or task.cancelled():
        return None
    return task.exception()


async def _wait_listening(host: str, port: int, task: asyncio.Task[None], kind: str, limit_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        if task.done():
            error = _task_error(task)
            raise ServerError(f"{kind} server task ended before it listened: {error!r}") from error
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 0.5)
        except (OSError, TimeoutError):
            if loop.time() >= deadline:
                raise ServerError(f"{kind} server did not listen on {host}:{port} within {limit_s} s") from None
            await asyncio.sleep(0.01)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


async def _stop(task: asyncio.Task[None], request_stop: Callable[[], None], limit_s: float) -> BaseException | None:
    """Stop the server within ``limit_s`` seconds (then cancel it); return its error, if any."""
    if not task.done():
        request_stop()
        await asyncio.wait({task}, timeout=limit_s)
    if not task.done():
        log.warning("server task %s did not stop within %s s; cancelling it", task.get_name(), limit_s)
        task.cancel()
        await asyncio.wait({task}, timeout=limit_s)
        if not task.done():
            return ServerError(f"server task {task.get_name()} ignored cancellation")
    error = _task_error(task)
    if isinstance(error, SystemExit):  # uvicorn exits this way on startup failures
        return ServerError(f"server task {task.get_name()} called sys.exit({error.code})")
    return error


@contextlib.asynccontextmanager
async def run_server(
    app: ASGIApp,
    kind: str,
    *,
    host: str = "127.0.0.1",
    startup_timeout: float = 10.0,
    shutdown_timeout: float = 5.0,
) -> AsyncIterator[str]:
    """Serve ``app`` with server ``kind`` in this event loop; yield ``ws://host:port``.

    On exit the server is asked to stop and given ``shutdown_timeout`` seconds
    before its task is cancelled. If the server task crashed, ``ServerError``
    is raised on exit (unless the body already raised; then it is logged).
    """
    if kind != "hypercorn" and kind not in _UVICORN_WS:
        raise ValueError(f"unknown server kind {kind!r}; expected one of {SERVER_KINDS}")
    sock = _bound_socket(host)
    port: int = sock.getsockname()[1]
    error: BaseException | None = None
    # Servers get a little less than our budget, so they clean up themselves.
    graceful = max(shutdown_timeout - 1.0, 0.5)
    try:
        if kind == "hypercorn":
            task, request_stop = _start_hypercorn(app, sock, graceful)
        else:
            task, request_stop = _start_uvicorn(app, sock, _UVICORN_WS[kind], graceful)
        try:
            await _wait_listening(host, port, task, kind, startup_timeout)
            yield f"ws://{host}:{port}"
        finally:
            error = await _stop(task, request_stop, shutdown_timeout)
            if error is not None:
                log.error("%s server on port %d failed", kind, port, exc_info=error)
    finally:
        sock.close()  # the servers close it too; closing twice is harmless
    if error is not None:
        raise ServerError(f"{kind} server on port {port} failed: {error!r}") from error
