"""Components: the built-in catalogue, custom components and their validation."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from .wire.closecodes import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    CLOSE_SERVICE_RESTART,
    PRIVATE_MAX,
    PRIVATE_MIN,
    SENDABLE_REGISTERED,
    STRICT_OFFSET,
    is_sendable_close_code,
)

__all__ = [
    "DEFAULT_PRIORITY",
    "RESERVED_CODES",
    "SERVICE_RESTART",
    "Component",
    "ComponentLike",
    "CustomComponent",
    "validate_components",
]

# When several probes fail, blame these (probe names or component keys) first.
DEFAULT_PRIORITY = ("database", "redis", "dependency")


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
RESERVED_CODES = frozenset(
    {
        *(member.code for member in Component),
        # What a strict server gets instead of a registered code (code + 3000: 4001-4003, 4007-4014):
        # a custom component there would be read as that fallback by the clients' retry table.
        *(code + STRICT_OFFSET for code in SENDABLE_REGISTERED if code != CLOSE_NORMAL),
    }
)
_RESERVED_KEYS = frozenset({*(member.key for member in Component), SERVICE_RESTART.key})


def _check_private(key: str, field_name: str, code: int) -> None:
    if not PRIVATE_MIN <= code <= PRIVATE_MAX:
        msg = f"component {key!r}: {field_name} {code} is outside the private range 4000-4999"
        raise ValueError(msg)
    if code in RESERVED_CODES:
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
        # its legacy-scheme wire code (wire.schemes.wire_code): the legacy code when deliverable
        legacy_wire = member.legacy_code if is_sendable_close_code(member.legacy_code) else member.code
        for code in {member.code, legacy_wire}:
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
