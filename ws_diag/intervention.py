"""The intervention after a failure: diagnose within the deadline, build frame and close, log the diagnosis.

Delivering them is :mod:`ws_diag.delivery`'s.

Nothing here runs on the message path.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

from . import _concurrency as cc
from ._types import Message, Scope, Send
from .attribution import Diagnoser
from .components import SERVICE_RESTART
from .delivery import Delivery, deliver
from .diagnosis import Diagnosis, valid_request_id
from .errors import WebSocketComponentError
from .lifecycle import SCOPE_KEY, Connection, DiagnosisEvent
from .logs import LogEvent
from .settings import DiagSettings
from .wire.closecodes import CLOSE_INTERNAL_ERROR, CLOSE_NORMAL, is_framework_error_close_code
from .wire.frame import close_reason, frame_json
from .wire.schemes import seed_component, wire_code

__all__ = ["Intervention", "Responder", "log_own_error"]

logger = logging.getLogger("ws_diag")

_DENIAL_EXTENSION = "websocket.http.response"
# The checker cuts its probes off at probe_timeout, measured from when its run begins;
# a failure joining a shared run gets that run's answer. The outer bound only guards
# against a broken diagnoser, so it must not fire first even on an event loop saturated
# by a storm: every session of a storm starts its own clock in the same loop iteration,
# and with 10,000 sessions joining the run alone took 0.6-1.1 s (benchmarks, section 9).
# A per-session bound of probe_timeout + 0.25 s gave up before the shared run began and
# turned a whole storm into Generic closes; the backstop is therefore a multiple of it.
_DEADLINE_SLACK = 0.25
_BACKSTOP_FACTOR = 4
_BACKSTOP_SLACK = 1.0


@dataclass(frozen=True, slots=True)
class Intervention:
    """What an intervention came to.

    ``event`` is ``None`` when nothing was diagnosed for anybody: the client was
    gone before ws_diag's first message (the server refused it), or diagnosing
    failed. ``app_close`` is the app's own close, still to be handed to the server
    unchanged by the caller, outside ws_diag's error handling, so that whatever the
    server answers reaches the app exactly as it would without ws_diag.
    """

    event: DiagnosisEvent | None
    gone: bool
    app_close: Message | None = None


class Responder:
    """Diagnoses a failure and tells the client, bounded in time, never raising.

    Args:
        settings: deadlines, code scheme, exposure and pre-accept mode.
        diagnoser: decides the component.
    """

    def __init__(self, settings: DiagSettings, diagnoser: Diagnoser) -> None:
        self.settings = settings
        self.diagnoser = diagnoser
        checker_timeout = diagnoser.checker.timeout if diagnoser.checker is not None else 0.0
        deadline = max(settings.probe_timeout, checker_timeout) + _DEADLINE_SLACK
        self._backstop = deadline * _BACKSTOP_FACTOR + _BACKSTOP_SLACK

    async def intervene(
        self,
        scope: Scope,
        send: Send,
        exc: BaseException | None,
        app_close: Message | None,
        accepted: bool,
        *,
        failure_at: float | None = None,
    ) -> Intervention:
        """Diagnose within the deadline, then deliver frame and close within ``send_timeout``.

        The deadline is the probe run's (``probe_timeout`` from when the run begins: the
        checker's); every failure that joins a shared run gets its answer, however long the
        event loop took to let the run begin. A backstop of 4 x (``probe_timeout`` + 0.25 s)
        + 1 s, measured from this call, guards against a broken diagnoser only.

        Args:
            exc: what the app raised, or the exception it was handling when it sent ``app_close``.
            app_close: the app's own close, when that is what is being diagnosed.
            accepted: whether the app had accepted the websocket.
            failure_at: when the failure was seen, on the checker's clock (see
                :meth:`Diagnoser.diagnose`); by default, when diagnosing starts.

        Never raises but for cancellation: a server refusing ws_diag's first message
        means the client is gone (RuntimeError on uvicorn's legacy websockets, an
        ``OSError`` elsewhere), logged at DEBUG.
        """
        started = time.perf_counter()
        diagnosis: Diagnosis | None = None
        try:
            async with cc.timeout(self._backstop):
                diagnosis = await self._diagnose(exc, app_close, failure_at)
            diagnosis = self._with_request_id(diagnosis, scope)
            messages = self._messages(scope, diagnosis, accepted)
        except TimeoutError:
            # Still tell the client something, with an incident id for the log.
            logger.warning(
                "diagnosis passed its deadline; reporting Generic", extra={"ws_diag_event": LogEvent.DEADLINE}
            )
            diagnosis = self._with_request_id(self.diagnoser.fallback(exc), scope)
            messages = self._messages(scope, diagnosis, accepted)
        except Exception as err:
            log_own_error("ws_diag could not diagnose; falling back to a plain close", err, LogEvent.FALLBACK)
            if app_close is not None:
                return Intervention(None, gone=False, app_close=app_close)
            diagnosis, messages = None, _fallback_messages(accepted)
        took_ms = (time.perf_counter() - started) * 1000
        outcome, sent = await deliver(send, messages, self.settings.send_timeout)
        if outcome is Delivery.GONE:
            logger.debug(
                "client gone: the server refused ws_diag's first message", extra={"ws_diag_event": LogEvent.CLIENT_GONE}
            )
            return Intervention(None, gone=True, app_close=app_close)
        code, status = _outcome(messages)
        delivered = outcome is Delivery.DELIVERED
        if sent is not None and sent["type"] == "websocket.close":
            code = sent.get("code", CLOSE_NORMAL)
        if diagnosis is None:
            return Intervention(None, gone=False)
        _log_diagnosis(diagnosis, code if status is None else status, took_ms, scope)
        if delivered:
            logger.debug(
                "close sent: code=%s",
                code,
                extra={"ws_diag_event": LogEvent.CLOSE_SENT, "code": code, "incident_id": diagnosis.incident_id},
            )
        event = DiagnosisEvent(diagnosis, code, status, delivered, took_ms, scope.get("path"), exc)
        return Intervention(event, gone=outcome is Delivery.LATE_GONE)

    async def restart(self, scope: Scope, send: Send) -> bool:
        """Tell an open session the server is shutting down: frame, then 1012 Service Restart.

        Not a failure: no ``diagnosis:`` line, no diagnosed event. The frame's source is
        ``shutdown`` and its ``retry_after_ms`` the ``restart`` entry of
        ``retry_after_by_component`` (else ``retry_after``). Bounded by ``send_timeout``;
        a strict server gets 4012. Returns whether frame and close went out.
        """
        retry_after = self.diagnoser.default_retry_after(SERVICE_RESTART)
        diagnosis = Diagnosis.for_component(SERVICE_RESTART, "shutdown", retry_after=retry_after)
        messages = self._messages(scope, diagnosis, accepted=True)
        outcome, sent = await deliver(send, messages, self.settings.send_timeout)
        delivered = outcome is Delivery.DELIVERED
        if delivered:
            code = sent.get("code") if sent is not None else None
            logger.info(
                "service restart: session closed with %s, incident_id=%s",
                code,
                diagnosis.incident_id,
                extra={"ws_diag_event": LogEvent.RESTART, "code": code, "incident_id": diagnosis.incident_id},
            )
        return delivered

    def _with_request_id(self, diagnosis: Diagnosis, scope: Scope) -> Diagnosis:
        """The diagnosis with the connection's request id: a listener's, else the header's (validated).

        Per failure, never per connection: the headers are read only here.
        """
        connection: Connection | None = scope.get(SCOPE_KEY)
        request_id = valid_request_id(connection.request_id) if connection is not None else None
        header = self.settings.request_id_header
        if request_id is None and header is not None:
            name = header.lower().encode("latin-1")
            raw = next((value for key, value in scope.get("headers", ()) if key == name), None)
            request_id = valid_request_id(raw)
            if connection is not None:
                connection.request_id = request_id
        return diagnosis if request_id is None else dataclasses.replace(diagnosis, request_id=request_id)

    async def _diagnose(
        self, exc: BaseException | None, app_close: Message | None, failure_at: float | None
    ) -> Diagnosis:
        """The component; for an app's close, its seed code (legacy scheme) or what it was handling."""
        component = seed_component(app_close.get("code"), self.settings.code_scheme) if app_close else None
        if component is not None:
            retry_after = self.diagnoser.default_retry_after(component)
            diagnosis = Diagnosis.for_component(component, "app", exc=exc, retry_after=retry_after)
        else:
            diagnosis = await self.diagnoser.diagnose(exc, failure_at=failure_at)
        reason = app_close.get("reason") if app_close else None
        if isinstance(reason, str) and reason.strip() and _reason_is_the_apps(app_close, exc):
            # The app wrote its close reason for the client: client-safe by the same rule
            # as WebSocketComponentError.message.
            diagnosis = dataclasses.replace(diagnosis, message=reason)
        return diagnosis

    def _messages(self, scope: Scope, diagnosis: Diagnosis, accepted: bool) -> list[Message]:
        settings = self.settings
        expose = settings.expose_details
        if not accepted:
            # Before accept the peer is not yet trusted: any origin could have opened the
            # socket (cross-site websocket hijacking), so the frame names nobody and shows nothing.
            diagnosis = dataclasses.replace(diagnosis, user_id=None)
            expose = False
        text = frame_json(
            diagnosis,
            code_scheme=settings.code_scheme,
            expose_details=expose,
            request_id=settings.request_id_in_frame,
        )
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


# Exceptions whose text a framework sends as the close reason of its generic error close and
# that the app wrote for the client (Litestar: ``raise WebSocketException(detail=...)``).
# Any other exception's text (Litestar sends ``exc.detail`` of every LitestarException, such
# as a SerializationException naming a model and its fields) never reaches the frame.
_CLIENT_WORDED = frozenset({"litestar.exceptions.websocket_exceptions.WebSocketException"})


def _reason_is_the_apps(app_close: Message | None, exc: BaseException | None) -> bool:
    """Whether the close's reason may become the frame's message.

    An app's own close (``except ...: close(1011, reason)``) keeps its reason. A framework's
    generic error close (4500, sent while ``exc`` is handled) is the framework's text: it
    gives way to a WebSocketComponentError's own message, and is taken only when the
    exception is one the app words for its client (``_CLIENT_WORDED``); otherwise it may be
    internal text, and the component's description stands.
    """
    if app_close is None or not is_framework_error_close_code(app_close.get("code")):
        return True
    if exc is None or isinstance(exc, WebSocketComponentError):
        return exc is None
    return any(f"{cls.__module__}.{cls.__qualname__}" in _CLIENT_WORDED for cls in type(exc).__mro__)


def log_own_error(message: str, err: BaseException, event: str) -> None:
    """Log ws_diag's own error with its traceback, but not the app's exception it was raised under."""
    err.__suppress_context__ = True
    logger.error(message, exc_info=err, extra={"ws_diag_event": event})


def _fallback_messages(accepted: bool) -> list[Message]:
    if accepted:
        return [{"type": "websocket.close", "code": CLOSE_INTERNAL_ERROR, "reason": ""}]
    return []  # the exception goes on to the server, which answers HTTP 500


def _outcome(messages: list[Message]) -> tuple[int | None, int | None]:
    """(close code, HTTP status) of what is about to be sent."""
    for message in messages:
        if message["type"] == "websocket.close":
            return message.get("code", CLOSE_NORMAL), None
        if message["type"] == "websocket.http.response.start":
            return None, message["status"]
    return None, None


def _log_diagnosis(diagnosis: Diagnosis, code: int | None, took_ms: float, scope: Scope) -> None:
    component = diagnosis.component
    # Fields listeners added for this connection (trace ids, ...); ws_diag's own come last.
    connection: Connection | None = scope.get(SCOPE_KEY)
    fields = connection.log_fields if connection is not None and connection.log_fields else {}
    logger.warning(
        "diagnosis: component=%s code=%s source=%s took_ms=%.2f incident_id=%s",
        component.display_name,
        code,
        diagnosis.source,
        took_ms,
        diagnosis.incident_id,
        extra={
            **fields,
            "ws_diag_event": LogEvent.DIAGNOSIS,
            "component": component.key,
            "code": code,
            "incident_id": diagnosis.incident_id,
            "took_ms": round(took_ms, 3),
            "diagnosis_source": diagnosis.source,
            "probe": diagnosis.probe,
            "path": scope.get("path"),
            "request_id": diagnosis.request_id,
        },
    )
