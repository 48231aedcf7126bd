"""The exception an application raises to name the component that failed."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypedDict, Unpack

from .components import Component, ComponentLike
from .diagnosis import Diagnosis
from .retry import MAX_RETRY_AFTER_MS
from .wire.frame import build_frame
from .wire.schemes import CodeScheme

__all__ = ["ErrorOptions", "WebSocketComponentError"]

# The attributes of the ComponentLike protocol: a component is checked where it is passed.
_COMPONENT_ATTRIBUTES = (
    "key",
    "display_name",
    "code",
    "legacy_code",
    "description",
    "suggestions",
    "retryable",
    "http_status",
)
_NONE = type(None)


def _check_arguments(**arguments: tuple[object, tuple[type, ...], str]) -> None:
    """Raise a ``TypeError`` naming the first argument whose value is not of its expected types."""
    for name, (value, expected, what) in arguments.items():
        if not isinstance(value, expected):
            msg = f"WebSocketComponentError: {name} must be {what}, got {type(value).__name__}"
            raise TypeError(msg)


class ErrorOptions(TypedDict, total=False):
    """Keyword arguments shared by the ``*_failure`` factories."""

    user_id: str | None
    details: Mapping[str, Any] | None
    root_cause: BaseException | str | None
    retryable: bool | None
    retry_after: float | None


# One hour, the frame's bound (codes.MAX_RETRY_AFTER_MS).
_MAX_RETRY_AFTER = MAX_RETRY_AFTER_MS / 1000  # seconds


def _check_retry_after(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        msg = f"retry_after must be a finite number of seconds >= 0, got {value!r}"
        raise ValueError(msg)
    return min(float(value), _MAX_RETRY_AFTER)


class WebSocketComponentError(Exception):
    """A failure the application attributes to one component.

    Raise it before or after accepting a websocket; :class:`~ws_diag.DiagnosticsMiddleware`
    turns it into the component's close code and a JSON diagnostic frame without
    probing anything. ``message`` is written by the application and is sent to the
    client; ``details`` and ``root_cause`` are sent only with ``expose_details``.

    Args:
        component: a :class:`Component` member or a :class:`CustomComponent`.
        message: a client-safe description; defaults to the component's description.
        user_id: the affected user, echoed in the frame.
        details: extra JSON-serialisable data.
        root_cause: the underlying cause, an exception or a text.
        retryable: overrides the component's default.
        retry_after: seconds the client should wait before reconnecting (the frame's
            ``retry_after_ms``); capped at one hour; ``None`` for the configured default.

    Raises:
        TypeError: an argument of the wrong type (``message=123``, ``details=[1]``,
            ``retryable="yes"``, a component given as a string), naming the argument.
        ValueError: ``retry_after`` is negative, NaN, infinite or not a number.
    """

    def __init__(
        self,
        component: ComponentLike,
        message: str | None = None,
        *,
        user_id: str | None = None,
        details: Mapping[str, Any] | None = None,
        root_cause: BaseException | str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        # Checked here, where the mistake is made, not when the frame is built (a bare 1011).
        if not all(hasattr(component, attribute) for attribute in _COMPONENT_ATTRIBUTES):
            msg = (
                "WebSocketComponentError: component must be a Component member or a CustomComponent, "
                f"got {type(component).__name__}"
            )
            raise TypeError(msg)
        _check_arguments(
            message=(message, (str, _NONE), "a str or None"),
            user_id=(user_id, (str, _NONE), "a str or None"),
            details=(details, (Mapping, _NONE), "a mapping (dict) or None"),
            root_cause=(root_cause, (BaseException, str, _NONE), "an exception, a str or None"),
            retryable=(retryable, (bool, _NONE), "a bool or None"),
        )
        self.component = component
        self.message = message if message else component.description
        self.user_id = user_id
        self.details = dict(details) if details else {}
        self.root_cause = root_cause
        self.retryable = component.retryable if retryable is None else retryable
        self.retry_after = _check_retry_after(retry_after)
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.component.key!r}, {self.message!r})"

    def to_websocket_response(
        self, *, code_scheme: CodeScheme = "private", expose_details: bool = False
    ) -> dict[str, Any]:
        """Return the JSON diagnostic frame for this error, as a dict."""
        diagnosis = Diagnosis.from_component_error(self)
        return build_frame(diagnosis, code_scheme=code_scheme, expose_details=expose_details)

    @classmethod
    def auth_failure(cls, message: str | None = None, **options: Unpack[ErrorOptions]) -> WebSocketComponentError:
        """An authentication failure (4002)."""
        return cls(Component.AUTH, message, **options)

    @classmethod
    def factory_failure(cls, message: str | None = None, **options: Unpack[ErrorOptions]) -> WebSocketComponentError:
        """A session factory failure (4003)."""
        return cls(Component.FACTORY, message, **options)

    @classmethod
    def handler_failure(cls, message: str | None = None, **options: Unpack[ErrorOptions]) -> WebSocketComponentError:
        """A message handler failure (4004)."""
        return cls(Component.HANDLER, message, **options)

    @classmethod
    def database_failure(cls, message: str | None = None, **options: Unpack[ErrorOptions]) -> WebSocketComponentError:
        """A database failure (4005)."""
        return cls(Component.DATABASE, message, **options)

    @classmethod
    def dependency_failure(cls, message: str | None = None, **options: Unpack[ErrorOptions]) -> WebSocketComponentError:
        """A missing dependency or setting (4006)."""
        return cls(Component.DEPENDENCY, message, **options)

    @classmethod
    def redis_failure(cls, message: str | None = None, **options: Unpack[ErrorOptions]) -> WebSocketComponentError:
        """A Redis failure (4007)."""
        return cls(Component.REDIS, message, **options)

    @classmethod
    def supervisor_failure(cls, message: str | None = None, **options: Unpack[ErrorOptions]) -> WebSocketComponentError:
        """An agent supervisor failure (4008)."""
        return cls(Component.SUPERVISOR, message, **options)

    @classmethod
    def bridge_failure(cls, message: str | None = None, **options: Unpack[ErrorOptions]) -> WebSocketComponentError:
        """A websocket bridge failure (4009)."""
        return cls(Component.BRIDGE, message, **options)

    @classmethod
    def integration_failure(
        cls, message: str | None = None, **options: Unpack[ErrorOptions]
    ) -> WebSocketComponentError:
        """An external integration failure (4010)."""
        return cls(Component.INTEGRATION, message, **options)
