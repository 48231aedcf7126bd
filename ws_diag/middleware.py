"""The ASGI middleware: watches a websocket's accept, close and exceptions.

The message path costs one dict lookup per ``send``: the send wrapper is a
plain function that hands ``websocket.send`` straight to the server and routes
everything else (accept, close, the HTTP denial) to ``_on_control``. ``receive``
is passed through untouched unless ``track_disconnect`` is set. A connection
costs one small state object (:class:`~ws_diag.lifecycle.Connection`) and one
closure; integrations follow it through lifecycle events, never per message.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from . import _concurrency as cc
from ._types import ASGIApp, Message, Receive, Scope, Send
from .attribution import Diagnoser
from .classify import Classifier
from .classify.departure import client_left
from .components import ComponentLike, validate_components
from .delivery import repaired_close, repaired_code, send_close
from .health import HealthChecker, HealthReport, StatusHook
from .health.endpoints import health_routes
from .health.probes import Probe
from .intervention import Intervention, Responder, log_own_error
from .lifecycle import SCOPE_KEY, Connection, ConnectionListener, DiagnosisHook, Lifecycle, health_hooks
from .settings import DiagSettings, load_settings
from .settings.references import check_references
from .wire.closecodes import CLOSE_NORMAL, is_failure_close_code, is_framework_error_close_code

__all__ = ["SCOPE_KEY", "DiagnosticsMiddleware"]

logger = logging.getLogger("ws_diag")

# SCOPE_KEY (from lifecycle): the scope key under which the outermost ws_diag layer leaves
# its Connection. Inner layers (a second wrap, add_middleware plus an explicit wrap) see
# it and stay transparent: exactly one layer intervenes per connection.

_Hook = TypeVar("_Hook", bound=Callable[..., object])
ReportHook = Callable[[HealthReport], object]


def _as_tuple(hooks: _Hook | Iterable[_Hook]) -> tuple[_Hook, ...]:
    return (hooks,) if callable(hooks) else tuple(hooks)


def _tracking(receive: Receive, state: Connection, departed: Callable[[Connection], None]) -> Receive:
    """``receive``, noting ``websocket.disconnect`` (track_disconnect: costs ~110 ns per message).

    A disconnect while the session is still open (nobody closed it) is a departure:
    ``departed`` marks it, once, like every other way of learning it.
    """

    async def tracking_receive() -> Message:
        message = await receive()
        if message["type"] == "websocket.disconnect" and not state.finished:
            departed(state)
        return message

    return tracking_receive


def _subscribe(checker: HealthChecker, report_hooks: Iterable[ReportHook], status_hooks: Iterable[StatusHook]) -> None:
    """Hand the listeners' health events to a checker built elsewhere (once each: it may be shared)."""
    checker.on_report = (*checker.on_report, *(hook for hook in report_hooks if hook not in checker.on_report))
    checker.on_status_change = (
        *checker.on_status_change,
        *(hook for hook in status_hooks if hook not in checker.on_status_change),
    )


class DiagnosticsMiddleware:
    """Turn a websocket's generic failure into a component close code and a JSON frame.

    Args:
        app: the ASGI application to wrap.
        settings: a :class:`DiagSettings`, a mapping of its fields, or omitted to read ``WS_DIAG_*``
            variables (see :func:`~ws_diag.settings.load_settings`; ``TypeError`` for anything else).
        probes: health probes consulted when a failure names no component.
        checker: a :class:`~ws_diag.health.HealthChecker` to use instead of one built from
            ``settings`` and ``probes`` (share one between the middleware and a mounted
            :class:`~ws_diag.health.HealthApp`); then pass probes to the checker, not here.
        classifier: exception-type rules; the built-in ones when omitted.
        components: custom components the app uses, checked for clashing keys and codes.
        on_diagnosis: plain callables given a :class:`~ws_diag.DiagnosisEvent` after each
            intervention; sugar for a listener overriding only ``diagnosed``. A hook that
            raises is logged and ignored.
        on_health_report: plain callables given each new health report; sugar for a listener
            overriding only ``health_report`` (with ``checker=``, give them to the checker).
        listeners: :class:`~ws_diag.lifecycle.ConnectionListener` objects that follow every
            connection's events (opened, accepted, diagnosed, client_gone, closed) and the
            checker's (health_report, status_changed; handed to ``checker`` when one is given).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: DiagSettings | Mapping[str, Any] | None = None,
        probes: Iterable[Probe] = (),
        checker: HealthChecker | None = None,
        classifier: Classifier | None = None,
        components: Iterable[ComponentLike] = (),
        on_diagnosis: DiagnosisHook | Iterable[DiagnosisHook] = (),
        on_health_report: ReportHook | Iterable[ReportHook] = (),
        listeners: Iterable[ConnectionListener] = (),
    ) -> None:
        self.app = app
        self.settings = settings = load_settings(settings)
        self.components = validate_components(components)
        self.classifier = classifier if classifier is not None else Classifier()
        listeners = tuple(listeners)
        report_hooks, status_hooks = health_hooks(listeners)  # the listeners' health events, via the checker
        if checker is None:  # the settings' references are checked there, once, with the components
            checker = HealthChecker.from_settings(
                settings,
                probes,
                on_report=(*_as_tuple(on_health_report), *report_hooks),
                on_status_change=status_hooks,
                components=self.components,
            )
        elif tuple(probes) or _as_tuple(on_health_report):
            msg = "pass probes and on_health_report either to the middleware or to its checker, not both"
            raise ValueError(msg)
        else:
            probe_names = [probe.name for probe in checker.probes]
            check_references(settings, probe_names=probe_names, components=self.components)
            _subscribe(checker, report_hooks, status_hooks)
        self.checker = checker
        self.diagnoser = Diagnoser(
            self.classifier,
            checker,
            settings.probe_priority,
            retry_after=settings.retry_after,
            retry_after_by_component=settings.retry_after_by_component,
        )
        self.responder = Responder(settings, self.diagnoser)
        self.lifecycle = Lifecycle.build(listeners, _as_tuple(on_diagnosis), settings.send_timeout)
        self._events = bool(self.lifecycle.listeners)
        self._health_routes = health_routes(settings)
        self._rewrite_codes = settings.rewrite_codes
        self._passthrough_preaccept = settings.preaccept == "passthrough"
        self._track = settings.track_disconnect
        self._reraise = settings.reraise
        self._log_client = settings.log_client_address
        self._refresh = checker.refresh_interval is not None and bool(checker.probes)
        # Work before a call: checking the async library (the first call), starting the refresh.
        self._prepare = True
        self._library_checked = False
        self._unsupported = False  # not asyncio, not trio: everything passes through unwatched

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: C901 - one coroutine per connection (below)
        if (self._prepare and not self._prepared()) or scope["type"] != "websocket" or SCOPE_KEY in scope:
            # Not a websocket, an outer ws_diag layer watches it, or ws_diag cannot run here.
            # The websocket path below stays in this coroutine: another coroutine frame
            # would cost ~400 B per connection.
            await self._pass_through(scope, receive, send)
            return
        # A connection costs one small state object and one closure: the send wrapper.
        state = scope[SCOPE_KEY] = Connection(scope)
        logger.debug(
            "websocket connect: path=%s client=%s",
            scope.get("path"),
            scope.get("client") if self._log_client else "-",  # log_client_address=false: privacy
            extra={"ws_diag_event": "connect", "path": scope.get("path")},
        )
        on_control = self._on_control

        def wrapped_send(message: Message) -> Awaitable[None]:
            # The message path: one dict lookup, then the server's own send.
            if message["type"] == "websocket.send":
                return send(message)
            return on_control(state, send, message)

        if self._events:
            self.lifecycle.opened(state)
        try:
            await self.app(scope, _tracking(receive, state, self._mark_gone) if self._track else receive, wrapped_send)
        except Exception as exc:
            if await self._on_exception(state, send, exc):
                raise
        except BaseException as exc:  # asyncio's CancelledError, trio's Cancelled, KeyboardInterrupt, ...
            if cc.is_cancellation(exc):
                await self._on_cancelled(state, send)
            raise
        else:
            if state.accepted and not (state.finished or state.gone):
                await self._on_return(state, send)
        finally:
            if state.outcome == "open":  # returned; or cancelled after its own close, or before accept
                state.outcome = "normal" if state.finished or state.accepted else "error"
            if self._events:
                self.lifecycle.closed(state)
            del scope[SCOPE_KEY]  # no scope <-> Connection cycle left for the garbage collector

    def _prepared(self) -> bool:
        """Once: can ws_diag run under this loop (else all passes through, one ERROR line); refreshing: start it."""
        if self._unsupported:
            return False
        if not self._library_checked:
            try:
                cc.library()
            except cc.UnsupportedLibrary as err:
                self._unsupported = True
                msg = "ws_diag cannot run here (%s): every connection passes through unwatched"
                logger.error(msg, err, extra={"ws_diag_event": "unsupported_library"})
                return False
            self._library_checked, self._prepare = True, self._refresh
        if self._refresh:
            try:
                self.checker.start()  # cheap when running; follows the app into a new event loop
            except Exception as err:  # never turns a healthy request into an error
                self._refresh = self._prepare = False
                log_own_error("ws_diag could not start the health refresh; going on without it", err, "refresh_failed")
        return True

    def _pass_through(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """HTTP (the health routes, else the app), lifespan, and websockets an outer layer watches."""
        if (
            self._health_routes
            and scope["type"] == "http"
            and not self._unsupported
            and (route := self._health_routes.get(scope.get("path", "")))
        ):
            return route(scope, receive, send, self.checker, self.settings)
        return self.app(scope, receive, send)

    async def _on_exception(self, state: Connection, send: Send, exc: Exception) -> bool:
        """The app raised: diagnose and tell the client, unless it left or ws_diag must stand back.

        Returns whether the exception goes on to the server: always, unless ``reraise=False``
        and it was diagnosed and its frame and close delivered (then it is logged instead).
        """
        failure_at = self.checker.now()  # no report taken before this may clear a component
        if state.finished or state.gone or (not state.accepted and self._passthrough_preaccept):
            if state.outcome == "open":
                state.outcome = "error"
            return True
        if self._client_left(state, send, exc):
            return True
        logger.debug(
            "websocket failure intercepted: app raised %s",
            type(exc).__name__,
            extra={"ws_diag_event": "intercepted", "path": state.scope.get("path"), "exception": type(exc).__name__},
        )
        state.finished = True
        intervention = await self.responder.intervene(
            state.scope, send, exc, None, state.accepted, failure_at=failure_at
        )
        await self._settle(state, intervention)
        if self._reraise or intervention.event is None or not intervention.event.delivered:
            return True
        self._log_app_exception(state, exc)
        return False

    def _log_app_exception(self, state: Connection, exc: Exception) -> None:
        """``reraise=False``: the app's exception, delivered to its client, logged with its traceback, not raised.

        One ERROR record, as the server would have logged it: under a test client (Starlette's
        ``TestClient``) a raised exception would discard the frame and close the test reads.
        """
        logger.error(
            "websocket app raised %s; diagnosed and delivered (incident_id=%s), logged, not raised (reraise=false)",
            type(exc).__name__,
            state.incident_id,
            exc_info=exc,
            extra={
                "ws_diag_event": "app_exception",
                "path": state.scope.get("path"),
                "incident_id": state.incident_id,
                "exception": type(exc).__name__,
            },
        )

    async def _on_cancelled(self, state: Connection, send: Send) -> None:
        """The server cancelled the session: it is shutting down.

        Servers cancel a session's task only when they stop (hypercorn after its graceful
        timeout; uvicorn too, after it sent its own 1012; measured: never when a client
        leaves). Tell the client to come back, if nothing closed the session yet.
        """
        if state.accepted and not (state.finished or state.gone):
            state.finished = True
            with cc.shielded():  # trio cancels again at every await; the restart is bounded by send_timeout
                restarted = await self.responder.restart(state.scope, send)
            if restarted:
                state.outcome = "restart"
            else:
                self._mark_gone(state)  # refused or too slow: nobody left to tell

    async def _on_return(self, state: Connection, send: Send) -> None:
        """The app returned after accept without closing: close 1000, once per connection.

        Without this the client sees a dropped connection (uvicorn: 1006) or a bare 1011
        (hypercorn sends INTERNAL_ERROR for an app that finished while connected), though
        the app did nothing wrong. A refusal is the server saying the client already left
        (wsproto's ``OSError``, a ``RuntimeError`` from uvicorn's legacy implementation): a
        quiet departure. Bounded by ``send_timeout``; one timer per session that returns unclosed.
        """
        state.finished = True
        refused: type[Exception] | None = None  # the type only: no frame <-> traceback cycle
        try:
            async with cc.timeout(self.settings.send_timeout):
                try:
                    await send({"type": "websocket.close", "code": CLOSE_NORMAL, "reason": ""})
                except Exception as err:
                    refused = type(err)
        except TimeoutError:
            logger.debug("client too slow for the closing 1000", extra={"ws_diag_event": "send_timeout"})
            return
        if refused is not None:
            logger.debug(
                "client gone: the server refused the close after the app returned (%s)",
                refused.__name__,
                extra={"ws_diag_event": "client_gone", "path": state.scope.get("path")},
            )
            self._mark_gone(state)

    async def _on_control(self, state: Connection, send: Send, message: Message) -> None:
        """Every message but ``websocket.send``: accept, close, the HTTP denial, odd ones."""
        kind = message["type"]
        if kind == "websocket.close" and not state.finished:
            await self._on_close(state, send, message)
            return
        try:
            await send(message)  # odd sequences are the server's to judge
        except OSError:
            self._mark_gone(state)  # the client left: nothing of ours may follow
            raise
        if kind == "websocket.accept":
            state.accepted = True
            logger.debug(
                "websocket accepted: path=%s",
                state.scope.get("path"),
                extra={"ws_diag_event": "accept", "path": state.scope.get("path")},
            )
            if self._events:
                self.lifecycle.accepted(state)
        elif kind == "websocket.http.response.start":
            # After accept the servers refuse it (Starlette's answer to an HTTPException: uvicorn's
            # RuntimeError, hypercorn's UnexpectedMessageError); that refusal escapes the app.
            state.finished = True

    async def _on_close(self, state: Connection, send: Send, message: Message) -> None:
        """The app's first close: diagnosed when it reports a failure, else handed over (repaired after accept)."""
        state.finished = True
        if not state.gone and self._is_failure(message, state.accepted):
            failure_at = self.checker.now()  # no report taken before this may clear a component
            # The exception the app is handling, if any: ``except DbError: await ws.close(1011)``.
            handled = sys.exception()
            if not (handled is not None and self._client_left(state, send, handled)):
                self._log_intercepted_close(state, message)
                intervention = await self.responder.intervene(
                    state.scope, send, handled, message, state.accepted, failure_at=failure_at
                )
                await self._settle(state, intervention)
                if intervention.app_close is None:
                    return
                if intervention.gone:
                    # The server refused ws_diag's first message: the client is gone. The app's
                    # close goes to the server unchanged (not repaired), outside ws_diag's error
                    # handling, so the server's answer and its __context__ chain are the ones
                    # the app would meet without ws_diag.
                    await send(message)
                    return
        if state.accepted:
            await self._send_app_close(state, send, repaired_close(message))
            return
        try:
            await send(message)  # before accept: HTTP 403, the server's to send
        except OSError:
            self._mark_gone(state)
            raise

    async def _send_app_close(self, state: Connection, send: Send, message: Message) -> None:
        """The app's own close after accept, retried in the private range where a strict server refuses it.

        Once the client is known gone a refusal says nothing about the code: no retry.
        """
        try:
            await (send(message) if state.gone else send_close(send, message))
        except OSError:
            self._mark_gone(state)
            raise

    def _client_left(self, state: Connection, send: Send, exc: BaseException) -> bool:
        """Decide from this connection's own evidence whether ``exc`` means its client left."""
        try:
            left = client_left(exc, send, self.classifier)
        except Exception as err:  # a broken classifier rule: diagnose rather than lose the failure
            log_own_error("ws_diag could not tell whether the client left", err, "fallback")
            return False
        if not left:
            return False
        logger.debug(
            "client gone: %s",
            type(exc).__name__,
            extra={"ws_diag_event": "client_gone", "path": state.scope.get("path")},
        )
        self._mark_gone(state)
        return True

    def _mark_gone(self, state: Connection) -> None:
        if not state.gone:
            state.gone = True
            if state.outcome in ("open", "error"):
                state.outcome = "client_gone"
            if self._events:
                self.lifecycle.client_gone(state)

    async def _settle(self, state: Connection, intervention: Intervention) -> None:
        """Record what an intervention came to, and tell the listeners."""
        event = intervention.event
        if intervention.gone:
            self._mark_gone(state)
        if event is not None:
            state.outcome = "diagnosed"
            state.incident_id = event.diagnosis.incident_id
            if self._events:
                await self.lifecycle.diagnosed(state, event)

    def _log_intercepted_close(self, state: Connection, message: Message) -> None:
        logger.debug(
            "websocket failure intercepted: app closed with %s",
            message.get("code"),
            extra={"ws_diag_event": "intercepted", "path": state.scope.get("path"), "code": message.get("code")},
        )

    def _is_failure(self, close: Message, accepted: bool) -> bool:
        """Whether the app's close reports a failure ws_diag diagnoses.

        A code in ``rewrite_codes`` or 1004-1006; or 4500, a framework's generic error close
        (Litestar's, graphql-ws's), while an exception is being handled.
        """
        if not accepted and self._passthrough_preaccept:
            return False
        code = close.get("code", CLOSE_NORMAL)
        if is_failure_close_code(code) or (isinstance(code, int) and code in self._rewrite_codes):
            return True
        if is_framework_error_close_code(code):
            # A framework's generic error close (Litestar's 4500) sent while it handles the app's
            # exception: diagnosed by that exception. Sent while nothing is handled: the app's own word.
            return sys.exception() is not None
        # After accept a code that cannot be delivered counts as the code it is repaired to.
        return accepted and repaired_code(code) in self._rewrite_codes
