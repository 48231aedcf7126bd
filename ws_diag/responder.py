"""After a failure: diagnose within the deadline, deliver frame and close, notify hooks.

Nothing here runs on the message path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ._types import Message, Scope, Send
from .codes import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    Component,
    repair_close_code,
    strict_fallback_code,
    truncate_reason,
    wire_code,
)
from .diagnoser import Diagnoser
from .diagnosis import Diagnosis, close_reason, frame_json
from .settings import DiagSettings

__all__ = ["DiagnosisEvent", "DiagnosisHook", "Responder", "repaired_close", "repaired_code"]

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


class Responder:
    """Diagnoses a failure and tells the client, bounded in time, never raising.

    Args:
        settings: deadlines, code scheme, exposure and pre-accept mode.
        diagnoser: decides the component.
        hooks: called with a :class:`DiagnosisEvent` after each intervention;
            a hook that raises is logged and ignored.
    """

    def __init__(self, settings: DiagSettings, diagnoser: Diagnoser, hooks: Iterable[DiagnosisHook] = ()) -> None:
        self.settings = settings
        self.diagnoser = diagnoser
        self.hooks = tuple(hooks)
        checker_timeout = diagnoser.checker.timeout if diagnoser.checker is not None else 0.0
        self._deadline = max(settings.probe_timeout, checker_timeout) + _DEADLINE_SLACK

    async def intervene(
        self, scope: Scope, send: Send, exc: BaseException | None, app_close: Message | None, accepted: bool
    ) -> bool:
        """Diagnose within the deadline, then deliver. Returns whether the client is known gone.

        Never raises but for cancellation, and for the server's own answer to the
        app's own close when the server refused ws_diag's messages.
        """
        started = time.perf_counter()
        diagnosis: Diagnosis | None = None
        try:
            async with asyncio.timeout(self._deadline):
                diagnosis = await self.diagnoser.diagnose(exc)
            if diagnosis is None:
                logger.debug("client already gone: %s", type(exc).__name__, extra={"ws_diag_event": "client_gone"})
                return True
            messages = self._messages(scope, diagnosis, accepted)
        except TimeoutError:
            # Still tell the client something, with an incident id for the log.
            logger.warning("diagnosis passed its deadline; reporting Generic", extra={"ws_diag_event": "deadline"})
            diagnosis = Diagnosis.for_component(Component.GENERIC, "default", exc=exc)
            messages = self._messages(scope, diagnosis, accepted)
        except Exception as err:
            _log_error("ws_diag could not diagnose; falling back to a plain close", err, "fallback")
            diagnosis = None
            messages = _fallback_messages(app_close, accepted)
        code, status = _outcome(messages)
        took_ms = (time.perf_counter() - started) * 1000
        if diagnosis is not None:
            _log_diagnosis(diagnosis, code if status is None else status, took_ms, scope)
        delivered, gone, sent_code = await self._deliver(send, messages, app_close, accepted)
        code = sent_code if sent_code is not None else code
        if delivered:
            logger.debug(
                "close sent: code=%s",
                code,
                extra={"ws_diag_event": "close_sent", "code": code, "incident_id": _incident(diagnosis)},
            )
        if diagnosis is not None and self.hooks:
            event = DiagnosisEvent(diagnosis, code, status, delivered, took_ms, scope.get("path"), exc)
            await self._notify(event)
        return gone

    async def _deliver(
        self, send: Send, messages: list[Message], app_close: Message | None, accepted: bool
    ) -> tuple[bool, bool, int | None]:
        """Send ``messages`` within send_timeout. Returns (delivered, client gone, close code sent)."""
        send_timeout = self.settings.send_timeout
        sent_code = None
        pending = list(messages)
        try:
            async with asyncio.timeout(send_timeout):
                while pending:
                    # A refusal of the very first message says nothing about close codes:
                    # the client may simply be gone (uvicorn refuses with RuntimeError then).
                    sent = await self._send_one(send, pending[0], retry=len(pending) < len(messages))
                    del pending[0]
                    if sent["type"] == "websocket.close":
                        sent_code = sent.get("code", CLOSE_NORMAL)
        except TimeoutError:
            logger.warning(
                "client too slow: frame and close not delivered within %ss",
                send_timeout,
                extra={"ws_diag_event": "send_timeout"},
            )
            # The close must still go out, with a budget of its own: without it uvicorn
            # drops the connection (1006) and an app waiting for the disconnect never finishes.
            close = next((m for m in pending if m["type"] == "websocket.close"), None)
            return False, False, await self._last_resort(send, close) if close is not None else None
        except OSError:
            logger.debug("client gone before the close was delivered", extra={"ws_diag_event": "client_gone"})
            return False, True, None
        except Exception as err:
            # Server state machines differ; whatever this server refused, the app's
            # own exception (or its own close, sent below) is what must surface.
            _log_error("the server refused ws_diag's messages", err, "refused")
            if app_close is not None:
                async with asyncio.timeout(send_timeout):
                    await send(repaired_close(app_close) if accepted else app_close)
        else:
            return bool(messages), False, sent_code
        return False, False, None

    async def _last_resort(self, send: Send, close: Message) -> int | None:
        """One more bounded attempt at a close; returns the code sent, if it went."""
        try:
            async with asyncio.timeout(self.settings.send_timeout):
                sent = await self._send_one(send, close)
        except Exception:
            logger.warning("the close could not be delivered either", extra={"ws_diag_event": "send_timeout"})
            return None
        code: int = sent.get("code", CLOSE_NORMAL)
        return code

    async def _send_one(self, send: Send, message: Message, *, retry: bool = True) -> Message:
        """Send ``message``; returns what was actually sent."""
        try:
            await send(message)
        except OSError:
            raise
        except Exception:
            # A strict server (daphne) refuses registered close codes such as 1011:
            # retry once in the private range, where every server accepts it.
            is_close = retry and message["type"] == "websocket.close"
            fallback = strict_fallback_code(message["code"]) if is_close else None
            if fallback is None:
                raise
            logger.info(
                "server refused close code %s; closing with %s instead",
                message["code"],
                fallback,
                extra={"ws_diag_event": "strict_fallback", "code": fallback},
            )
            second = {**message, "code": fallback}
            await send(second)
            return second
        return message

    def _messages(self, scope: Scope, diagnosis: Diagnosis, accepted: bool) -> list[Message]:
        settings = self.settings
        expose = settings.expose_details
        if not accepted:
            # Before accept the peer is not yet trusted: any origin could have opened the
            # socket (cross-site websocket hijacking), so the frame names nobody and shows nothing.
            diagnosis = dataclasses.replace(diagnosis, user_id=None)
            expose = False
        text = frame_json(diagnosis, code_scheme=settings.code_scheme, expose_details=expose)
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

    async def _notify(self, event: DiagnosisEvent) -> None:
        for hook in self.hooks:
            try:
                result = hook(event)
                if inspect.isawaitable(result):
                    async with asyncio.timeout(self.settings.send_timeout):
                        await result
            except Exception as err:
                _log_error(f"on_diagnosis hook {hook!r} failed", err, "hook_failed")


def _log_error(message: str, err: BaseException, event: str) -> None:
    """Log ws_diag's own error with its traceback, but not the app's exception it was raised under."""
    err.__suppress_context__ = True
    logger.error(message, exc_info=err, extra={"ws_diag_event": event})


def _fallback_messages(app_close: Message | None, accepted: bool) -> list[Message]:
    if app_close is not None:
        return [repaired_close(app_close) if accepted else app_close]
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


def _incident(diagnosis: Diagnosis | None) -> str | None:
    return diagnosis.incident_id if diagnosis is not None else None


def _log_diagnosis(diagnosis: Diagnosis, code: int | None, took_ms: float, scope: Scope) -> None:
    component = diagnosis.component
    logger.warning(
        "diagnosis: component=%s code=%s source=%s took_ms=%.2f incident_id=%s",
        component.display_name,
        code,
        diagnosis.source,
        took_ms,
        diagnosis.incident_id,
        extra={
            "ws_diag_event": "diagnosis",
            "component": component.key,
            "code": code,
            "incident_id": diagnosis.incident_id,
            "took_ms": round(took_ms, 3),
            "diagnosis_source": diagnosis.source,
            "probe": diagnosis.probe,
            "path": scope.get("path"),
        },
    )
