"""The component catalogue (ws_diag.components): the built-in table, custom components and their validation."""

from __future__ import annotations

import json

import pytest
from harness import CONNECT, drive, failing

from ws_diag import Component, CustomComponent, DiagnosticsMiddleware, DiagSettings, WebSocketComponentError
from ws_diag.components import validate_components
from ws_diag.wire.schemes import wire_code

# The seed's catalogue: name -> (display name, private code, legacy code).
SEED_TABLE = {
    "AUTH": ("Authentication", 4002, 1002),
    "FACTORY": ("Factory", 4003, 1003),
    "HANDLER": ("Message Handler", 4004, 1004),
    "DATABASE": ("Database", 4005, 1005),
    "DEPENDENCY": ("Dependencies", 4006, 1006),
    "REDIS": ("Redis", 4007, 1007),
    "SUPERVISOR": ("Agent Supervisor", 4008, 1008),
    "BRIDGE": ("WebSocket Bridge", 4009, 1009),
    "INTEGRATION": ("Integration", 4010, 1010),
    "GENERIC": ("Generic Internal", 1011, 1011),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("scheme", ["private", "legacy"])
async def test_component_table(scheme: str) -> None:
    """The ten built-in components carry the seed's names and numberings, and a client sees them in the frame."""
    table = {c.name: (c.display_name, c.code, c.legacy_code) for c in Component}
    assert table == SEED_TABLE
    for component in Component:
        display_name, code, legacy_code = SEED_TABLE[component.name]
        error = WebSocketComponentError(component, "down")
        run = await drive(DiagnosticsMiddleware(failing(error), settings=DiagSettings(code_scheme=scheme)), [CONNECT])
        frame = json.loads(run.sent[1]["text"])["error"]
        assert (frame["component"], frame["code"]) == (display_name, code if scheme == "private" else legacy_code)
        assert run.close is not None
        if scheme == "private":
            assert run.close["code"] == code


def test_custom_component_valid() -> None:
    """A custom component in 4000-4999 is accepted and its legacy code defaults to its code."""
    billing = CustomComponent("billing", "Billing", 4100, description="Billing unavailable")
    assert billing.legacy_code == 4100
    assert wire_code(billing, "legacy") == 4100
    assert validate_components([billing]) == (billing,)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"key": "billing", "display_name": "Billing", "code": 3999}, "outside the private range"),
        ({"key": "billing", "display_name": "Billing", "code": 5000}, "outside the private range"),
        ({"key": "billing", "display_name": "Billing", "code": 4005}, "reserved"),
        ({"key": "billing", "display_name": "Billing", "code": 4011}, "reserved"),
        ({"key": "billing", "display_name": "Billing", "code": 4100, "legacy_code": 1000}, "legacy_code 1000"),
        ({"key": "billing", "display_name": "Billing", "code": 4100, "legacy_code": 4007}, "legacy_code 4007"),
        ({"key": "database", "display_name": "DB", "code": 4100}, "reserved"),
        ({"key": "", "display_name": "Billing", "code": 4100}, "key"),
        ({"key": "billing", "display_name": "Billing", "code": 4100, "http_status": 200}, "http_status"),
    ],
)
def test_custom_component_invalid(kwargs: dict[str, object], fragment: str) -> None:
    """Out-of-range, reserved or incomplete custom components are refused with a clear message."""
    with pytest.raises(ValueError, match=fragment):
        CustomComponent(**kwargs)  # type: ignore[arg-type]


def test_duplicate_custom_components_refused() -> None:
    """Two custom components may not share a code or a key."""
    a = CustomComponent("billing", "Billing", 4100)
    with pytest.raises(ValueError, match="already used by 'billing'"):
        validate_components([a, CustomComponent("search", "Search", 4100)])
    with pytest.raises(ValueError, match="duplicate component key 'billing'"):
        validate_components([a, CustomComponent("billing", "Billing 2", 4101)])
    with pytest.raises(ValueError, match="code 4100 is already used by 'billing'"):
        validate_components([a, CustomComponent("search", "Search", 4200, legacy_code=4100)])
