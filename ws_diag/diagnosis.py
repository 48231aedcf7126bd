"""A diagnosis: which component failed, how that was decided, and what may be said about it.

The frame a client gets from it is :mod:`ws_diag.wire.frame`'s; redaction is :mod:`ws_diag.redaction`'s.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from .components import ComponentLike
from .redaction import describe_exception, redact
from .retry import MAX_RETRY_AFTER_MS

__all__ = [
    "DEFAULT_RETRY_AFTER",
    "ComponentErrorLike",
    "Diagnosis",
    "DiagnosisSource",
    "new_incident_id",
    "valid_request_id",
]

# How the component was decided: the app said so (a WebSocketComponentError), an
# exception-type rule, a failing probe, or nothing (Generic).
DiagnosisSource = Literal["app", "exception", "probe", "default", "shutdown"]

# Seconds a retryable diagnosis suggests when nothing else is known (settings.retry_after).
DEFAULT_RETRY_AFTER = 1.0

# What a request id may be to be logged or echoed to a client: UUIDs, hex, ULIDs, base64,
# "svc:req-42". Anything else is dropped, never cut or escaped (a header is attacker-controlled).
MAX_REQUEST_ID_CHARS = 128
_REQUEST_ID = re.compile(rf"[A-Za-z0-9._:/+=-]{{1,{MAX_REQUEST_ID_CHARS}}}")


def valid_request_id(value: object) -> str | None:
    """``value`` when it is a usable request id (a ``str`` or ``bytes`` of 1-128 characters of
    ``A-Z a-z 0-9 . _ : / + = -``), else ``None``."""
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    if isinstance(value, str) and _REQUEST_ID.fullmatch(value):
        return value
    return None


class ComponentErrorLike(Protocol):
    """What :meth:`Diagnosis.from_component_error` reads of a :class:`~ws_diag.WebSocketComponentError`."""

    @property
    def component(self) -> ComponentLike: ...
    @property
    def message(self) -> str: ...
    @property
    def user_id(self) -> str | None: ...
    @property
    def details(self) -> Mapping[str, Any]: ...
    @property
    def root_cause(self) -> BaseException | str | None: ...
    @property
    def retryable(self) -> bool: ...
    @property
    def retry_after(self) -> float | None: ...
    @property
    def __cause__(self) -> BaseException | None: ...


def new_incident_id() -> str:
    """A short random id that ties a client's frame to the server's log line."""
    return secrets.token_hex(8)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """Which component failed, and what may be said about it.

    ``message`` is always safe to send. ``details`` and ``root_cause`` are sent
    only when the user opted in with ``expose_details``. ``retry_after`` is the
    suggested wait before reconnecting, in seconds (``None``: :data:`DEFAULT_RETRY_AFTER`);
    the frame sends it as ``retry_after_ms`` only when ``retryable``.
    """

    component: ComponentLike
    message: str
    source: DiagnosisSource
    retryable: bool
    user_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    root_cause: str | None = None
    probe: str | None = None
    incident_id: str = field(default_factory=new_incident_id)
    timestamp: datetime = field(default_factory=_utc_now)
    retry_after: float | None = None
    # The connection's inbound request id (validated, see valid_request_id), when it had one.
    request_id: str | None = None
    # Described only when a frame exposes it: exception text an attacker can shape
    # should cost nothing when nobody will see it.
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    def root_cause_text(self) -> str | None:
        """``root_cause``, or the redacted description of ``exception``."""
        if self.root_cause is not None:
            return redact(self.root_cause)
        return describe_exception(self.exception) if self.exception is not None else None

    @classmethod
    def from_component_error(cls, error: ComponentErrorLike) -> Diagnosis:
        """The application named the component: use what it said."""
        cause = error.root_cause
        exception = cause if isinstance(cause, BaseException) else error.__cause__ if cause is None else None
        return cls(
            component=error.component,
            message=error.message,
            source="app",
            retryable=error.retryable,
            retry_after=error.retry_after,
            user_id=error.user_id,
            details=error.details,
            root_cause=cause if isinstance(cause, str) else None,
            exception=exception,
        )

    @classmethod
    def for_component(
        cls,
        component: ComponentLike,
        source: DiagnosisSource,
        *,
        exc: BaseException | None = None,
        root_cause: str | None = None,
        probe: str | None = None,
        details: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> Diagnosis:
        """A diagnosis ws_diag worked out itself: the message is the component's standard one.

        ``root_cause`` defaults to the description of ``exc``, made only when shown;
        ``retry_after`` is in seconds.
        """
        return cls(
            component=component,
            message=component.description,
            source=source,
            retryable=component.retryable,
            root_cause=root_cause,
            probe=probe,
            details=details or {},
            exception=exc,
            retry_after=retry_after,
        )

    def retry_after_ms(self) -> int | None:
        """The frame's ``retry_after_ms``: milliseconds, 0 to one hour; ``None`` when not retryable."""
        if not self.retryable:
            return None
        seconds = DEFAULT_RETRY_AFTER if self.retry_after is None else self.retry_after
        return max(0, min(round(seconds * 1000), MAX_RETRY_AFTER_MS))
