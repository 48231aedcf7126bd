"""After a failure: diagnose within the deadline, then deliver frame and close.

Nothing here runs on the message path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ._types import Message, Scope, Send
from .codes import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    SERVICE_RESTART,
    repair_close_code,
    seed_component,
    strict_fallback_code,
    truncate_reason,
    wire_code,
)
from .diagnoser import Diagnoser
from .diagnosis import Diagnosis, close_reason, frame_json, valid_request_id
from .lifecycle import SCOPE_KEY, Connection
from .settings import DiagSettings

__all__ = [
    "DiagnosisEvent",
    "DiagnosisHook",
    "Intervention",
    "Responder",
    "log_own_error",
    "repaired_close",
    "repaired_code",
    "send_close",
]

logger = logging.getLogger("ws_diag")

_DENIAL_EXTENSION = "websocket.http.response"
# The checker cuts its probes off at probe_timeout; the outer bound only guards
# against a broken diagnoser, so it must not fire first, even on an event loop
# saturated by a storm of failing sessions (measured: +50 ms was too little for
# 1,000 sessions on uvicorn-wsproto).
_DEADLINE_SLACK = 0.25


@dataclass(frozen=True, slots=True)
class DiagnosisEvent:
    """What ``on_diagnosis`` hooks receive after each intervention.

    ``code`` is the close code sent (``None`` for an HTTP denial, whose status is
    ``http_status``); ``delivered`` is false when the client left or was too slow.
    ``exception`` is the app's own exception, if any: for server-side reporting
    only, never for the client.
    """

    diagnosis: Diagnosis
    code: int | None
    http_status: int | None
    delivered: bool
    took_ms: float
    path: str | None
    exception: BaseException | None


DiagnosisHook = Callable[[DiagnosisEvent], object]  # may return an awaitable, awaited within send_timeout


def repaired_code(code: object) -> int:
    """A deliverable close code for whatever the app put in ``code`` (``None``: the ASGI default, 1000)."""
    if code is None:
        return CLOSE_NORMAL
    return repair_close_code(code) if isinstance(code, int) else CLOSE_INTERNAL_ERROR


def repaired_close(message: Message) -> Message:
    """The app's close message, or a copy with a deliverable code and reason."""
    code = message.get("code", CLOSE_NORMAL)
    reason = message.get("reason")
    good_code = repaired_code(code)
    good_reason = truncate_reason(reason) if isinstance(reason, str) else None
    if good_code == code and good_reason == reason:
        return message
    logger.warning(
        "repaired an undeliverable close from the app: code %r -> %d, reason of %d characters -> %d",
        code,
        good_code,
        len(reason) if isinstance(reason, str) else 0,
        len(good_reason or ""),
        extra={"ws_diag_event": "repaired", "code": good_code},
    )
    return {**message, "code": good_code, "reason": good_reason or ""}


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
        self._deadline = max(settings.probe_timeout, checker_timeout) + _DEADLINE_SLACK

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
            async with asyncio.timeout(self._deadline):
                diagnosis = await self._diagnose(exc, app_close, failure_at)
            diagnosis = self._with_request_id(diagnosis, scope)
            messages = self._messages(scope, diagnosis, accepted)
        except TimeoutError:
            # Still tell the client something, with an incident id for the log.
            logger.warning("diagnosis passed its deadline; reporting Generic", extra={"ws_diag_event": "deadline"})
            diagnosis = self._with_request_id(self.diagnoser.fallback(exc), scope)
            messages = self._messages(scope, diagnosis, accepted)
        except Exception as err:
            log_own_error("ws_diag could not diagnose; falling back to a plain close", err, "fallback")
            if app_close is not None:
                return Intervention(None, gone=False, app_close=app_close)
            diagnosis, messages = None, _fallback_messages(accepted)
        took_ms = (time.perf_counter() - started) * 1000
        outcome, sent = await self._deliver(send, messages)
        if outcome is _Delivery.GONE:
            logger.debug(
                "client gone: the server refused ws_diag's first message", extra={"ws_diag_event": "client_gone"}
            )
            return Intervention(None, gone=True, app_close=app_close)
        code, status = _outcome(messages)
        delivered = outcome is _Delivery.DELIVERED
        if sent is not None and sent["type"] == "websocket.close":
            code = sent.get("code", CLOSE_NORMAL)
        if diagnosis is None:
            return Intervention(None, gone=False)
        _log_diagnosis(diagnosis, code if status is None else status, took_ms, scope)
        if delivered:
            logger.debug(
                "close sent: code=%s",
                code,
                extra={"ws_diag_event": "close_sent", "code": code, "incident_id": diagnosis.incident_id},
            )
        event = DiagnosisEvent(diagnosis, code, status, delivered, took_ms, scope.get("path"), exc)
        return Intervention(event, gone=outcome is _Delivery.LATE_GONE)

    async def restart(self, scope: Scope, send: Send) -> bool:
        """Tell an open session the server is shutting down: frame, then 1012 Service Restart.

        Not a failure: no ``diagnosis:`` line, no diagnosed event. The frame's source is
        ``shutdown`` and its ``retry_after_ms`` the ``restart`` entry of
        ``retry_after_by_component`` (else ``retry_after``). Bounded by ``send_timeout``;
        a strict server gets 4012. Returns whether frame and close went out.
        """
        retry_after = self.diagnoser.default_retry_after(SERVICE_RESTART)
        diagnosis = Diagnosis.for_component(SERVICE_RESTART, "shutdown", retry_after=retry_after)
        outcome, sent = await self._deliver(send, self._messages(scope, diagnosis, accepted=True))
        delivered = outcome is _Delivery.DELIVERED
        if delivered:
            code = sent.get("code") if sent is not None else None
            logger.info(
                "service restart: session closed with %s, incident_id=%s",
                code,
                diagnosis.incident_id,
                extra={"ws_diag_event": "restart", "code": code, "incident_id": diagnosis.incident_id},
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
        if isinstance(reason, str) and reason.strip():
            # The app wrote its close reason for the client: client-safe by the same
            # rule as WebSocketComponentError.message.
            diagnosis = dataclasses.replace(diagnosis, message=reason)
        return diagnosis

    async def _deliver(self, send: Send, messages: list[Message]) -> tuple[_Delivery, Message | None]:
        """Send ``messages`` within send_timeout; returns how it went and the last message sent.

        GONE: the server refused the first message; LATE_GONE: a later one; SLOW: the
        client did not take them in time (the close then gets a last-resort budget of
        its own). The last message sent is the close as actually sent (a strict server
        may have had it in the private range).
        """
        send_timeout = self.settings.send_timeout
        pending = list(messages)
        sent: Message | None = None
        try:
            async with asyncio.timeout(send_timeout):
                while pending:
                    if sent is None:
                        # A refusal of the first message says nothing about close codes:
                        # the client is gone (uvicorn's legacy websockets raises RuntimeError).
                        try:
                            await send(pending[0])
                        except Exception:
                            return _Delivery.GONE, None
                        sent = pending[0]
                    else:
                        sent = await send_close(send, pending[0])
                    del pending[0]
        except TimeoutError:
            logger.warning(
                "client too slow: frame and close not delivered within %ss",
                send_timeout,
                extra={"ws_diag_event": "send_timeout"},
            )
            # The close must still go out, with a budget of its own: without it uvicorn
            # drops the connection (1006) and an app waiting for the disconnect never finishes.
            close = next((m for m in pending if m["type"] == "websocket.close"), None)
            if close is not None:
                sent = await self._last_resort(send, close)
            return _Delivery.SLOW, sent
        except Exception:
            # The first message went, a later one did not: the connection ended in between.
            logger.debug("client gone before the close was delivered", extra={"ws_diag_event": "client_gone"})
            return _Delivery.LATE_GONE, sent
        return _Delivery.DELIVERED, sent

    async def _last_resort(self, send: Send, close: Message) -> Message | None:
        """One more bounded attempt at a close; returns it as sent, if it went."""
        try:
            async with asyncio.timeout(self.settings.send_timeout):
                return await send_close(send, close)
        except Exception:
            logger.warning("the close could not be delivered either", extra={"ws_diag_event": "send_timeout"})
            return None

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


class _Delivery(enum.Enum):
    DELIVERED = "delivered"
    SLOW = "slow"
    GONE = "gone"
    LATE_GONE = "late-gone"


async def send_close(send: Send, message: Message) -> Message:
    """Send ``message``; a close a strict server refuses is retried once as code + 3000.

    Some servers accept only 1000 and 3000-4999 from an app (daphne, through
    autobahn's ``sendClose``, raises from ``send``; see ``codes.strict_fallback_code``).
    Returns the message actually sent. When the retry is refused too, the first
    refusal is raised, outside any handler of ws_diag's, so its ``__context__`` is
    what the app was handling, exactly as without ws_diag.
    """
    code = message.get("code", CLOSE_NORMAL) if message["type"] == "websocket.close" else None
    fallback = strict_fallback_code(code) if isinstance(code, int) else None
    refusal: Exception | None = None
    try:
        await send(message)
    except OSError:
        raise
    except Exception as err:
        if fallback is None:
            raise
        refusal = err
    if refusal is None:
        return message
    second = {**message, "code": fallback}
    try:
        await send(second)
    except Exception:
        retried = False
    else:
        retried = True
    if not retried:
        raise refusal
    logger.info(
        "server refused close code %s; closed with %s instead",
        code,
        fallback,
        extra={"ws_diag_event": "strict_fallback", "code": fallback},
    )
    return second


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
            "ws_diag_event": "diagnosis",
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
