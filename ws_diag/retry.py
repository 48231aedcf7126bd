"""After a close: whether and when a client reconnects (the shared case table's Python side)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .components import RESERVED_CODES
from .wire.closecodes import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    CLOSE_SERVICE_RESTART,
    LOCAL_ONLY_CODES,
    PRIVATE_MIN,
    STRICT_OFFSET,
)
from .wire.schemes import CodeScheme, component_for_wire_code

__all__ = ["MAX_RETRY_AFTER_MS", "RetryAction", "RetryKind", "retry_action"]


# A frame's retry_after_ms never exceeds one hour; clients clamp what they read to it too.
MAX_RETRY_AFTER_MS = 3_600_000

RetryKind = Literal["stop", "retry", "retry_now"]

# Closes without a ws_diag frame, by the code the client saw (strict servers add 3000).
# 1000: the server ended the session on purpose. 1002/1003/1007-1010 in the private
# scheme: the client sent something the server refuses; sending it again repeats it.
# 1001 (server going away), 1011 (an internal error, or uvicorn's keepalive timeout),
# 1013 (try again later), 1014 (bad gateway) and the codes no server sends (1005, 1006,
# 1015: the connection dropped): back off. 1012 (service restart): come back promptly.
_STOP_REGISTERED = frozenset({CLOSE_NORMAL, 1002, 1003, 1007, 1008, 1009, 1010})
_BACKOFF_REGISTERED = frozenset({CLOSE_GOING_AWAY, CLOSE_INTERNAL_ERROR, 1013, 1014, *LOCAL_ONLY_CODES})
# ws_diag's own private codes: the built-in components (4002-4010) and the strict-server fallbacks
# of the registered codes it may send (code + 3000: 4001-4003, 4007-4014), i.e. 4001-4014. Custom
# components cannot use them (_check_private), so without a frame they are read as ws_diag means them.
_OWN_PRIVATE = frozenset(code for code in RESERVED_CODES if code >= PRIVATE_MIN)
# Other stacks (Litestar, graphql-ws) close with an HTTP status + 4000: 4500 a server error, 4429 too
# many requests, 4408 a timeout, 4400/4401/4403 a refused request. Read that way outside ws_diag's block.
_HTTP_OFFSET = 4000
_HTTP_TIMEOUT = 4408
_HTTP_TOO_MANY = 4429


@dataclass(frozen=True, slots=True)
class RetryAction:
    """What a client does after a close (see :func:`retry_action`).

    ``kind``: ``"stop"`` (do not reconnect), ``"retry"`` (reconnect after
    ``retry_after_ms + backoff``) or ``"retry_now"`` (reconnect promptly, after
    ``retry_after_ms + a jitter below the minimum delay``). ``retry_after_ms`` is the
    server's hint, a floor: 0 when there is none (``None`` when stopping). ``why`` is for
    people. The delays: :func:`ws_diag.client.retry_delay_ms`.
    """

    kind: RetryKind
    retry_after_ms: int | None
    why: str


def _hint_ms(frame: Any) -> int:
    value = frame.get("retry_after_ms")
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        return 0  # missing, null or garbage (NaN fails >= 0): no hint
    return int(min(value, MAX_RETRY_AFTER_MS))


def retry_action(close_code: int | None, frame: Any = None, scheme: CodeScheme = "private") -> RetryAction:
    """The shared retry policy: what a client does after a close, from the close code and the frame.

    The same table is implemented by the browser helper (``retryAction`` in
    ``clients/js/ws-diag.js``, shipped as ``ws_diag/static/ws-diag.js``); both are tested
    against ``tests/retry_cases.json``.

    Args:
        close_code: the code the client saw; ``None`` when the connection failed or dropped
            without one (a failed handshake, a reset).
        frame: the ``error`` body of the last ws_diag frame (as ``ws_diag.client.parse_frame``
            returns it), or ``None`` when none arrived.
        scheme: the server's code scheme, to read a close code without a frame.

    Returns:
        A :class:`RetryAction`. With a frame, the frame decides, whatever the code (a custom
        component may use any private code): not ``retryable`` stops; 1012 (4012 on a strict
        server) is ``retry_now``; anything else is ``retry`` with the frame's
        ``retry_after_ms`` (clamped to 0..MAX_RETRY_AFTER_MS). Without a frame the code
        decides:

        - ws_diag's own codes: the registered 1000-1015, and 4001-4014 (the built-in
          components 4002-4010 and a strict server's fallbacks, code + 3000, which custom
          components may not use). A component's code follows the component's
          ``retryable``; 1012 (4012) is ``retry_now``; 1001, 1011, 1013, 1014 (or + 3000) and
          the codes no server sends (1005, 1006, 1015, or no code) back off; 1000 and the
          client's own faults in the private scheme (1002, 1003, 1007-1010, or + 3000) stop.
        - 4400-4599, read as an HTTP status + 4000 (Litestar, graphql-ws): 4500-4599 (a server
          error) back off; 4429 (too many requests) backs off, "retry later"; 4408 (a timeout)
          retries with backoff; every other 4400-4499 (a refused request: 4400, 4401, 4403,
          ...) stops. A custom component coded there is read the same way when its frame
          was lost.
        - Any other code (an app's own 3000-3999, 4000, 4015-4399, 4600-4999) stops.
    """
    restart = close_code in (CLOSE_SERVICE_RESTART, CLOSE_SERVICE_RESTART + STRICT_OFFSET)
    if frame is not None:
        name = frame.get("component")
        if frame.get("retryable") is not True:
            return RetryAction("stop", None, f"{name} failure is not retryable")
        hint = _hint_ms(frame)
        if restart:
            return RetryAction("retry_now", hint, "service restart")
        return RetryAction("retry", hint, f"{name} failure, retry after {hint} ms")
    if close_code is None or close_code in LOCAL_ONLY_CODES:
        return RetryAction("retry", 0, "connection lost without a close frame: back off")
    if restart:
        return RetryAction("retry_now", 0, "service restart")
    component = component_for_wire_code(close_code, scheme)
    if component is not None:
        if component.retryable:
            return RetryAction("retry", 0, f"{component.display_name} failure without a frame: back off")
        return RetryAction("stop", None, f"{component.display_name} failure is not retryable")
    registered = close_code - STRICT_OFFSET if close_code in _OWN_PRIVATE else close_code
    if registered in _BACKOFF_REGISTERED:
        return RetryAction("retry", 0, f"closed with {close_code}: back off")
    if registered in _STOP_REGISTERED:
        return RetryAction("stop", None, f"closed with {close_code}: reconnecting would repeat it")
    return _http_style_action(close_code)


def _http_style_action(close_code: int) -> RetryAction:
    status = close_code - _HTTP_OFFSET
    if 500 <= status <= 599:
        return RetryAction("retry", 0, f"closed with {close_code} (HTTP {status} + 4000: a server error): back off")
    if close_code == _HTTP_TOO_MANY:
        return RetryAction("retry", 0, f"closed with {close_code} (HTTP 429 + 4000: too many requests): retry later")
    if close_code == _HTTP_TIMEOUT:
        return RetryAction("retry", 0, f"closed with {close_code} (HTTP 408 + 4000: timed out): retry")
    if 400 <= status <= 499:
        why = f"closed with {close_code} (HTTP {status} + 4000: a refused request): reconnecting would repeat it"
        return RetryAction("stop", None, why)
    return RetryAction("stop", None, f"closed with {close_code}, which ws_diag does not know")
