"""For Python clients: explain a close from its code, reason and the last message.

::

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
from dataclasses import asdict, dataclass
from typing import Any

from .codes import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    LOCAL_ONLY_CODES,
    CodeScheme,
    Component,
    strict_fallback_code,
    wire_code,
)

__all__ = ["Explanation", "explain", "parse_frame"]

# Close codes as they arrive on the wire, per scheme (legacy 1004-1006 travel as 4004-4006),
# and their strict-server fallbacks (daphne: 1011 arrives as 4011, legacy 1002 as 4002).
_BY_WIRE: dict[str, dict[int, Component]] = {}
for _scheme in ("private", "legacy"):
    _table = _BY_WIRE.setdefault(_scheme, {})
    for _component in Component:
        _code = wire_code(_component, _scheme)
        _table[_code] = _component
        _table[strict_fallback_code(_code) or _code] = _component
_NORMAL = frozenset({CLOSE_NORMAL, CLOSE_GOING_AWAY})


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a websocket closed, as far as the client can tell."""

    code: int | None
    component: str | None
    message: str
    suggestions: tuple[str, ...]
    retryable: bool
    incident_id: str | None
    frame_code: int | None

    def as_dict(self) -> dict[str, Any]:
        """The same structure as the browser helper returns (``incidentId`` spelt the JS way too)."""
        result = asdict(self)
        result["suggestions"] = list(self.suggestions)
        result["incidentId"] = self.incident_id
        return result


def parse_frame(message: str | bytes | dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``error`` body of a ws_diag frame, or ``None`` for any other message."""
    if isinstance(message, bytes):
        try:
            message = message.decode()
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
    """
    frame = parse_frame(last_message)
    if frame is not None:
        return Explanation(
            code=close_code,
            component=frame.get("component"),
            message=str(frame.get("message", "")),
            suggestions=tuple(frame.get("suggestions") or ()),
            retryable=bool(frame.get("retryable")),
            incident_id=frame.get("incident_id"),
            frame_code=frame["code"],
        )
    if close_code is None or close_code in LOCAL_ONLY_CODES:
        return Explanation(close_code, None, "Connection lost without a close status", (), True, None, None)
    component = _BY_WIRE[scheme].get(close_code)
    if component is not None:
        return Explanation(
            close_code, component.display_name, reason or component.description, (), component.retryable, None, None
        )
    if close_code in _NORMAL:
        return Explanation(close_code, None, reason or "Closed normally", (), False, None, None)
    return Explanation(close_code, None, reason or f"Closed with {close_code}", (), True, None, None)
