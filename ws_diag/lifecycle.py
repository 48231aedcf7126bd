"""A connection's life as a few named events, for integrations to follow.

The middleware raises each event at most once per connection (``diagnosed``
at most once too: exactly one layer intervenes):

========== ====================================================================
opened     a websocket scope arrived (before the app runs)
accepted   the app's ``websocket.accept`` went to the server
diagnosed  ws_diag told the client which component failed (a
           :class:`~ws_diag.DiagnosisEvent`)
client_gone this connection's own evidence says its client left
closed     the app returned or raised; :attr:`Connection.outcome` says how it ended
========== ====================================================================

Two more events come from the health checker, not from a connection:
``health_report`` (each new :class:`~ws_diag.health.HealthReport`) and
``status_changed`` (a probe crossed the failure threshold, a
:class:`~ws_diag.health.StatusChange`). The middleware hands the listeners that
override them to its checker (one passed in too), so one object registered once
follows both: ``DiagnosticsMiddleware(listeners=[metrics])``.

Metrics, tracing, error trackers and drain-on-shutdown subscribe by passing a
:class:`ConnectionListener` to ``DiagnosticsMiddleware(listeners=[...])``; the
message path never learns about them. Events cost per connection, never per
message, and nothing at all without listeners.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from . import _concurrency as cc
from ._types import Scope
from .diagnosis import Diagnosis
from .logs import STRUCTURED_FIELDS, LogEvent

if TYPE_CHECKING:
    from .health.report import HealthReport
    from .health.state import StatusChange

__all__ = [
    "SCOPE_KEY",
    "Connection",
    "ConnectionListener",
    "ConnectionOutcome",
    "DiagnosisEvent",
    "DiagnosisHook",
    "Lifecycle",
    "health_hooks",
]

logger = logging.getLogger("ws_diag")

# The scope key under which the outermost ws_diag layer leaves its Connection.
SCOPE_KEY = "ws_diag.connection"

# LogRecord's own attributes and the ones ws_diag puts on its records: extra= may not repeat them.
_RESERVED_LOG_FIELDS = frozenset({*logging.makeLogRecord({}).__dict__, "message", "asctime", *STRUCTURED_FIELDS})

ConnectionOutcome = Literal["open", "normal", "diagnosed", "client_gone", "error", "restart"]


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


class Connection:
    """One websocket's state as ws_diag knows it; the object every event carries.

    Attributes:
        scope: the ASGI scope (read it, do not keep it past ``closed``).
        accepted: the app's accept went out.
        finished: a close or an HTTP response went out: nothing more of ws_diag's may follow.
        gone: this connection's own evidence says the client left.
        outcome: ``"open"`` until ``closed``; then ``"normal"`` (the app returned),
            ``"diagnosed"`` (ws_diag intervened), ``"client_gone"``, ``"restart"`` (the
            server cancelled the session while shutting down; the client was told 1012)
            or ``"error"`` (the app raised and ws_diag left it to the server: pre-accept
            passthrough, or after its own close).
        started: ``time.monotonic()`` when the scope arrived, seconds.
        incident_id: the diagnosis's incident id, once diagnosed.
        request_id: the inbound request id, once known: set by a listener (for example
            :class:`~ws_diag.integrations.correlation.CorrelationIdListener` at ``opened``),
            else read from the ``request_id_header`` when a failure is diagnosed.
        log_fields: extra attributes for ws_diag's ``diagnosis:`` record of this
            connection, added by listeners with :meth:`add_log_fields` (``None``: none).
    """

    __slots__ = (
        "accepted",
        "finished",
        "gone",
        "incident_id",
        "log_fields",
        "outcome",
        "request_id",
        "scope",
        "started",
    )

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.accepted = False
        self.finished = False
        self.gone = False
        self.outcome: ConnectionOutcome = "open"
        self.started = time.monotonic()
        self.incident_id: str | None = None
        self.request_id: str | None = None
        self.log_fields: dict[str, object] | None = None

    def add_log_fields(self, **fields: object) -> None:
        """Add attributes to this connection's ``diagnosis:`` log record (``trace_id=...``).

        Raises:
            ValueError: a name is one of :class:`logging.LogRecord`'s own attributes or one
                ws_diag sets itself (logging would refuse the record).
        """
        clashing = sorted(name for name in fields if name in _RESERVED_LOG_FIELDS)
        if clashing:
            msg = f"log field names already used by a log record or by ws_diag: {clashing}"
            raise ValueError(msg)
        self.log_fields = {**(self.log_fields or {}), **fields}

    def __repr__(self) -> str:
        return f"<Connection path={self.scope.get('path')!r} outcome={self.outcome}>"


class ConnectionListener:
    """Override the events an integration needs; the others do nothing.

    Methods run in the connection's task and must not block; one that raises is
    logged and ignored. ``diagnosed`` may return an awaitable, awaited within
    ``send_timeout``.
    """

    def opened(self, connection: Connection) -> None:
        """A websocket scope arrived."""

    def accepted(self, connection: Connection) -> None:
        """The app's accept went to the server."""

    def diagnosed(self, connection: Connection, event: DiagnosisEvent) -> object:
        """ws_diag intervened; ``event`` says what it sent and why."""
        return None

    def client_gone(self, connection: Connection) -> None:
        """This connection's own evidence says its client left."""

    def closed(self, connection: Connection) -> None:
        """The app returned or raised; ``connection.outcome`` says how it ended."""

    def health_report(self, report: HealthReport) -> None:
        """The health checker finished a run (each new report once; plain, not async)."""

    def status_changed(self, change: StatusChange) -> None:
        """A probe crossed the failure threshold, failing or back (once per transition; plain, not async)."""


class _HookListener(ConnectionListener):
    """An ``on_diagnosis`` callable, as a listener."""

    __slots__ = ("hook",)

    def __init__(self, hook: Callable[[DiagnosisEvent], object]) -> None:
        self.hook = hook

    def diagnosed(self, connection: Connection, event: DiagnosisEvent) -> object:
        return self.hook(event)

    def __repr__(self) -> str:
        return repr(self.hook)


_SYNC_EVENTS = ("opened", "accepted", "client_gone", "closed")


def _overrides(listener: ConnectionListener, event: str) -> bool:
    return getattr(type(listener), event, None) is not getattr(ConnectionListener, event)


@dataclass(frozen=True, slots=True)
class _CheckerHook:
    """A listener's ``health_report`` or ``status_changed``, as a checker hook: guarded like the other events.

    Equal for the same listener and event, so that handing it to a checker twice (two
    middlewares sharing one checker) does not deliver twice.
    """

    listener: ConnectionListener
    event: str

    def __call__(self, value: object) -> None:
        try:
            getattr(self.listener, self.event)(value)
        except Exception as err:
            _log_failure(self.listener, self.event, err)


def health_hooks(
    listeners: Iterable[ConnectionListener],
) -> tuple[tuple[Callable[[HealthReport], object], ...], tuple[Callable[[StatusChange], object], ...]]:
    """The checker hooks (``on_report``, ``on_status_change``) of the listeners that override the health events.

    A listener that does not override ``health_report`` or ``status_changed`` gets no hook:
    nothing is done for it per report.
    """
    listeners = tuple(listeners)
    reports = tuple(_CheckerHook(one, "health_report") for one in listeners if _overrides(one, "health_report"))
    changes = tuple(_CheckerHook(one, "status_changed") for one in listeners if _overrides(one, "status_changed"))
    return reports, changes


class Lifecycle:
    """Delivers a connection's events to the listeners, each guarded.

    Only the events a listener overrides are delivered to it (a no-op method
    inherited from :class:`ConnectionListener` costs nothing per connection).

    Args:
        listeners: the subscribers, called in order.
        hook_timeout: bound on awaiting an async ``diagnosed``, seconds.
    """

    __slots__ = ("_subscribers", "hook_timeout", "listeners")

    def __init__(self, listeners: Iterable[ConnectionListener], hook_timeout: float) -> None:
        self.listeners = tuple(listeners)
        self.hook_timeout = hook_timeout
        self._subscribers = {
            event: tuple(listener for listener in self.listeners if _overrides(listener, event))
            for event in (*_SYNC_EVENTS, "diagnosed")
        }

    @classmethod
    def build(
        cls,
        listeners: Iterable[ConnectionListener],
        on_diagnosis: Iterable[Callable[[DiagnosisEvent], object]],
        hook_timeout: float,
    ) -> Lifecycle:
        """Listeners, then the ``on_diagnosis`` hooks as listeners of ``diagnosed``."""
        return cls([*listeners, *(_HookListener(hook) for hook in on_diagnosis)], hook_timeout)

    def opened(self, connection: Connection) -> None:
        """Raise ``opened``."""
        self._raise("opened", connection)

    def accepted(self, connection: Connection) -> None:
        """Raise ``accepted``."""
        self._raise("accepted", connection)

    def client_gone(self, connection: Connection) -> None:
        """Raise ``client_gone``."""
        self._raise("client_gone", connection)

    def closed(self, connection: Connection) -> None:
        """Raise ``closed``."""
        self._raise("closed", connection)

    async def diagnosed(self, connection: Connection, event: DiagnosisEvent) -> None:
        """Raise ``diagnosed``; async listeners are awaited within ``hook_timeout``."""
        for listener in self._subscribers["diagnosed"]:
            try:
                result = listener.diagnosed(connection, event)
                if inspect.isawaitable(result):
                    async with cc.timeout(self.hook_timeout):
                        await result
            except Exception as err:
                _log_failure(listener, "diagnosed", err)

    def _raise(self, event: str, connection: Connection) -> None:
        for listener in self._subscribers[event]:
            try:
                getattr(listener, event)(connection)
            except Exception as err:
                _log_failure(listener, event, err)


def _log_failure(listener: object, event: str, err: BaseException) -> None:
    # ws_diag's own error, logged without the app's exception it may have been raised under.
    err.__suppress_context__ = True
    logger.error(
        "listener %r failed on %s", listener, event, exc_info=err, extra={"ws_diag_event": LogEvent.HOOK_FAILED}
    )
