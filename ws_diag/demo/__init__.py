"""The demo: a small Starlette chat socket behind ws_diag, served by hypercorn.

Buttons on the page break one component at a time, so a person can watch what
a client receives. Needs the ``demo`` extra (starlette, hypercorn).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import sys
from importlib.resources import files
from typing import IO, Any

from .._optional import missing

try:
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config, Sockets
except ModuleNotFoundError as exc:
    missing(exc, "hypercorn", extra="demo", feature=__name__)
try:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect
except ModuleNotFoundError as exc:
    missing(exc, "starlette", extra="demo", feature=__name__)

from ..components import Component
from ..errors import WebSocketComponentError
from ..health.probes import CallableProbe, Probe, ProbeFailed
from ..logs import LogEvent
from ..middleware import DiagnosticsMiddleware
from ..settings import DiagSettings

__all__ = ["build_app", "configure_logging", "serve"]

logger = logging.getLogger("ws_diag.demo")

# A fake secret, so the demo shows that exception text never reaches the page.
DEMO_SECRET = "postgresql://demo:not-a-real-password@db.internal/app"  # noqa: S105 - fake, on purpose


class Toggles:
    """Components the page has broken; the demo's embedded probes read them."""

    def __init__(self) -> None:
        self.broken: set[str] = set()
        self._changed: asyncio.Event | None = None

    def changed(self) -> asyncio.Event:
        """An event set at the next break or fix."""
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def toggle(self, key: str, *, broken: bool) -> None:
        """Break or fix ``key``; wake the live sessions."""
        if broken:
            self.broken.add(key)
        else:
            self.broken.discard(key)
        self.changed().set()
        self._changed = None

    def probe(self, key: str, component: Component, *, required: bool) -> Probe:
        """A probe that fails while ``key`` is broken."""

        async def check() -> None:
            if key in self.broken:
                raise ProbeFailed(f"{key} broken from the demo page")

        return CallableProbe(key, component, check, required=required)


async def _live(websocket: WebSocket, toggles: Toggles) -> None:
    """The page's reconnecting session: open while nothing is broken, failing (probes decide) while something is."""
    receiving = asyncio.ensure_future(websocket.receive())
    try:
        while not toggles.broken:
            changed = asyncio.ensure_future(toggles.changed().wait())
            done, _ = await asyncio.wait({receiving, changed}, return_when=asyncio.FIRST_COMPLETED)
            changed.cancel()
            if receiving in done:
                if receiving.result()["type"] == "websocket.disconnect":
                    return
                receiving = asyncio.ensure_future(websocket.receive())
    finally:
        receiving.cancel()
    raise TimeoutError("the live session lost its back end")  # ambiguous: the probes name the component


def _chat(toggles: Toggles) -> Any:
    async def chat(websocket: WebSocket) -> None:
        mode = websocket.query_params.get("fail", "none")
        if mode == "auth":
            raise WebSocketComponentError.auth_failure("Token expired: sign in again", user_id="demo-user")
        await websocket.accept()
        logger.info("session opened (mode %s)", mode)
        try:
            await websocket.send_json({"type": "hello", "mode": mode})
            if mode == "live":
                await _live(websocket, toggles)
                return
            await _converse(websocket, mode)
        except WebSocketDisconnect:
            # The visitor closed the tab or pressed "close": a normal end, not a failure.
            logger.info("session ended: the client left (mode %s)", mode)

    return chat


async def _converse(websocket: WebSocket, mode: str) -> None:
    """Echo until the client leaves; fail as ``mode`` asks on the first message."""
    while True:
        text = await websocket.receive_text()
        if mode == "database":
            raise WebSocketComponentError.database_failure(
                "Database session factory unavailable", user_id="demo-user", details={"connection_timeout": 30}
            )
        if mode == "crash":
            raise RuntimeError(f"unexpected failure talking to {DEMO_SECRET}")
        if mode == "probe":
            raise TimeoutError("something timed out")  # ambiguous: the probes decide
        if mode == "long-reason":
            await websocket.close(4000, "é" * 200)
            return
        await websocket.send_json({"type": "echo", "text": text})


def build_app(settings: DiagSettings | None = None) -> DiagnosticsMiddleware:
    """The demo app, wrapped. Real PostgreSQL/Redis probes replace the embedded ones when configured."""
    settings = settings if settings is not None else DiagSettings(health_path="/health", cache_ttl=0.5)
    toggles = Toggles()

    async def page(request: Request) -> Response:
        return HTMLResponse(files("ws_diag.demo").joinpath("demo.html").read_text("utf-8"))

    async def script(request: Request) -> Response:
        body = files("ws_diag").joinpath("static/ws-diag.js").read_text("utf-8")
        return Response(body, media_type="text/javascript")

    def toggle_state() -> JSONResponse:
        return JSONResponse({"breakable": sorted(breakable), "broken": sorted(toggles.broken)})

    async def toggles_shown(request: Request) -> Response:
        return toggle_state()

    async def toggle(request: Request) -> Response:
        key = request.path_params["key"]
        if key not in breakable:
            # Unknown, or a real PostgreSQL/Redis is configured: the page cannot break a real server.
            return JSONResponse({"error": "no embedded probe by that name"}, status_code=404)
        logger.info("%s probe %s from the page", key, "broken" if request.method == "POST" else "repaired")
        wrapped.checker.invalidate()  # show the change at once, not after the cache expires
        toggles.toggle(key, broken=request.method == "POST")
        return toggle_state()

    routes = [
        Route("/", page),
        Route("/ws-diag.js", script),
        Route("/break", toggles_shown),  # {"breakable": [...], "broken": [...]}: what the page's buttons may do
        Route("/break/{key}", toggle, methods=["POST", "DELETE"]),
        WebSocketRoute("/ws", _chat(toggles)),
    ]
    probes: list[Probe] = []
    if settings.postgres_dsn is None:
        probes.append(toggles.probe("database", Component.DATABASE, required=True))
    if settings.redis_url is None:
        probes.append(toggles.probe("redis", Component.REDIS, required=False))
    breakable = {probe.name for probe in probes}
    wrapped = DiagnosticsMiddleware(Starlette(routes=routes), settings=settings, probes=probes)
    return wrapped


class _NoRepeats(logging.Filter):
    """Drops a health-check line identical to the line just before it (the page polls the health report)."""

    def __init__(self) -> None:
        super().__init__()
        self._last: tuple[str, str] | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        line = (record.name, record.getMessage())
        repeated = line == self._last and getattr(record, "ws_diag_event", None) == LogEvent.HEALTH_CHECK
        self._last = line
        return not repeated


def configure_logging(stream: IO[str] | None = None) -> logging.Handler:
    """The demo terminal's logging: one timestamped line per event, on stderr (or ``stream``).

    ws_diag's interventions (INFO, WARNING), the demo's own session and toggle lines,
    and the server's start, stop and errors are shown; per-connection DEBUG lines and
    the access log are not. Returns the installed handler.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.addFilter(_NoRepeats())
    for name in ("ws_diag", "hypercorn.error"):
        named = logging.getLogger(name)
        named.setLevel(logging.INFO)
        named.addHandler(handler)
        named.propagate = False
    return handler


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=128)


class _Config(Config):
    """Hypercorn's config, serving on a socket the demo has already bound (so a busy port is ours to report)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def create_sockets(self) -> Sockets:
        return Sockets(secure_sockets=[], insecure_sockets=[self._sock], quic_sockets=[])


def serve(host: str = "127.0.0.1", port: int = 8000) -> int:
    """Serve the demo with hypercorn until SIGINT or SIGTERM.

    Args:
        host: the address to listen on.
        port: the TCP port; 0 picks a free one (the line printed at start names it).

    Returns:
        The exit status: 0 after a clean stop, 1 when the address cannot be used
        (a busy port prints one line suggesting ``--port``, not a traceback).
    """
    try:
        sock = _listen(host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(
                f"ws-diag demo: port {port} on {host} is already in use; pick another with --port, "
                f"for example: ws-diag demo --port {port + 1 if port < 65535 else 8001}",
                file=sys.stderr,
            )
        else:
            print(f"ws-diag demo: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    with sock:  # hypercorn closes it on a clean stop; this covers every other way out
        return _serve_on(sock, host)


def _serve_on(sock: socket.socket, host: str) -> int:
    overrides: dict[str, Any] = {"health_path": "/health", "cache_ttl": 0.5}
    settings = DiagSettings(**{k: v for k, v in overrides.items() if f"WS_DIAG_{k.upper()}" not in os.environ})
    bound = sock.getsockname()[1]
    config = _Config(sock)
    config.bind = [f"{host}:{bound}"]  # informational: the socket is already bound
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")  # a Logger: hypercorn adds no handler of its own
    configure_logging()
    origin = f"http://[{host}]:{bound}" if ":" in host else f"http://{host}:{bound}"
    print(f"ws_diag demo: open {origin}/  (health report: {origin}/health; Ctrl+C stops)", flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await hypercorn_serve(build_app(settings), config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]

    asyncio.run(main())
    return 0
