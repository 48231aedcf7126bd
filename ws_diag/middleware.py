"""The ASGI middleware: watches a websocket's accept, close and exceptions.

The message path costs one dict lookup per ``send``: the send wrapper is a
plain function that hands ``websocket.send`` straight to the server and routes
only ``websocket.accept``, ``websocket.close`` and the HTTP denial to handlers.
``receive`` is passed through untouched unless ``track_disconnect`` is set.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterable

from ._types import ASGIApp, Message, Receive, Scope, Send
from .classify import Classifier
from .codes import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    ComponentLike,
    repair_close_code,
    truncate_reason,
    validate_components,
    wire_code,
)
from .diagnoser import Diagnoser
from .diagnosis import Diagnosis, close_reason, frame_json
from .endpoint import serve_health
from .health import HealthChecker
from .probes import Probe, probes_from_settings
from .settings import DiagSettings

__all__ = ["DiagnosticsMiddleware"]

logger = logging.getLogger("ws_diag")

_DENIAL_EXTENSION = "websocket.http.response"
_DEADLINE_SLACK = 0.05


def _repaired_code(code: object) -> int:
    return repair_close_code(code) if isinstance(code, int) else CLOSE_INTERNAL_ERROR


def _repaired_close(message: Message) -> Message:
    """The app's close message, or a copy with a deliverable code and reason."""
    code = message.get("code", CLOSE_NORMAL)
    reason = message.get("reason")
    good_code = _repaired_code(code)
    good_reason = truncate_reason(reason) if isinstance(reason, str) else None
    if good_code == code and good_reason == reason:
        return message
    logger.warning("repaired an undeliverable close from the app: code %r -> %d", code, good_code)
    return {**message, "code": good_code, "reason": good_reason or ""}


class DiagnosticsMiddleware:
    """Turn a websocket's generic failure into a component close code and a JSON frame.

    Args:
        app: the ASGI application to wrap.
        settings: the settings; read from ``WS_DIAG_*`` environment variables when omitted.
        probes: health probes consulted when a failure names no component.
        classifier: exception-type rules; the built-in ones when omitted.
        components: custom components the app uses, checked for clashing keys and codes.
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
            )
        elif tuple(probes):
            msg = "pass probes either to the middleware or to its checker, not both"
            raise ValueError(msg)
        self.checker = checker
        self.diagnoser = Diagnoser(self.classifier, checker, settings.probe_priority)
        self._health_path = settings.health_path
        self._rewrite_codes = settings.rewrite_codes
        self._passthrough_preaccept = settings.preaccept == "passthrough"
        self._refresh_pending = checker.refresh_interval is not None and bool(checker.probes)
        # The checker cuts its probes off at probe_timeout; this outer bound only
        # guards against a broken diagnoser, so it must not fire first.
        self._deadline = settings.probe_timeout + _DEADLINE_SLACK

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._refresh_pending:
            self._refresh_pending = False
            self.checker.start()
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

        logger.debug("websocket connect: path=%s client=%s", scope.get("path"), scope.get("client"))

        async def on_control(message: Message) -> None:
            nonlocal accepted, finished, gone
            kind = message["type"]
            if kind == "websocket.close" and not finished:
                if self._should_rewrite(message, accepted) and not gone:
                    logger.info("websocket failure intercepted: app closed with %s", message.get("code"))
                    finished = True
                    gone = await self._intervene(scope, send, None, message, accepted)
                    return
                finished = True
                await send(_repaired_close(message) if accepted else message)
                return
            await send(message)  # odd sequences are the server's to judge
            if kind == "websocket.accept":
                accepted = True
                logger.debug("websocket accepted: path=%s", scope.get("path"))
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
            logger.info("websocket failure intercepted: app raised %s", type(exc).__name__)
            finished = True
            await self._intervene(scope, send, exc, None, accepted)
            raise

    def _should_rewrite(self, close: Message, accepted: bool) -> bool:
        if not accepted and self._passthrough_preaccept:
            return False
        code = close.get("code", CLOSE_NORMAL)
        # After accept a code that cannot be delivered counts as the code it is repaired to.
        return code in self._rewrite_codes or (accepted and _repaired_code(code) in self._rewrite_codes)

    async def _intervene(
        self, scope: Scope, send: Send, exc: BaseException | None, app_close: Message | None, accepted: bool
    ) -> bool:
        """Diagnose within the deadline, then deliver. Returns whether the client is known gone.

        Never raises but for cancellation, and for the server's own answer to the
        app's own close when it refused ws_diag's messages.
        """
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._deadline):
                diagnosis = await self.diagnoser.diagnose(exc)
            if diagnosis is None:
                logger.debug("client already gone: %s", type(exc).__name__)
                return True
            messages = self._diagnosis_messages(scope, diagnosis, accepted)
        except Exception:
            logger.exception("ws_diag could not diagnose; falling back to a plain close")
            messages = _fallback_messages(app_close, accepted)
        else:
            _log_diagnosis(diagnosis, started, messages)
        send_timeout = self.settings.send_timeout
        try:
            async with asyncio.timeout(send_timeout):
                for message in messages:
                    await send(message)
        except TimeoutError:
            logger.warning("client too slow: frame and close not delivered within %ss", send_timeout)
        except OSError:
            logger.debug("client gone before the close was delivered")
            return True
        except Exception:
            # Server state machines differ; whatever this server refused, the app's
            # own exception (or its own close, sent below) is what must surface.
            logger.exception("the server refused ws_diag's messages")
            if app_close is not None:
                await send(_repaired_close(app_close) if accepted else app_close)
        else:
            logger.debug("close sent: code=%s", messages[-1].get("code") if messages else None)
        return False

    def _diagnosis_messages(self, scope: Scope, diagnosis: Diagnosis, accepted: bool) -> list[Message]:
        settings = self.settings
        text = frame_json(diagnosis, code_scheme=settings.code_scheme, expose_details=settings.expose_details)
        if not accepted and settings.preaccept == "http_denial" and _DENIAL_EXTENSION in scope.get("extensions", {}):
            return [
                {
                    "type": "websocket.http.response.start",
                    "status": diagnosis.component.http_status,
                    "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-store")],
                },
                {"type": "websocket.http.response.body", "body": text.encode()},
            ]
        close = {
            "type": "websocket.close",
            "code": wire_code(diagnosis.component, settings.code_scheme),
            "reason": close_reason(diagnosis),
        }
        frame = {"type": "websocket.send", "text": text}
        return [frame, close] if accepted else [{"type": "websocket.accept"}, frame, close]


def _fallback_messages(app_close: Message | None, accepted: bool) -> list[Message]:
    if app_close is not None:
        return [_repaired_close(app_close) if accepted else app_close]
    if accepted:
        return [{"type": "websocket.close", "code": CLOSE_INTERNAL_ERROR, "reason": ""}]
    return []  # the exception goes on to the server, which answers HTTP 500


def _log_diagnosis(diagnosis: Diagnosis, started: float, messages: list[Message]) -> None:
    took_ms = (time.perf_counter() - started) * 1000
    code = messages[-1].get("code", messages[0].get("status")) if messages else None
    component = diagnosis.component
    logger.warning(
        "diagnosis: component=%s code=%s source=%s took_ms=%.2f incident_id=%s",
        component.display_name,
        code,
        diagnosis.source,
        took_ms,
        diagnosis.incident_id,
        extra={
            "component": component.key,
            "code": code,
            "incident_id": diagnosis.incident_id,
            "took_ms": round(took_ms, 3),
            "diagnosis_source": diagnosis.source,
        },
    )
