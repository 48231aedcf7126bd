"""The ASGI middleware: watches a websocket's accept, close and exceptions.

The message path costs one dict lookup per ``send``: the send wrapper is a
plain function that hands ``websocket.send`` straight to the server and routes
only ``websocket.accept``, ``websocket.close`` and the HTTP denial to handlers.
``receive`` is passed through untouched unless ``track_disconnect`` is set.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from ._types import ASGIApp, Message, Receive, Scope, Send
from .classify import Classifier
from .codes import CLOSE_NORMAL, ComponentLike, validate_components
from .diagnoser import Diagnoser
from .endpoint import serve_health
from .health import HealthChecker, HealthReport
from .probes import Probe, probes_from_settings
from .responder import DiagnosisHook, Responder, repaired_close, repaired_code
from .settings import DiagSettings

__all__ = ["DiagnosticsMiddleware"]

logger = logging.getLogger("ws_diag")


_Hook = TypeVar("_Hook", bound=Callable[..., object])
ReportHook = Callable[[HealthReport], object]


def _as_tuple(hooks: _Hook | Iterable[_Hook]) -> tuple[_Hook, ...]:
    return (hooks,) if callable(hooks) else tuple(hooks)


class DiagnosticsMiddleware:
    """Turn a websocket's generic failure into a component close code and a JSON frame.

    Args:
        app: the ASGI application to wrap.
        settings: the settings; read from ``WS_DIAG_*`` environment variables when omitted.
        probes: health probes consulted when a failure names no component.
        classifier: exception-type rules; the built-in ones when omitted.
        components: custom components the app uses, checked for clashing keys and codes.
        on_diagnosis: callables given a :class:`~ws_diag.DiagnosisEvent` after each
            intervention (metrics, Sentry, tracing); a hook that raises is logged and ignored.
        on_health_report: callables given each new health report (probe metrics).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: DiagSettings | None = None,
        probes: Iterable[Probe] = (),
        checker: HealthChecker | None = None,
        classifier: Classifier | None = None,
        components: Iterable[ComponentLike] = (),
        on_diagnosis: DiagnosisHook | Iterable[DiagnosisHook] = (),
        on_health_report: ReportHook | Iterable[ReportHook] = (),
    ) -> None:
        self.app = app
        self.settings = settings = settings if settings is not None else DiagSettings()
        self.components = validate_components(components)
        self.classifier = classifier if classifier is not None else Classifier()
        if checker is None:
            checker = HealthChecker(
                [*probes_from_settings(settings), *probes],
                timeout=settings.probe_timeout,
                cache_ttl=settings.cache_ttl,
                refresh_interval=settings.refresh_interval,
                on_report=_as_tuple(on_health_report),
            )
        elif tuple(probes) or _as_tuple(on_health_report):
            msg = "pass probes and on_health_report either to the middleware or to its checker, not both"
            raise ValueError(msg)
        self.checker = checker
        self.diagnoser = Diagnoser(self.classifier, checker, settings.probe_priority)
        self.responder = Responder(settings, self.diagnoser, _as_tuple(on_diagnosis))
        self._health_path = settings.health_path
        self._rewrite_codes = settings.rewrite_codes
        self._passthrough_preaccept = settings.preaccept == "passthrough"
        self._refresh = checker.refresh_interval is not None and bool(checker.probes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._refresh:
            self.checker.start()  # cheap when running; follows the app into a new event loop
        if scope["type"] != "websocket":
            if self._health_path is not None and scope["type"] == "http" and scope.get("path") == self._health_path:
                await serve_health(scope, receive, send, self.checker, self.settings)
                return
            await self.app(scope, receive, send)
            return
        await self._websocket(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: C901 - closures count
        # Per-connection state lives in these cells and two closures, nothing more:
        # it is all a connection costs in memory.
        accepted = False
        finished = False  # a close or an HTTP response went out: nothing more of ours may follow
        gone = False  # the client is known to have left

        logger.debug(
            "websocket connect: path=%s client=%s",
            scope.get("path"),
            scope.get("client"),
            extra={"ws_diag_event": "connect", "path": scope.get("path")},
        )

        async def on_control(message: Message) -> None:
            nonlocal accepted, finished, gone
            kind = message["type"]
            if kind == "websocket.close" and not finished:
                finished = True
                if not gone and self._should_rewrite(message, accepted):
                    logger.info(
                        "websocket failure intercepted: app closed with %s",
                        message.get("code"),
                        extra={"ws_diag_event": "intercepted", "path": scope.get("path"), "code": message.get("code")},
                    )
                    gone = await self.responder.intervene(scope, send, None, message, accepted)
                    return
                if accepted:
                    message = repaired_close(message)
            try:
                await send(message)  # odd sequences are the server's to judge
            except OSError:
                gone = True  # the client left: nothing of ours may follow
                raise
            if kind == "websocket.accept":
                accepted = True
                logger.debug(
                    "websocket accepted: path=%s",
                    scope.get("path"),
                    extra={"ws_diag_event": "accept", "path": scope.get("path")},
                )
            elif kind == "websocket.http.response.start":
                finished = True

        def wrapped_send(message: Message) -> Awaitable[None]:
            # The message path: one dict lookup, then the server's own send.
            if message["type"] == "websocket.send":
                return send(message)
            return on_control(message)

        app_receive = receive
        if self.settings.track_disconnect:

            async def tracking_receive() -> Message:
                nonlocal gone
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    gone = True
                return message

            app_receive = tracking_receive

        try:
            await self.app(scope, app_receive, wrapped_send)
        except Exception as exc:
            if finished or gone or (not accepted and self._passthrough_preaccept):
                raise
            logger.info(
                "websocket failure intercepted: app raised %s",
                type(exc).__name__,
                extra={"ws_diag_event": "intercepted", "path": scope.get("path"), "exception": type(exc).__name__},
            )
            finished = True
            await self.responder.intervene(scope, send, exc, None, accepted)
            raise

    def _should_rewrite(self, close: Message, accepted: bool) -> bool:
        if not accepted and self._passthrough_preaccept:
            return False
        code = close.get("code", CLOSE_NORMAL)
        if isinstance(code, int) and code in self._rewrite_codes:
            return True
        # After accept a code that cannot be delivered counts as the code it is repaired to.
        return accepted and repaired_code(code) in self._rewrite_codes
