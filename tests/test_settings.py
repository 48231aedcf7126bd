"""Settings: defaults, environment, validation, immutability."""

from __future__ import annotations

import pydantic
import pytest

from ws_diag import DiagSettings


def test_defaults() -> None:
    """The documented defaults hold."""
    settings = DiagSettings()
    assert settings.code_scheme == "private"
    assert settings.expose_details is False
    assert settings.preaccept == "accept_close"
    assert settings.probe_timeout == 1.0
    assert settings.cache_ttl == 2.0
    assert settings.rewrite_codes == frozenset({1011})
    assert settings.track_disconnect is False


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """WS_DIAG_* variables set the fields, lists as JSON."""
    monkeypatch.setenv("WS_DIAG_CODE_SCHEME", "legacy")
    monkeypatch.setenv("WS_DIAG_EXPOSE_DETAILS", "true")
    monkeypatch.setenv("WS_DIAG_PROBE_TIMEOUT", "0.25")
    monkeypatch.setenv("WS_DIAG_REWRITE_CODES", "[1011, 1006]")
    settings = DiagSettings()
    assert settings.code_scheme == "legacy"
    assert settings.expose_details is True
    assert settings.probe_timeout == 0.25
    assert settings.rewrite_codes == frozenset({1011, 1006})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("code_scheme", "modern"),
        ("preaccept", "reject"),
        ("probe_timeout", 0),
        ("probe_timeout", -1),
        ("probe_timeout", float("nan")),
        ("probe_timeout", float("inf")),
        ("cache_ttl", -0.1),
        ("send_timeout", 0),
        ("rewrite_codes", [999]),
        ("rewrite_codes", [5000]),
        ("expose_details", "maybe"),
    ],
)
def test_invalid_values_name_the_field(field: str, value: object) -> None:
    """An invalid value fails at construction with the field's name in the message."""
    with pytest.raises(pydantic.ValidationError) as info:
        DiagSettings(**{field: value})
    assert field in str(info.value)


def test_invalid_environment_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad environment variable fails at construction, naming the field."""
    monkeypatch.setenv("WS_DIAG_PROBE_TIMEOUT", "soon")
    with pytest.raises(pydantic.ValidationError, match="probe_timeout"):
        DiagSettings()


def test_unknown_keyword_is_refused() -> None:
    """A misspelt keyword argument is an error, not silently ignored."""
    with pytest.raises(pydantic.ValidationError, match="probe_timout"):
        DiagSettings(probe_timout=2)  # type: ignore[call-arg]


def test_settings_are_immutable() -> None:
    """Settings cannot be changed after construction."""
    settings = DiagSettings()
    with pytest.raises(pydantic.ValidationError):
        settings.probe_timeout = 5  # type: ignore[misc]
