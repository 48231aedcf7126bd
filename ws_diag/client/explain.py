"""Explain one close from its code, reason and the last message::

async with websockets.connect(url) as ws:
    last = None
    try:
        async for last in ws:
            ...
    except websockets.ConnectionClosed:
        pass
print(explain(ws.close_code, ws.close_reason, last))
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any, get_args

from ..diagnosis import DiagnosisSource
from ..retry import MAX_RETRY_AFTER_MS, retry_action
from ..wire.closecodes import LOCAL_ONLY_CODES
from ..wire.schemes import CodeScheme, component_for_wire_code

__all__ = ["Explanation", "explain", "parse_frame"]

# ws_diag's close reason: "<Component> failure (incident <16 hex>)" (wire.frame.close_reason).
_INCIDENT_IN_REASON = re.compile(r"\(incident ([0-9a-f]{16})\)\Z")
_SOURCES = frozenset(get_args(DiagnosisSource))


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a websocket closed, as far as the client can tell.

    ``retry_after_ms`` (milliseconds) and ``source`` come from the frame; without one they
    are ``None``. ``incident_id`` comes from the frame, or else from ws_diag's close reason.
    """

    code: int | None
    component: str | None
    message: str
    suggestions: tuple[str, ...]
    retryable: bool
    incident_id: str | None
    frame_code: int | None
    retry_after_ms: int | None = None
    source: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The same structure as the browser helper returns (``incidentId`` etc. spelt the JS way too)."""
        result = asdict(self)
        result["suggestions"] = list(self.suggestions)
        result["incidentId"] = self.incident_id
        result["frameCode"] = self.frame_code
        result["retryAfterMs"] = self.retry_after_ms
        return result


def parse_frame(message: str | bytes | bytearray | dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``error`` body of a ws_diag frame, or ``None`` for any other message."""
    if isinstance(message, bytes | bytearray):
        try:
            message = bytes(message).decode()
        except UnicodeDecodeError:
            return None
    if isinstance(message, str):
        if not message.startswith("{"):
            return None
        try:
            message = json.loads(message)
        except ValueError:
            return None
    if isinstance(message, dict) and message.get("type") == "error" and isinstance(message.get("error"), dict):
        body: dict[str, Any] = message["error"]
        if isinstance(body.get("code"), int):
            return body
    return None


def _frame_retry_after(frame: dict[str, Any]) -> int | None:
    value = frame.get("retry_after_ms")
    if frame.get("retryable") is not True or isinstance(value, bool) or not isinstance(value, int):
        return None
    return max(0, min(value, MAX_RETRY_AFTER_MS))


def explain(
    close_code: int | None,
    reason: str | None = None,
    last_message: str | bytes | dict[str, Any] | None = None,
    *,
    scheme: CodeScheme = "private",
) -> Explanation:
    """Explain a close.

    Args:
        close_code: the code the client saw (``None`` if the connection just dropped).
        reason: the close reason.
        last_message: the last message received; used when it is a ws_diag frame.
        scheme: the server's code scheme, to name the component from the close code when there is no frame.

    Returns:
        An :class:`Explanation`. Without a frame, the component comes from the close code,
        ``retryable`` from the shared retry table (:func:`ws_diag.retry.retry_action`), and
        the incident id from ws_diag's close reason when it carries one.
    """
    frame = parse_frame(last_message)
    if frame is not None:
        source = frame.get("source")
        return Explanation(
            code=close_code,
            component=frame.get("component"),
            message=str(frame.get("message", "")),
            suggestions=tuple(frame.get("suggestions") or ()),
            retryable=bool(frame.get("retryable")),
            incident_id=frame.get("incident_id"),
            frame_code=frame["code"],
            retry_after_ms=_frame_retry_after(frame),
            source=source if source in _SOURCES else None,
        )
    match = _INCIDENT_IN_REASON.search(reason or "")
    incident = match.group(1) if match else None
    retryable = retry_action(close_code, None, scheme).kind != "stop"
    if close_code is None or close_code in LOCAL_ONLY_CODES:
        return Explanation(close_code, None, "Connection lost without a close status", (), True, None, None)
    component = component_for_wire_code(close_code, scheme)
    if component is not None:
        message = reason or component.description
        return Explanation(close_code, component.display_name, message, (), retryable, incident, None)
    normal = close_code == 1000 or close_code == 1001
    message = reason or ("Closed normally" if normal else f"Closed with {close_code}")
    return Explanation(close_code, None, message, (), retryable, incident, None)
