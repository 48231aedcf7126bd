"""Redaction and bounds of client-visible text (ws_diag.redaction): masks, cuts, surrogates, unprintable errors."""

from __future__ import annotations

import json

import pytest

from ws_diag.redaction import bound_text, describe_exception, redact

SECRET = "hunter2-Sup3rSecret"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://user:pw@host:5432/db", "postgresql://user:***@host:5432/db"),
        ("redis://:pw@host", "redis://:***@host"),
        ("password=abc host=x", "password=*** host=x"),
        ("TOKEN: 'a b c'", "TOKEN: '***'"),
        ('{"password": "x y"}', '{"password": "***"}'),
        ("{'password': 'x'}", "{'password': '***'}"),
        ("access_token=abc&x=1", "access_token=***&x=1"),
        ("client_secret=abc db_password=def PGPASSWORD=ghi", "client_secret=*** db_password=*** PGPASSWORD=***"),
        ("aws_secret_access_key=AKIA123", "aws_secret_access_key=***"),
        ("Authorization: Bearer eyJhbGciOi.x.y", "Authorization: ***"),
        ("header was Bearer eyJhbGciOiJIUzI1", "header was Bearer ***"),
        ("Cookie: session=abcdef", "Cookie: ***"),
        ("postgresql://app:p@ssw0rd@db/app", "postgresql://app:***@db/app"),
        ("redis://u:" + "s" * 1500 + "@h", "redis://u:***@h"),
        ("redis://u:" + "s" * 1100, "redis://u:***"),
        ("see https://example.com/docs for help", "see https://example.com/docs for help"),
        ("nothing secret here", "nothing secret here"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    """Redaction masks URL passwords, secret-named pairs, headers and bearer tokens, and leaves other text alone."""
    assert redact(text) == expected


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "text",
    ["x" * 1_000_000, "a" * 100_000 + "://", "http://" + "u" * 100_000 + ":" + "p" * 100_000, "password=" * 50_000],
)
def test_redaction_is_linear_on_hostile_text(text: str) -> None:
    """Megabyte texts built to make regexes backtrack are redacted and cut promptly (a ReDoS regression)."""
    assert len(redact(text)) <= 2049


def test_credential_straddling_the_cut_is_still_masked() -> None:
    """A DSN that starts just before the length cut loses its whole password, not just the tail."""
    text = "y" * 2040 + f" postgresql://u:{SECRET}@h/db"
    redacted = redact(text)
    assert redacted.endswith("…")
    assert SECRET[:4] not in redacted


def test_unprintable_exception_is_described() -> None:
    """An exception whose __str__ raises is still described, never an error."""

    class Nasty(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert describe_exception(Nasty()) == "Nasty: <unprintable Nasty>"


def test_cut_texts_keep_whole_characters_and_are_marked() -> None:
    """A cut text is a prefix of the original plus an ellipsis, never half a character."""
    text = "ab\U0001f600" * 5000
    cut = bound_text(text, 200)
    assert cut.endswith("…")
    assert text.startswith(cut[:-1])
    assert len(json.dumps(cut)) <= 200
    assert bound_text("short message", 200) == "short message"


def test_surrogate_pairs_are_joined_and_lone_surrogates_replaced() -> None:
    """Two surrogates forming a pair become the character; a lone one becomes U+FFFD."""
    assert bound_text("\ud83d\ude00 ok \ud800", 200) == "\U0001f600 ok \ufffd"
