"""Run an ASGI app under a real server on a free loopback port, for tests and benchmarks.

Needs the ``test`` extra (hypercorn, uvicorn, websockets, wsproto, granian); daphne needs
the ``examples`` extra. Nothing here is imported by ``ws_diag`` itself.

Usage::

    from ws_diag.testing.servers import SERVER_KINDS, run_server

    async with run_server(app, "uvicorn") as url:  # "ws://127.0.0.1:PORT"
        async with websockets.connect(url + "/ws") as ws:
            ...

``run_server(app, kind)`` is an async context manager. ``app`` is an ASGI app or
an import string ``"module:attribute"``; ``kind`` is one of :data:`KINDS`:

===============================  ===========================================================
kind                             server
===============================  ===========================================================
``hypercorn``                    hypercorn's asyncio worker, in this event loop
``uvicorn``                      uvicorn with ``ws="auto"``, its default: websockets-sansio
                                 since uvicorn 0.50 (when ``websockets`` is installed)
``uvicorn-websockets-sansio``    uvicorn ``--ws websockets-sansio`` (what ``auto`` picks)
``uvicorn-wsproto``              uvicorn ``--ws wsproto``
``uvicorn-websockets``           uvicorn ``--ws websockets``, the legacy implementation
                                 (deprecated by uvicorn, still shipped)
``granian``                      granian's embedded server (``granian.server.embed``,
                                 experimental upstream), ASGI without lifespan, in this
                                 event loop; it binds its own socket (see below)
``daphne``                       ``python -m daphne`` in a subprocess; ``app`` must be an
                                 import string, resolved with this process's ``sys.path``
===============================  ===========================================================

:data:`SERVER_KINDS` is the end-to-end matrix (hypercorn, the uvicorn default and
both other uvicorn implementations; sansio is covered by the default row).

Guarantees:

- In-process servers get a socket bound *before* they start (no window in which
  another process could take the port; granian, which binds its own, gets the
  port of one just closed), created like ``hypercorn --bind`` and
  ``uvicorn --host/--port`` create theirs: ``IPPROTO_TCP`` and ``TCP_NODELAY``, so
  the accepted connections do not hold small frames back (Nagle's algorithm plus
  the client's delayed ACK add about 40 ms to a frame followed by a close).
- Startup is polled (connect attempts, or daphne's "Listening on" log line) and
  bounded by ``startup_timeout`` seconds; shutdown asks the server to stop
  gracefully and cancels (or kills) it after ``shutdown_timeout`` seconds.
- The servers' loggers (``uvicorn.error``, ``hypercorn.error``) get no handlers
  of their own: their records propagate to the root logger (pytest's ``caplog``).
- If the server crashed, :class:`ServerError` is raised when the block exits.

Server settings can be passed as ``options``: keyword arguments of
``uvicorn.Config`` (for example ``{"lifespan": "auto", "log_level": "info"}``; by
default lifespan is ``"off"``), attributes of ``hypercorn.config.Config``, or
keyword arguments of granian's embedded ``Server``.
For daphne, :func:`run_daphne` (or :class:`DaphneServer`) also gives the
server's log lines, its environment and extra command-line arguments.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import warnings
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from .._importing import import_from_string
from . import ServerError
from .daphne import DaphneServer, run_daphne

__all__ = [
    "KINDS",
    "SERVER_KINDS",
    "DaphneServer",
    "ServerError",
    "free_port",
    "run_daphne",
    "run_server",
]

SERVER_KINDS: tuple[str, ...] = ("hypercorn", "uvicorn", "uvicorn-wsproto", "uvicorn-websockets")
"""The end-to-end matrix: in-process servers users run today."""

# ``kind`` -> uvicorn's ``ws=`` value.
_UVICORN_WS: dict[str, str] = {
    "uvicorn": "auto",
    "uvicorn-websockets-sansio": "websockets-sansio",
    "uvicorn-wsproto": "wsproto",
    "uvicorn-websockets": "websockets",
}

KINDS: tuple[str, ...] = (*SERVER_KINDS, "uvicorn-websockets-sansio", "granian", "daphne")
"""Every kind :func:`run_server` accepts."""

log = logging.getLogger(__name__)

ASGIApp = Callable[..., Any]
_Start = tuple["asyncio.Task[None]", Callable[[], None]]


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago (racy: :func:`run_server` binds its socket first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        msg = f"unknown server kind {kind!r}; expected one of {KINDS}"
        raise ValueError(msg)


def _bound_socket(host: str) -> socket.socket:
    """A TCP socket bound to an ephemeral port of ``host``, not yet listening, with TCP_NODELAY."""
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only when the
    # listener's proto says TCP (a bare socket(AF_INET, SOCK_STREAM) has proto 0).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets on Linux
        sock.bind((host, 0))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _start_hypercorn(app: ASGIApp, sock: socket.socket, graceful_s: float, options: Mapping[str, Any]) -> _Start:
    import hypercorn.asyncio
    import hypercorn.config

    class PreboundConfig(hypercorn.config.Config):
        # ``bind = ["fd://N"]`` would make hypercorn wrap the fd in a socket object of
        # its own and close it, leaving ours stale; one socket object, one owner.
        def create_sockets(self) -> hypercorn.config.Sockets:
            return hypercorn.config.Sockets(secure_sockets=[], insecure_sockets=[sock], quic_sockets=[])

    host, port = sock.getsockname()[:2]
    config = PreboundConfig()
    config.bind = [f"{host}:{port}"]  # informational only: create_sockets is overridden
    # A Logger instance (not "-") is used as is: no handler added, records reach root.
    config.errorlog = logging.getLogger("hypercorn.error")
    config.accesslog = None
    config.graceful_timeout = graceful_s
    config.backlog = 2048  # uvicorn's default; load tests open a thousand connections at once
    for name, value in options.items():
        if not hasattr(config, name):
            msg = f"options: hypercorn's Config has no setting {name!r}"
            raise ValueError(msg)
        setattr(config, name, value)
    stop = asyncio.Event()
    coro = hypercorn.asyncio.serve(app, config, shutdown_trigger=stop.wait, mode="asgi")
    return asyncio.create_task(coro, name=f"hypercorn:{port}"), stop.set


def _start_granian(app: ASGIApp, sock: socket.socket, options: Mapping[str, Any]) -> _Start:
    from granian.constants import Interfaces
    from granian.server.embed import Server

    host, port = sock.getsockname()[:2]
    sock.close()  # granian binds its own socket; ours only reserved the port
    settings: dict[str, Any] = {
        "address": host,
        "port": port,
        "interface": Interfaces.ASGINL,  # no lifespan, like the other kinds' default
        "log_enabled": False,
    }
    settings.update(options)
    server = Server(app, **settings)
    return asyncio.create_task(server.serve(), name=f"granian:{port}"), server.stop


def _start_uvicorn(app: ASGIApp, sock: socket.socket, ws: str, graceful_s: float, options: Mapping[str, Any]) -> _Start:
    import uvicorn

    if ws == "websockets":
        # The legacy module warns (UvicornDeprecationWarning) when first imported; import it
        # quietly so the warning does not land on whichever test happens to start it first.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import uvicorn.protocols.websockets.websockets_impl

    host, port = sock.getsockname()[:2]
    settings: dict[str, Any] = {
        "host": host,
        "port": port,
        "ws": ws,
        "interface": "asgi3",
        "lifespan": "off",
        "log_level": "warning",
        "log_config": None,  # no handlers of uvicorn's own: records propagate to root
        "access_log": False,
        "timeout_graceful_shutdown": max(int(graceful_s), 1),
    }
    settings.update(options)
    server = uvicorn.Server(uvicorn.Config(app, **settings))

    def request_stop() -> None:
        server.should_exit = True

    kind = "uvicorn" if ws == "auto" else f"uvicorn-{ws}"
    return asyncio.create_task(server.serve(sockets=[sock]), name=f"{kind}:{port}"), request_stop


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
            msg = f"{kind} server task ended before it listened: {error!r}"
            raise ServerError(msg) from error
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 0.5)
        except (OSError, TimeoutError):
            if loop.time() >= deadline:
                msg = f"{kind} server did not listen on {host}:{port} within {limit_s} s"
                raise ServerError(msg) from None
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
    app: ASGIApp | str,
    kind: str,
    *,
    host: str = "127.0.0.1",
    startup_timeout: float = 10.0,
    shutdown_timeout: float = 5.0,
    options: Mapping[str, Any] | None = None,
) -> AsyncIterator[str]:
    """Serve ``app`` with server ``kind``; yield its base URL, ``"ws://HOST:PORT"``.

    Args:
        app: an ASGI app, or an import string ``"module:attribute"`` (required for daphne).
        kind: one of :data:`KINDS`.
        host: the loopback address to bind.
        startup_timeout: seconds to wait until the server accepts connections.
        shutdown_timeout: seconds the server gets to stop gracefully before it is
            cancelled (in-process) or killed (daphne); the server's own graceful
            timeout is one second less.
        options: ``uvicorn.Config`` keyword arguments or ``hypercorn.config.Config``
            attributes (not for daphne: use :func:`run_daphne`).

    Raises:
        ValueError: unknown ``kind``, or an option hypercorn does not have.
        TypeError: ``app`` is not an import string for daphne, or is not callable.
        ServerError: the server did not start in time, or crashed (raised on exit;
            if the block itself raised, the crash is logged instead).
    """
    _check_kind(kind)
    if kind == "daphne":
        if options:
            msg = "options: not supported for daphne; pass env/args to run_daphne instead"
            raise ValueError(msg)
        if not isinstance(app, str):
            msg = f"app: daphne runs in a subprocess and needs an import string 'module:attribute', got {app!r}"
            raise TypeError(msg)
        async with run_daphne(app, host=host, startup_timeout=startup_timeout, shutdown_timeout=shutdown_timeout) as d:
            yield d.url
        return
    if isinstance(app, str):
        app = import_from_string(app)
    if not callable(app):
        msg = f"app: expected an ASGI callable or 'module:attribute', got {app!r}"
        raise TypeError(msg)
    sock = _bound_socket(host)
    port: int = sock.getsockname()[1]
    error: BaseException | None = None
    graceful_s = max(shutdown_timeout - 1.0, 0.5)  # the server cleans up itself before we cancel it
    try:
        if kind == "hypercorn":
            task, request_stop = _start_hypercorn(app, sock, graceful_s, options or {})
        elif kind == "granian":
            task, request_stop = _start_granian(app, sock, options or {})
        else:
            task, request_stop = _start_uvicorn(app, sock, _UVICORN_WS[kind], graceful_s, options or {})
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
        msg = f"{kind} server on port {port} failed: {error!r}"
        raise ServerError(msg) from error
