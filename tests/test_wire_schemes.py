"""The private and legacy close-code schemes (ws_diag.wire.schemes): what goes on the wire and in the frame."""

from __future__ import annotations

import pytest

from ws_diag import Component
from ws_diag.wire.closecodes import is_sendable_close_code
from ws_diag.wire.schemes import frame_code, wire_code


@pytest.mark.parametrize("scheme", ["private", "legacy"])
def test_wire_codes_are_always_deliverable(scheme: str) -> None:
    """No component ever puts 1004/1005/1006 on the wire, in either scheme."""
    for component in Component:
        assert is_sendable_close_code(wire_code(component, scheme))  # type: ignore[arg-type]


def test_legacy_mapping() -> None:
    """Legacy frames carry 1002-1010; the wire carries the legacy code only when deliverable."""
    wire = {c.name: wire_code(c, "legacy") for c in Component}
    assert wire == {
        "AUTH": 1002,
        "FACTORY": 1003,
        "HANDLER": 4004,
        "DATABASE": 4005,
        "DEPENDENCY": 4006,
        "REDIS": 1007,
        "SUPERVISOR": 1008,
        "BRIDGE": 1009,
        "INTEGRATION": 1010,
        "GENERIC": 1011,
    }
    assert frame_code(Component.DATABASE, "legacy") == 1005
    assert frame_code(Component.DATABASE, "private") == 4005
