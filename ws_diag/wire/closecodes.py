"""What RFC 6455 and the servers allow in a close frame: codes, their repair, reason limits.

Every registered close code ws_diag uses is defined here; other modules name them.
"""

from __future__ import annotations

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_HTTP_INTERNAL_ERROR",
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_NORMAL",
    "CLOSE_NO_STATUS",
    "CLOSE_SERVICE_RESTART",
    "LOCAL_ONLY_CODES",
    "MAX_REASON_BYTES",
    "PRIVATE_MAX",
    "PRIVATE_MIN",
    "SEED_FAILURE_CODES",
    "SENDABLE_REGISTERED",
    "STRICT_OFFSET",
    "is_failure_close_code",
    "is_framework_error_close_code",
    "is_sendable_close_code",
    "repair_close_code",
    "strict_fallback_code",
    "truncate_reason",
    "valid_utf8",
]

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
# RFC 6455 7.4.1: 1005 means "no status code was present"; it must not be sent.
CLOSE_NO_STATUS = 1005
CLOSE_INTERNAL_ERROR = 1011
# IANA registry: 1012 Service Restart, 1013 Try Again Later, 1014 Bad Gateway.
CLOSE_SERVICE_RESTART = 1012
# RFC 6455 7.4.1: reserved (1004) or for an endpoint's own use only (1005 no status,
# 1006 no close frame, 1015 TLS failure): a peer never sends them, so a client that
# reports one learnt nothing from the server.
LOCAL_ONLY_CODES = frozenset({1004, CLOSE_NO_STATUS, 1006, 1015})

# RFC 6455 5.5: a control frame payload is at most 125 bytes, 2 of them the code.
MAX_REASON_BYTES = 123

# Codes a server may put in a close frame: the registered ones a server can
# send (RFC 6455 7.4.1 plus IANA's 1012-1014), the registered range 3000-3999
# and the private range 4000-4999. 1004 is reserved; 1005, 1006 and 1015 must
# never be sent; anything else is rejected by clients (measured: the client
# sees 1006).
SENDABLE_REGISTERED = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015)})
PRIVATE_MIN = 4000
PRIVATE_MAX = 4999


def is_sendable_close_code(code: int) -> bool:
    """Tell whether a server can put ``code`` in a close frame and have it delivered."""
    return code in SENDABLE_REGISTERED or 3000 <= code <= PRIVATE_MAX


# Some servers accept only 1000 and 3000-4999 from an app (daphne: autobahn's sendClose).
# A registered code such a server refuses is retried as code + 3000, which keeps the
# numbering readable: 1011 -> 4011, legacy 1002 -> 4002 (the private auth code).
STRICT_OFFSET = 3000


def strict_fallback_code(code: int) -> int | None:
    """The private-range code to retry with when a server refuses registered ``code``.

    ``None`` when ``code`` is not one a strict server refuses (1000 and 3000-4999 are
    always accepted).
    """
    if code != CLOSE_NORMAL and code in SENDABLE_REGISTERED:
        return code + STRICT_OFFSET
    return None


def repair_close_code(code: int) -> int:
    """Return a deliverable close code for one an app asked for.

    A sendable code is returned unchanged; every undeliverable one (1004-1006,
    1015, < 1000, 1016-2999, >= 5000) becomes 1011, an unexpected condition,
    instead of a dropped connection (uvicorn-websockets) or the normal closure
    hypercorn and uvicorn-wsproto make of 1005 and 1006, which would hide a failure.
    """
    return code if is_sendable_close_code(code) else CLOSE_INTERNAL_ERROR


# The seed numbering used 1004, 1005 and 1006 for Handler, Database and Dependency
# failures. RFC 6455 7.4.1 forbids them on the wire, so an app that closes with one
# means a failure: never a normal closure (see seed_component for the legacy scheme).
SEED_FAILURE_CODES = frozenset({1004, CLOSE_NO_STATUS, 1006})


def is_failure_close_code(code: object) -> bool:
    """Whether an app's close ``code`` always means a failure (1004, 1005, 1006), whatever the settings."""
    return isinstance(code, int) and code in SEED_FAILURE_CODES


# The HTTP status + 4000 convention (Litestar, graphql-ws): 4500 is its generic "internal server
# error", the close Litestar sends for any exception a handler raised. 4501-4599 name a specific
# status an app chose (503 + 4000: Service Unavailable); they are its own word.
CLOSE_HTTP_INTERNAL_ERROR = 4500


def is_framework_error_close_code(code: object) -> bool:
    """Whether ``code`` is a framework's generic error close (4500), diagnosed when sent while handling an exception."""
    return code == CLOSE_HTTP_INTERNAL_ERROR


def valid_utf8(text: str) -> str:
    """``text`` as valid UTF-8 text: surrogates written as a pair are joined, lone ones become U+FFFD.

    A Python string may hold lone surrogates (a model's output, ``"\\ud800"`` in JSON);
    UTF-8 cannot encode them, so a server refuses a frame or close reason holding one.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def truncate_reason(reason: str) -> str:
    """Valid UTF-8 of at most 123 bytes: lone surrogates replaced (U+FFFD), then cut on a character boundary."""
    reason = valid_utf8(reason)
    encoded = reason.encode("utf-8")
    if len(encoded) <= MAX_REASON_BYTES:
        return reason
    # Dropping the bytes of a character cut in two keeps the text valid UTF-8.
    return encoded[:MAX_REASON_BYTES].decode("utf-8", "ignore")
