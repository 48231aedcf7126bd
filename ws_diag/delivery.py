"""Delivery: frame and close within ``send_timeout``, strict servers' refusals, repaired closes.

Nothing here runs on the message path.
"""

from __future__ import annotations

import enum
import logging

from . import _concurrency as cc
from ._types import Message, Send
from .logs import LogEvent
from .wire.closecodes import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    repair_close_code,
    strict_fallback_code,
    truncate_reason,
)

__all__ = ["Delivery", "deliver", "repaired_close", "repaired_code", "send_close"]

logger = logging.getLogger("ws_diag")


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
        extra={"ws_diag_event": LogEvent.REPAIRED, "code": good_code},
    )
    return {**message, "code": good_code, "reason": good_reason or ""}


class Delivery(enum.Enum):
    """How sending frame and close went (see :func:`deliver`)."""

    DELIVERED = "delivered"
    SLOW = "slow"
    GONE = "gone"
    LATE_GONE = "late-gone"


async def send_close(send: Send, message: Message) -> Message:
    """Send ``message``; a close a strict server refuses is retried once as code + 3000.

    Some servers accept only 1000 and 3000-4999 from an app (daphne, through
    autobahn's ``sendClose``, raises from ``send``; see ``wire.closecodes.strict_fallback_code``).
    Returns the message actually sent. When the retry is refused too, the first
    refusal is raised, outside any handler of ws_diag's, so its ``__context__`` is
    what the app was handling, exactly as without ws_diag.
    """
    code = message.get("code", CLOSE_NORMAL) if message["type"] == "websocket.close" else None
    fallback = strict_fallback_code(code) if isinstance(code, int) else None
    refusal: Exception | None = None
    try:
        await send(message)
    except OSError:
        raise
    except Exception as err:
        if fallback is None:
            raise
        refusal = err
    if refusal is None:
        return message
    second = {**message, "code": fallback}
    try:
        await send(second)
    except Exception:
        retried = False
    else:
        retried = True
    if not retried:
        raise refusal
    logger.info(
        "server refused close code %s; closed with %s instead",
        code,
        fallback,
        extra={"ws_diag_event": LogEvent.STRICT_FALLBACK, "code": fallback},
    )
    return second


async def deliver(send: Send, messages: list[Message], send_timeout: float) -> tuple[Delivery, Message | None]:
    """Send ``messages`` within send_timeout; returns how it went and the last message sent.

    GONE: the server refused the first message; LATE_GONE: a later one; SLOW: the
    client did not take them in time (the close then gets a last-resort budget of
    its own). The last message sent is the close as actually sent (a strict server
    may have had it in the private range).
    """
    pending = list(messages)
    sent: Message | None = None
    try:
        async with cc.timeout(send_timeout):
            while pending:
                if sent is None:
                    # A refusal of the first message says nothing about close codes:
                    # the client is gone (uvicorn's legacy websockets raises RuntimeError).
                    try:
                        await send(pending[0])
                    except Exception:
                        return Delivery.GONE, None
                    sent = pending[0]
                else:
                    sent = await send_close(send, pending[0])
                del pending[0]
    except TimeoutError:
        logger.warning(
            "client too slow: frame and close not delivered within %ss",
            send_timeout,
            extra={"ws_diag_event": LogEvent.SEND_TIMEOUT},
        )
        # The close must still go out, with a budget of its own: without it uvicorn
        # drops the connection (1006) and an app waiting for the disconnect never finishes.
        close = next((m for m in pending if m["type"] == "websocket.close"), None)
        if close is not None:
            sent = await _last_resort(send, close, send_timeout)
        return Delivery.SLOW, sent
    except Exception:
        # The first message went, a later one did not: the connection ended in between.
        logger.debug("client gone before the close was delivered", extra={"ws_diag_event": LogEvent.CLIENT_GONE})
        return Delivery.LATE_GONE, sent
    return Delivery.DELIVERED, sent


async def _last_resort(send: Send, close: Message, send_timeout: float) -> Message | None:
    """One more bounded attempt at a close; returns it as sent, if it went."""
    try:
        async with cc.timeout(send_timeout):
            return await send_close(send, close)
    except Exception:
        logger.warning("the close could not be delivered either", extra={"ws_diag_event": LogEvent.SEND_TIMEOUT})
        return None
