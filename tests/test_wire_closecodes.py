"""Close codes, components and reasons."""

from __future__ import annotations

import pytest

from ws_diag import Component, CustomComponent
from ws_diag.components import validate_components
from ws_diag.wire.closecodes import MAX_REASON_BYTES, is_sendable_close_code, repair_close_code, truncate_reason
from ws_diag.wire.schemes import frame_code, wire_code

NEVER_ON_THE_WIRE = {1004, 1005, 1006, 1015}


def test_sendable_codes_over_the_whole_range() -> None:
    """Exactly 1000-1003, 1007-1014 and 3000-4999 are sendable, out of 0-65535."""
    sendable = {code for code in range(65536) if is_sendable_close_code(code)}
    assert sendable == {1000, 1001, 1002, 1003, *range(1007, 1015), *range(3000, 5000)}
    assert not sendable & NEVER_ON_THE_WIRE


def test_repair_always_yields_a_sendable_code() -> None:
    """Every code 0-65535 repairs to a sendable one, and sendable codes stay as they are."""
    for code in range(65536):
        repaired = repair_close_code(code)
        assert is_sendable_close_code(repaired)
        if is_sendable_close_code(code):
            assert repaired == code


def test_repair_of_no_status_and_abnormal() -> None:
    """1004, 1005 and 1006 become 1011: a failure, never a normal closure."""
    assert repair_close_code(1005) == 1011
    assert repair_close_code(1006) == 1011
    assert repair_close_code(1004) == 1011
    assert repair_close_code(999) == 1011
    assert repair_close_code(5000) == 1011


def test_component_table() -> None:
    """The ten built-in components carry the seed's names and both numberings."""
    table = {c.name: (c.display_name, c.code, c.legacy_code) for c in Component}
    assert table == {
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


@pytest.mark.parametrize(
    "reason",
    ["", "short", "é" * 61, "é" * 62, "x" * 123, "x" * 124, "€" * 41, "€" * 42, "😀" * 31, "😀" * 40, "a" + "😀" * 40],
)
def test_truncate_reason_on_character_boundary(reason: str) -> None:
    """Reasons are cut to at most 123 UTF-8 bytes without splitting a character."""
    cut = truncate_reason(reason)
    encoded = cut.encode("utf-8")
    assert len(encoded) <= MAX_REASON_BYTES
    assert reason.startswith(cut)
    if len(reason.encode()) <= MAX_REASON_BYTES:
        assert cut == reason
    else:
        # Nothing more could have fitted: the next character would overflow.
        assert len(encoded) + len(reason[len(cut)].encode()) > MAX_REASON_BYTES


def test_truncate_reason_replaces_unencodable_text() -> None:
    """A lone surrogate cannot be sent as UTF-8: it becomes U+FFFD (a written pair is joined), then the cut applies."""
    assert truncate_reason("bad \udc80 text") == "bad \ufffd text"
    assert truncate_reason("\ud83d\ude00") == "\U0001f600"
    cut = truncate_reason("\ud800" * 100)  # 100 x 3 bytes once replaced: cut on a character boundary
    assert cut == "\ufffd" * 41
    assert len(cut.encode("utf-8")) == 123


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
