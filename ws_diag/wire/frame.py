"""The JSON diagnostic frame and the close reason: what a client gets from a diagnosis.

Schema: ``ws_diag/schemas/frame.schema.json`` (:func:`frame_schema`). Every text is bounded
(``MAX_*_BYTES`` in :mod:`ws_diag.redaction`), so a frame never exceeds ``MAX_FRAME_BYTES``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ..components import ComponentLike
from ..diagnosis import Diagnosis, valid_request_id
from ..redaction import (
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
from .closecodes import truncate_reason
from .schemes import CodeScheme, frame_code

__all__ = [
    "MAX_DETAILS_BYTES",
    "MAX_FRAME_BYTES",
    "MAX_TEXT_CHARS",
    "build_frame",
    "close_reason",
    "frame_json",
    "frame_schema",
]


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
