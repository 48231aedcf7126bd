"""Components, their close codes, wire-code validity and close-reason limits.

Every close code ws_diag uses is defined here; other modules name them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_NORMAL",
    "CLOSE_NO_STATUS",
    "CLOSE_SERVICE_RESTART",
    "DEFAULT_PRIORITY",
    "LOCAL_ONLY_CODES",
    "MAX_REASON_BYTES",
    "MAX_RETRY_AFTER_MS",
    "SERVICE_RESTART",
    "CodeScheme",
    "Component",
    "ComponentLike",
    "CustomComponent",
    "RetryAction",
    "RetryKind",
    "component_for_wire_code",
    "frame_code",
    "is_failure_close_code",
    "is_sendable_close_code",
    "repair_close_code",
    "retry_action",
    "seed_component",
    "strict_fallback_code",
    "truncate_reason",
    "valid_utf8",
    "validate_components",
    "wire_code",
]

CodeScheme = Literal["private", "legacy"]

# When several probes fail, blame these (probe names or component keys) first.
DEFAULT_PRIORITY = ("database", "redis", "dependency")

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
_SENDABLE_REGISTERED = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015)})
_PRIVATE_MIN = 4000
_PRIVATE_MAX = 4999


def is_sendable_close_code(code: int) -> bool:
    """Tell whether a server can put ``code`` in a close frame and have it delivered."""
    return code in _SENDABLE_REGISTERED or 3000 <= code <= _PRIVATE_MAX


# Some servers accept only 1000 and 3000-4999 from an app (daphne: autobahn's sendClose).
# A registered code such a server refuses is retried as code + 3000, which keeps the
# numbering readable: 1011 -> 4011, legacy 1002 -> 4002 (the private auth code).
_STRICT_OFFSET = 3000


def strict_fallback_code(code: int) -> int | None:
    """The private-range code to retry with when a server refuses registered ``code``.

    ``None`` when ``code`` is not one a strict server refuses (1000 and 3000-4999 are
    always accepted).
    """
    if code != CLOSE_NORMAL and code in _SENDABLE_REGISTERED:
        return code + _STRICT_OFFSET
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
_SEED_FAILURE_CODES = frozenset({1004, CLOSE_NO_STATUS, 1006})


def is_failure_close_code(code: object) -> bool:
    """Whether an app's close ``code`` always means a failure (1004, 1005, 1006), whatever the settings."""
    return isinstance(code, int) and code in _SEED_FAILURE_CODES


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


class ComponentLike(Protocol):
    """What ws_diag needs to know about a component, built in or custom."""

    @property
    def key(self) -> str: ...
    @property
    def display_name(self) -> str: ...
    @property
    def code(self) -> int: ...
    @property
    def legacy_code(self) -> int: ...
    @property
    def description(self) -> str: ...
    @property
    def suggestions(self) -> tuple[str, ...]: ...
    @property
    def retryable(self) -> bool: ...
    @property
    def http_status(self) -> int: ...


_SERVICE_UNAVAILABLE = 503


class Component(enum.Enum):
    """The built-in components and their codes.

    ``code`` is the private-use code (4000-4999, the default scheme); ``legacy_code``
    the seed's numbering (1002-1010), which only ever reaches the wire when it is
    deliverable (see :func:`wire_code`). ``GENERIC`` is 1011 in both schemes.
    """

    key: str
    display_name: str
    code: int
    legacy_code: int
    description: str
    suggestions: tuple[str, ...]
    retryable: bool
    http_status: int

    AUTH = (
        "auth",
        "Authentication",
        4002,
        1002,
        "Authentication failed",
        ("Check that the client sends valid, unexpired credentials",),
        False,
        403,
    )
    FACTORY = (
        "factory",
        "Factory",
        4003,
        1003,
        "Session factory failed to create the connection's resources",
        ("Check the factory's configuration and its own dependencies",),
        True,
        _SERVICE_UNAVAILABLE,
    )
    HANDLER = (
        "handler",
        "Message Handler",
        4004,
        1004,
        "The message handler failed",
        ("Check the server log for the incident id", "Check the message format the client sends"),
        False,
        500,
    )
    DATABASE = (
        "database",
        "Database",
        4005,
        1005,
        "Database unavailable",
        ("Check database connectivity and credentials", "Check the connection pool size and limits"),
        True,
        _SERVICE_UNAVAILABLE,
    )
    DEPENDENCY = (
        "dependency",
        "Dependencies",
        4006,
        1006,
        "A required dependency or setting is missing",
        ("Check required environment variables and configuration",),
        False,
        _SERVICE_UNAVAILABLE,
    )
    REDIS = (
        "redis",
        "Redis",
        4007,
        1007,
        "Redis unavailable",
        ("Check Redis connectivity and credentials", "Check Redis memory and client limits"),
        True,
        _SERVICE_UNAVAILABLE,
    )
    SUPERVISOR = (
        "supervisor",
        "Agent Supervisor",
        4008,
        1008,
        "The agent supervisor is unavailable",
        ("Check that the agent supervisor is running and reachable",),
        True,
        _SERVICE_UNAVAILABLE,
    )
    BRIDGE = (
        "bridge",
        "WebSocket Bridge",
        4009,
        1009,
        "The WebSocket bridge failed",
        ("Check the message bridge between the socket and the back end",),
        True,
        _SERVICE_UNAVAILABLE,
    )
    INTEGRATION = (
        "integration",
        "Integration",
        4010,
        1010,
        "An external integration failed",
        ("Check the external service's status and credentials",),
        True,
        _SERVICE_UNAVAILABLE,
    )
    GENERIC = (
        "generic",
        "Generic Internal",
        CLOSE_INTERNAL_ERROR,
        CLOSE_INTERNAL_ERROR,
        "Internal server error",
        ("Check the server log for the incident id",),
        True,
        500,
    )

    def __init__(
        self,
        key: str,
        display_name: str,
        code: int,
        legacy_code: int,
        description: str,
        suggestions: tuple[str, ...],
        retryable: bool,
        http_status: int,
    ) -> None:
        self.key = key
        self.display_name = display_name
        self.code = code
        self.legacy_code = legacy_code
        self.description = description
        self.suggestions = suggestions
        self.retryable = retryable
        self.http_status = http_status


@dataclass(frozen=True, slots=True)
class _ServerEvent:
    """A close that reports no failure but an event of the server's (ComponentLike, for the frame)."""

    key: str
    display_name: str
    code: int
    legacy_code: int
    description: str
    suggestions: tuple[str, ...]
    retryable: bool
    http_status: int


# A graceful shutdown: not a component failure. RFC 6455 (IANA registry) 1012 Service
# Restart, sent with a frame where the server lets the app speak before it stops.
SERVICE_RESTART: ComponentLike = _ServerEvent(
    "restart",
    "Service Restart",
    CLOSE_SERVICE_RESTART,
    CLOSE_SERVICE_RESTART,
    "The server is restarting",
    ("Reconnect after retry_after_ms",),
    True,
    _SERVICE_UNAVAILABLE,
)

# The built-in private codes, and the strict-server fallbacks.
_RESERVED_CODES = frozenset(
    {
        *(member.code for member in Component),
        # What a strict server gets instead of a registered code (code + 3000: 4001-4003, 4007-4014):
        # a custom component there would be read as that fallback by the clients' retry table.
        *(code + _STRICT_OFFSET for code in _SENDABLE_REGISTERED if code != CLOSE_NORMAL),
    }
)
_RESERVED_KEYS = frozenset({*(member.key for member in Component), SERVICE_RESTART.key})


def _check_private(key: str, field_name: str, code: int) -> None:
    if not _PRIVATE_MIN <= code <= _PRIVATE_MAX:
        msg = f"component {key!r}: {field_name} {code} is outside the private range 4000-4999"
        raise ValueError(msg)
    if code in _RESERVED_CODES:
        msg = f"component {key!r}: {field_name} {code} is reserved by ws_diag"
        raise ValueError(msg)


def _check_field_types(component: CustomComponent) -> None:
    """Raise a ``TypeError`` naming the first field of ``component`` given a value of the wrong type."""
    expected: tuple[tuple[str, type, str], ...] = (
        ("key", str, "a str"),
        ("display_name", str, "a str"),
        ("code", int, "an int"),
        ("description", str, "a str"),
        ("retryable", bool, "a bool"),
        ("http_status", int, "an int"),
        ("legacy_code", int, "an int"),
    )
    for name, kind, what in expected:
        value = getattr(component, name)
        # bool is an int subclass, but code=True is a mistake.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            msg = f"CustomComponent: {name} must be {what}, got {type(value).__name__}"
            raise TypeError(msg)
    suggestions = component.suggestions
    # A lone string is iterable too: ("Check x") would become one suggestion per character.
    if isinstance(suggestions, str | bytes) or not isinstance(suggestions, Iterable):
        msg = f"CustomComponent: suggestions must be a tuple or list of str, got {type(suggestions).__name__}"
        raise TypeError(msg)
    suggestions = tuple(suggestions)
    for item in suggestions:
        if not isinstance(item, str):
            msg = f"CustomComponent: suggestions must be a tuple or list of str, got an item of {type(item).__name__}"
            raise TypeError(msg)
    object.__setattr__(component, "suggestions", suggestions)


@dataclass(frozen=True, slots=True)
class CustomComponent:
    """A component of the user's own, with a private-use code in 4000-4999.

    Args:
        key: short identifier, used as a probe name and in reports (``"billing"``).
        display_name: what the JSON frame's ``component`` says (``"Billing"``).
        code: close code, 4000-4999, not one of the built-in components' codes.
        description: the standard message sent when no safe message is known.
        suggestions: hints for whoever reads the frame.
        retryable: whether a client may simply reconnect.
        http_status: status for the ``http_denial`` pre-accept mode.
        legacy_code: the code in the ``legacy`` scheme (also 4000-4999); defaults to ``code``.

    Raises:
        TypeError: a field of the wrong type (``code="4100"``, ``suggestions="Check x"``), naming it.
        ValueError: a code outside 4000-4999 or reserved by ws_diag (4001-4014), a key of
            a built-in component, an empty key or display name, or a non-error HTTP status.
    """

    key: str
    display_name: str
    code: int
    description: str = "A component failed"
    suggestions: tuple[str, ...] = ()
    retryable: bool = True
    http_status: int = _SERVICE_UNAVAILABLE
    legacy_code: int = field(default=0)

    def __post_init__(self) -> None:
        _check_field_types(self)
        if not self.key or not self.display_name:
            msg = f"custom component needs a key and a display name, got {self.key!r}, {self.display_name!r}"
            raise ValueError(msg)
        if self.key in _RESERVED_KEYS:
            msg = f"component key {self.key!r} is reserved by a built-in component"
            raise ValueError(msg)
        _check_private(self.key, "code", self.code)
        if not 400 <= self.http_status <= 599:
            msg = f"component {self.key!r}: http_status {self.http_status} is not an HTTP error status"
            raise ValueError(msg)
        if self.legacy_code == 0:
            object.__setattr__(self, "legacy_code", self.code)
        else:
            _check_private(self.key, "legacy_code", self.legacy_code)


def validate_components(components: Iterable[ComponentLike]) -> tuple[ComponentLike, ...]:
    """Check that custom components share no key, code or legacy code with each other or the built-ins.

    Raises:
        ValueError: naming the first clash.
    """
    seen_keys: set[str] = {c.key for c in Component}
    seen_codes: dict[int, str] = {}
    for member in Component:
        for code in {member.code, wire_code(member, "legacy")}:
            seen_codes[code] = member.key
    result = []
    for component in components:
        if isinstance(component, Component):
            continue
        if component.key in seen_keys:
            msg = f"duplicate component key {component.key!r}"
            raise ValueError(msg)
        for code in {component.code, component.legacy_code}:
            if code in seen_codes:
                msg = f"component {component.key!r}: code {code} is already used by {seen_codes[code]!r}"
                raise ValueError(msg)
            seen_codes[code] = component.key
        seen_keys.add(component.key)
        result.append(component)
    return tuple(result)


_SEED_COMPONENTS: dict[int, Component] = {
    member.legacy_code: member for member in Component if member.legacy_code in _SEED_FAILURE_CODES
}


def seed_component(code: object, scheme: CodeScheme) -> Component | None:
    """The component an app's close ``code`` names by itself, or ``None``.

    Only in the ``legacy`` scheme, and only for the seed's undeliverable codes:
    1004 Message Handler, 1005 Database, 1006 Dependencies. The deliverable legacy
    codes (1002, 1003, 1007-1010) are left alone in every scheme: frameworks send
    1008 (policy violation) and 1003 for their own reasons.
    """
    if scheme != "legacy" or not isinstance(code, int):
        return None
    return _SEED_COMPONENTS.get(code)


def frame_code(component: ComponentLike, scheme: CodeScheme) -> int:
    """The code the JSON diagnostic frame reports for ``component``."""
    return component.legacy_code if scheme == "legacy" else component.code


def wire_code(component: ComponentLike, scheme: CodeScheme) -> int:
    """The code put in the close frame for ``component``.

    In the ``legacy`` scheme the legacy code is used when a server can deliver
    it (1002, 1003, 1007-1010); 1004, 1005 and 1006 cannot be delivered, so
    those components close with their private code (4004, 4005, 4006).
    """
    if scheme == "legacy" and is_sendable_close_code(component.legacy_code):
        return component.legacy_code
    return component.code


# --- After the close: whether and when a client reconnects -------------------------------

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
_OWN_PRIVATE = frozenset(code for code in _RESERVED_CODES if code >= _PRIVATE_MIN)
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
    restart = close_code in (CLOSE_SERVICE_RESTART, CLOSE_SERVICE_RESTART + _STRICT_OFFSET)
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
    registered = close_code - _STRICT_OFFSET if close_code in _OWN_PRIVATE else close_code
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


def _wire_table(scheme: CodeScheme) -> dict[int, Component]:
    table: dict[int, Component] = {}
    for member in Component:
        code = wire_code(member, scheme)
        table[code] = member
        table[strict_fallback_code(code) or code] = member
    return table


# Close codes as they arrive on the wire, per scheme (legacy 1004-1006 travel as 4004-4006),
# and their strict-server fallbacks (daphne: 1011 arrives as 4011, legacy 1002 as 4002).
_COMPONENT_BY_WIRE: dict[str, dict[int, Component]] = {
    "private": _wire_table("private"),
    "legacy": _wire_table("legacy"),
}


def component_for_wire_code(close_code: int, scheme: CodeScheme = "private") -> Component | None:
    """The built-in component a close code (as a client sees it) stands for in ``scheme``, or ``None``.

    Includes strict servers' fallbacks (daphne: 1011 arrives as 4011, legacy 1002 as 4002).
    """
    return _COMPONENT_BY_WIRE[scheme].get(close_code)
