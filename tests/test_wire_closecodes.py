"""RFC 6455 close-code rules (ws_diag.wire.closecodes): sendable codes, repair, and the reason cut to 123 bytes."""

from __future__ import annotations

import pytest

from ws_diag.wire.closecodes import MAX_REASON_BYTES, is_sendable_close_code, repair_close_code, truncate_reason

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
