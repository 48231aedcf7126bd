"""Sentry: one event per diagnosed failure, tagged so it can be found from the client's incident id.

Needs the ``sentry`` extra (``sentry-sdk`` 2)::

    import sentry_sdk
    from ws_diag.integrations.sentry import SentryListener

    sentry_sdk.init(dsn=...)
    app = DiagnosticsMiddleware(app, listeners=[SentryListener()])

Each reported event carries the tags ``incident_id``, ``component`` (the component's
key), ``close_code`` (or ``http_status`` for an HTTP denial), ``diagnosis_source``
and, when the connection had one, ``request_id``, plus a ``ws_diag`` context (display
name, delivered, took_ms, path, probe, retryable). When the app raised, the event is
its exception; when there is none (the app closed with 1011 itself, or an exception
named no component) it is a message, ``"WebSocket <Component> failure (close <code>)"``,
grouped by component and code rather than by its text.

Not reported: what is not a failure of the service. An Authentication failure the app
raised on purpose is the client's problem (``ignore_components``, default ``{"auth"}``);
``ignore_sources`` leaves out whole sources (``"probe"``, ...). A graceful restart and a
client leaving are never diagnoses, so they never reach Sentry either.

Sentry's own ASGI integration reports an exception that escapes the app once, and
Sentry's default ``DedupeIntegration`` drops a second report of the same exception
object: put ws_diag inside Sentry's middleware (wrap ws_diag, then Sentry) so that the
tagged report is the first one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from .._optional import missing

try:
    import sentry_sdk
except ModuleNotFoundError as exc:
    missing(exc, "sentry_sdk", extra="sentry", feature=__name__, package="sentry-sdk")

from ..components import ComponentLike
from ..lifecycle import Connection, ConnectionListener

if TYPE_CHECKING:
    from ..lifecycle import DiagnosisEvent

__all__ = ["DEFAULT_IGNORED_COMPONENTS", "SentryListener"]

# Authentication failures are raised on purpose, for the client to act on (sign in again).
DEFAULT_IGNORED_COMPONENTS: frozenset[str] = frozenset({"auth"})

Level = Literal["fatal", "error", "warning", "info", "debug"]


def _key(component: str | ComponentLike) -> str:
    if isinstance(component, str):
        return component
    return component.key


class SentryListener(ConnectionListener):
    """Reports each diagnosed failure to Sentry, tagged with its incident id (see the module docs).

    Args:
        ignore_components: component keys (``"auth"``) or components whose diagnoses are
            not reported; default :data:`DEFAULT_IGNORED_COMPONENTS`.
        ignore_sources: diagnosis sources (``"app"``, ``"exception"``, ``"probe"``,
            ``"default"``) not reported; ``"shutdown"`` never is.
        level: the level of events captured as messages (no exception).
    """

    __slots__ = ("ignore_components", "ignore_sources", "level")

    def __init__(
        self,
        *,
        ignore_components: Iterable[str | ComponentLike] = DEFAULT_IGNORED_COMPONENTS,
        ignore_sources: Iterable[str] = (),
        level: Level = "error",
    ) -> None:
        if isinstance(ignore_components, str) or isinstance(ignore_sources, str):
            msg = "ignore_components and ignore_sources must be collections, not a single string"
            raise TypeError(msg)
        self.ignore_components = frozenset(_key(component) for component in ignore_components)
        self.ignore_sources = frozenset({*ignore_sources, "shutdown"})
        self.level: Level = level

    def reports(self, event: DiagnosisEvent) -> bool:
        """Whether ``event`` is a failure of the service this listener reports."""
        diagnosis = event.diagnosis
        return diagnosis.component.key not in self.ignore_components and diagnosis.source not in self.ignore_sources

    def diagnosed(self, connection: Connection, event: DiagnosisEvent) -> None:
        """Capture the app's exception, or a message when there is none, in a scope of its own."""
        if not self.reports(event):
            return
        diagnosis = event.diagnosis
        component = diagnosis.component
        with sentry_sdk.new_scope() as scope:
            scope.set_tag("incident_id", diagnosis.incident_id)
            scope.set_tag("component", component.key)
            scope.set_tag("diagnosis_source", diagnosis.source)
            if event.code is not None:
                scope.set_tag("close_code", str(event.code))
            if event.http_status is not None:
                scope.set_tag("http_status", str(event.http_status))
            if diagnosis.request_id is not None:
                scope.set_tag("request_id", diagnosis.request_id)
            scope.set_context(
                "ws_diag",
                {
                    "component": component.display_name,
                    "incident_id": diagnosis.incident_id,
                    "delivered": event.delivered,
                    "took_ms": round(event.took_ms, 3),
                    "path": event.path,
                    "probe": diagnosis.probe,
                    "retryable": diagnosis.retryable,
                },
            )
            if event.exception is not None:
                sentry_sdk.capture_exception(event.exception)
                return
            outcome = f"close {event.code}" if event.code is not None else f"HTTP {event.http_status}"
            scope.fingerprint = ["ws_diag", component.key, str(event.code or event.http_status)]
            sentry_sdk.capture_message(f"WebSocket {component.display_name} failure ({outcome})", level=self.level)
