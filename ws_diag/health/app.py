"""The health endpoints as an ASGI app of their own, for frameworks that route HTTP themselves."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

from .._types import Receive, Scope, Send
from ..settings import DiagSettings, load_settings
from ..wire.closecodes import CLOSE_NORMAL
from .checker import HealthChecker
from .endpoints import HealthRoute, serve_health, serve_liveness, serve_readiness
from .probes.base import Probe

__all__ = ["HealthApp"]


class HealthApp:
    """Health, liveness and readiness as a small ASGI app, mounted where your framework routes HTTP.

    The same responders as the middleware's ``health_path``, ``liveness_path`` and
    ``readiness_path`` (token, ``?verbose``, ``application/health+json``, 405 and 401
    alike), at paths relative to where the app is mounted::

        checker = HealthChecker.from_settings(settings, probes)
        routes = [WebSocketRoute("/ws", chat), Mount("/health", HealthApp(checker, settings=settings))]
        app = DiagnosticsMiddleware(Starlette(routes=routes), settings=settings, checker=checker)

    answers ``/health/`` (the report), ``/health/livez`` and ``/health/readyz``. Share the
    checker with the middleware: one cache, one set of probes, one background refresh.
    A mount's prefix is read from the scope's ``root_path`` (Starlette, FastAPI) or
    already stripped from ``path`` (Litestar's ``is_mount``, Django's ``path("health/", ...)``
    with an ASGI handler): both work. Other paths get 404; lifespan events are answered;
    a websocket is closed.

    Args:
        checker: the health checker (the middleware's, to share it); built from
            ``settings`` and ``probes`` when omitted.
        settings: as the middleware takes them (``health_token``, ``expose_details`` and
            ``code_scheme`` shape the answers; the ``*_path`` settings are the middleware's).
        probes: extra probes for a checker built here (with ``checker`` given: an error).
        health_path: where the report is served, relative to the mount (``None``: not served).
        liveness_path: where liveness is served (``None``: not served).
        readiness_path: where readiness is served (``None``: not served).

    Raises:
        ValueError: a path that does not start with ``/``, two endpoints on one path, or
            ``probes`` together with ``checker``.
    """

    def __init__(
        self,
        checker: HealthChecker | None = None,
        *,
        settings: DiagSettings | Mapping[str, Any] | None = None,
        probes: Iterable[Probe] = (),
        health_path: str | None = "/",
        liveness_path: str | None = "/livez",
        readiness_path: str | None = "/readyz",
    ) -> None:
        self.settings = settings = load_settings(settings)
        probes = tuple(probes)
        if checker is None:
            checker = HealthChecker.from_settings(settings, probes)
        elif probes:
            msg = "pass probes either to HealthApp or to its checker, not both"
            raise ValueError(msg)
        self.checker = checker
        self.routes: dict[str, HealthRoute] = {}
        for name, path, route in (
            ("health_path", health_path, serve_health),
            ("liveness_path", liveness_path, serve_liveness),
            ("readiness_path", readiness_path, serve_readiness),
        ):
            if path is None:
                continue
            if not path.startswith("/"):
                msg = f"{name} must start with '/', got {path!r}"
                raise ValueError(msg)
            if path in self.routes:
                msg = f"{name} {path!r} is already another endpoint's path"
                raise ValueError(msg)
            self.routes[path] = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self.checker.refresh_interval is not None and self.checker.probes:
                self.checker.start()  # cheap when running; follows the app into a new event loop
            route = self.routes.get(_relative_path(scope))
            if route is None:
                await _not_found(send)
                return
            await route(scope, receive, send, self.checker, self.settings)
        elif scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": CLOSE_NORMAL, "reason": ""})  # no websocket here


def _relative_path(scope: Scope) -> str:
    """The path below the mount: ``path`` without ``root_path`` when the server or router kept it (ASGI spec)."""
    path: str = scope.get("path", "") or "/"
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        path = path[len(root) :] or "/"
    return path


async def _not_found(send: Send) -> None:
    body = b'{"error":"not found"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": int(HTTPStatus.NOT_FOUND), "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    """Served on its own: acknowledge start-up and shutdown, nothing to set up."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
