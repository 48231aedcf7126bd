"""A diagnosis, and what the client gets from it: the JSON frame and the close reason.

Redaction lives here too: everything that leaves the process goes through it.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from .codes import MAX_RETRY_AFTER_MS, CodeScheme, ComponentLike, frame_code, truncate_reason
from .redaction import (
    MAX_COMPONENT_BYTES,
    MAX_DETAILS_BYTES,
    MAX_FRAME_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_ROOT_CAUSE_BYTES,
    MAX_SUGGESTION_BYTES,
    MAX_SUGGESTIONS,
    MAX_TEXT_CHARS,
    MAX_USER_ID_BYTES,
    bound_text,
    redact,
    redact_details,
    safe_str,
)

if TYPE_CHECKING:
    from .errors import WebSocketComponentError

__all__ = [
    "DEFAULT_RETRY_AFTER",
    "MAX_DETAILS_BYTES",
    "MAX_FRAME_BYTES",
    "MAX_TEXT_CHARS",
    "Diagnosis",
    "DiagnosisSource",
    "build_frame",
    "close_reason",
    "describe_exception",
    "frame_json",
    "frame_schema",
    "new_incident_id",
    "redact",
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


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` for an exception, redacted."""
    text = safe_str(exc)
    name = type(exc).__name__
    return redact(f"{name}: {text}" if text else name)


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
    def from_component_error(cls, error: WebSocketComponentError) -> Diagnosis:
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


def _iso_millis(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _text(value: object) -> str:
    return value if isinstance(value, str) else safe_str(value)


def _suggestions(component: ComponentLike) -> list[str]:
    suggestions = component.suggestions
    if not isinstance(suggestions, tuple | list):
        return []
    return [bound_text(_text(item), MAX_SUGGESTION_BYTES) for item in suggestions[:MAX_SUGGESTIONS]]


def build_frame(
    diagnosis: Diagnosis, *, code_scheme: CodeScheme, expose_details: bool, request_id: bool = False
) -> dict[str, Any]:
    """The JSON diagnostic frame, as a dict (schema: ``ws_diag/schemas/frame.schema.json``).

    Every text is bounded (``MAX_*_BYTES`` in :mod:`ws_diag.redaction`) whatever the
    app put into the error, so the serialised frame never exceeds ``MAX_FRAME_BYTES``.
    With ``request_id`` (setting ``request_id_in_frame``) the frame has a ``request_id``
    key: the validated request id or ``null``.
    """
    component = diagnosis.component
    user_id = diagnosis.user_id
    root_cause = diagnosis.root_cause_text() if expose_details else None
    frame: dict[str, Any] = {
        "type": "error",
        "error": {
            "code": frame_code(component, code_scheme),
            "component": bound_text(_text(component.display_name), MAX_COMPONENT_BYTES),
            "message": bound_text(redact(_text(diagnosis.message)), MAX_MESSAGE_BYTES),
            "user_id": None if user_id is None else bound_text(_text(user_id), MAX_USER_ID_BYTES),
            "timestamp": _iso_millis(diagnosis.timestamp),
            "details": redact_details(diagnosis.details) if expose_details else None,
            "root_cause": None if root_cause is None else bound_text(root_cause, MAX_ROOT_CAUSE_BYTES),
            "suggestions": _suggestions(component),
            "incident_id": diagnosis.incident_id,
            "retryable": diagnosis.retryable,
            "retry_after_ms": diagnosis.retry_after_ms(),
            "source": diagnosis.source,
        },
    }
    if request_id:
        frame["error"]["request_id"] = valid_request_id(diagnosis.request_id)
    return frame


def frame_json(diagnosis: Diagnosis, *, code_scheme: CodeScheme, expose_details: bool, request_id: bool = False) -> str:
    """The JSON diagnostic frame, serialised compactly."""
    frame = build_frame(diagnosis, code_scheme=code_scheme, expose_details=expose_details, request_id=request_id)
    return json.dumps(frame, separators=(",", ":"), default=str)


def close_reason(diagnosis: Diagnosis) -> str:
    """A short, plain-text close reason: never JSON, never exception text.

    ``"<Component> failure (incident <id>)"``; a graceful shutdown is no failure:
    ``"Service Restart (incident <id>)"``.
    """
    what = diagnosis.component.display_name
    if diagnosis.source != "shutdown":
        what += " failure"
    return truncate_reason(f"{what} (incident {diagnosis.incident_id})")


def frame_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) every diagnostic frame conforms to."""
    from importlib.resources import files

    schema: dict[str, Any] = json.loads(files("ws_diag").joinpath("schemas/frame.schema.json").read_text("utf-8"))
    return schema
