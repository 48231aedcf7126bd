"""Code schemes: which code a component's frame reports and which one goes on the wire."""

from __future__ import annotations

from typing import Literal

from ..components import Component, ComponentLike
from .closecodes import SEED_FAILURE_CODES, is_sendable_close_code, strict_fallback_code

__all__ = ["CodeScheme", "component_for_wire_code", "frame_code", "seed_component", "wire_code"]

CodeScheme = Literal["private", "legacy"]

_SEED_COMPONENTS: dict[int, Component] = {
    member.legacy_code: member for member in Component if member.legacy_code in SEED_FAILURE_CODES
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
