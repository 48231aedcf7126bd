"""Settings: defaults, environment, validation, immutability."""

from __future__ import annotations

import json
import logging
from types import MappingProxyType

import pydantic
import pytest

from ws_diag import DiagnosticsMiddleware, DiagSettings
from ws_diag.settings import describe_settings_error, dsn, load_settings
from ws_diag.settings import model as settings_module


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
    assert settings.reraise is True


def test_reraise_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """WS_DIAG_RERAISE=false turns reraise off; a value that is no boolean fails naming the field."""
    monkeypatch.setenv("WS_DIAG_RERAISE", "false")
    assert DiagSettings().reraise is False
    monkeypatch.setenv("WS_DIAG_RERAISE", "sometimes")
    with pytest.raises(pydantic.ValidationError, match="reraise"):
        DiagSettings()


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


def test_load_settings_returns_settings_as_given() -> None:
    """A DiagSettings passes through load_settings unchanged (the same object)."""
    settings = DiagSettings(probe_timeout=0.5)
    assert load_settings(settings) is settings


def test_load_settings_builds_from_a_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    """A mapping becomes DiagSettings(**mapping); fields it leaves out still come from WS_DIAG_* variables."""
    monkeypatch.setenv("WS_DIAG_CACHE_TTL", "7")
    settings = load_settings(MappingProxyType({"probe_timeout": 0.5}))
    assert isinstance(settings, DiagSettings)
    assert (settings.probe_timeout, settings.cache_ttl) == (0.5, 7.0)


def test_load_settings_reads_the_environment_for_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """None means every field from WS_DIAG_* variables."""
    monkeypatch.setenv("WS_DIAG_CODE_SCHEME", "legacy")
    assert load_settings(None).code_scheme == "legacy"


@pytest.mark.parametrize("value", [5, "probe_timeout=0.5", [("probe_timeout", 0.5)], object()])
def test_load_settings_refuses_other_types(caplog: pytest.LogCaptureFixture, value: object) -> None:
    """Anything but DiagSettings, a mapping or None is a TypeError that says what is expected, logged at ERROR."""
    caplog.set_level(logging.ERROR, logger="ws_diag")
    with pytest.raises(TypeError, match="settings must be a DiagSettings, a mapping of its fields or None") as info:
        load_settings(value)  # type: ignore[arg-type]
    assert info.value.__cause__ is None
    assert [r.levelno for r in caplog.records if r.name == "ws_diag"] == [logging.ERROR]


def test_load_settings_refuses_non_string_keys() -> None:
    """A mapping key that is not a field name is a TypeError naming the key."""
    with pytest.raises(TypeError, match="keys must be field names"):
        load_settings({1: 2})  # type: ignore[dict-item]


def test_middleware_accepts_a_mapping_and_refuses_other_types() -> None:
    """DiagnosticsMiddleware(settings=dict) works (it was an AttributeError); settings=5 is a TypeError."""

    async def app(scope: object, receive: object, send: object) -> None:
        """Never called."""

    assert DiagnosticsMiddleware(app, settings={"probe_timeout": 0.5}).settings.probe_timeout == 0.5
    with pytest.raises(TypeError, match="DiagSettings"):
        DiagnosticsMiddleware(app, settings=5)  # type: ignore[arg-type]


def test_bad_mapping_is_logged_naming_the_field(caplog: pytest.LogCaptureFixture) -> None:
    """An invalid value in a mapping is logged at ERROR naming settings['field'], then raised unchanged."""
    caplog.set_level(logging.ERROR, logger="ws_diag")
    with pytest.raises(pydantic.ValidationError, match="probe_timeout") as info:
        load_settings({"probe_timeout": -1})
    assert info.value.__cause__ is None
    (record,) = [r for r in caplog.records if r.name == "ws_diag"]
    assert record.levelno == logging.ERROR
    assert "settings['probe_timeout']" in record.getMessage()
    assert record.ws_diag_event == "settings_invalid"  # type: ignore[attr-defined]


def test_bad_environment_is_logged_naming_variable_and_field(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An invalid WS_DIAG_* value is logged at ERROR naming the variable and the field."""
    monkeypatch.setenv("WS_DIAG_PROBE_TIMEOUT", "-1")
    caplog.set_level(logging.ERROR, logger="ws_diag")
    with pytest.raises(pydantic.ValidationError):
        load_settings(None)
    (record,) = [r for r in caplog.records if r.name == "ws_diag"]
    assert "WS_DIAG_PROBE_TIMEOUT (probe_timeout)" in record.getMessage()


@pytest.mark.parametrize(
    ("variable", "value", "example"),
    [
        ("WS_DIAG_REQUIRED_ENV", "A", '\'["A","B"]\''),
        ("WS_DIAG_REQUIRED_ENV", "A,B", '\'["A","B"]\''),
        ("WS_DIAG_REQUIRED_ENV", '"A"', '\'["A","B"]\''),
        ("WS_DIAG_REWRITE_CODES", "1011", "'[1011,1006]'"),
        ("WS_DIAG_REWRITE_CODES", "{not json", "'[1011,1006]'"),
        ("WS_DIAG_PROBE_PRIORITY", "database", '\'["database","redis"]\''),
    ],
)
def test_list_settings_say_a_json_list_is_expected(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, example: str
) -> None:
    """A list or set setting that is not a JSON list names the variable, says a JSON list is expected and shows one."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(pydantic.ValidationError) as info:
        DiagSettings()
    text = str(info.value)
    assert "a JSON list is expected" in text
    assert f"{variable}={example}" in text


def test_list_settings_still_read_json_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    """Valid JSON lists keep working from the environment, and lists keep working as arguments."""
    monkeypatch.setenv("WS_DIAG_REQUIRED_ENV", '["A", "B"]')
    monkeypatch.setenv("WS_DIAG_PROBE_PRIORITY", '["redis"]')
    settings = DiagSettings()
    assert (settings.required_env, settings.probe_priority) == (("A", "B"), ("redis",))
    assert DiagSettings(rewrite_codes=[1011, 4000]).rewrite_codes == frozenset({1011, 4000})


@pytest.mark.parametrize("token", ["", " ", "\t\n"])
def test_blank_health_token_is_refused(token: str) -> None:
    """An empty or blank health_token fails at construction, naming the field."""
    with pytest.raises(pydantic.ValidationError, match="health_token must not be empty or blank"):
        DiagSettings(health_path="/healthz", health_token=token)


def test_blank_health_token_from_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """WS_DIAG_HEALTH_TOKEN set to an empty value fails too (it is not the same as unset)."""
    monkeypatch.setenv("WS_DIAG_HEALTH_TOKEN", "")
    with pytest.raises(pydantic.ValidationError, match="health_token"):
        DiagSettings()


def test_padded_health_token_is_refused_without_repeating_it() -> None:
    """A token with surrounding whitespace could never be presented: refused, and the error does not show it."""
    with pytest.raises(pydantic.ValidationError, match="health_token must not start or end with whitespace") as info:
        DiagSettings(health_token=" s3cret-token\n")  # noqa: S106
    assert "s3cret-token" not in str(info.value)


PASSWORD = "s3cret-Pa55"

# Each URL-ish setting, with values its probe's parser refuses (a password in each, never to be repeated).
BAD_URLS = [
    ("redis_url", f":{PASSWORD}@localhost:6379"),  # no scheme: the mistake of issue 16
    ("redis_url", "localhost:6379"),
    ("redis_url", f"http://:{PASSWORD}@localhost:6379/0"),
    ("redis_url", f"redis://:{PASSWORD}@localhost:63x9/0"),
    ("redis_url", f"redis://:{PASSWORD}@localhost:6379/0?socket_timeout=soon"),
    ("redis_url", "unix://"),
    ("postgres_dsn", f"host=db user=app password={PASSWORD}"),  # libpq key=value: asyncpg takes URLs only
    ("postgres_dsn", f"mysql://app:{PASSWORD}@db/app"),
    ("postgres_dsn", f"postgresql://app:{PASSWORD}@db:54x2/app"),
    ("postgres_dsn", f"postgresql://app:{PASSWORD}@[::1/app"),
    ("sqlalchemy_url", f"app:{PASSWORD}@db/app"),
    ("sqlalchemy_url", f"postgresql+nodriver://app:{PASSWORD}@db/app"),
    ("sqlalchemy_url", f"postgresql+asyncpg://app:{PASSWORD}@db:54x2/app"),
    ("http_probes", f'["ftp://user:{PASSWORD}@files.example/health"]'),
    ("http_probes", f'["https://user:{PASSWORD}@:8443/health"]'),
    ("http_probes", f'{{"search": "https://user:{PASSWORD}@search.example:99999/health"}}'),
]


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget which unknown variables this process already warned about."""
    monkeypatch.setattr(settings_module, "_WARNED_VARIABLES", set())


@pytest.mark.parametrize(("field", "value"), BAD_URLS)
def test_unparsable_url_fails_at_construction_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, field: str, value: str
) -> None:
    """A DSN or URL its probe cannot parse fails when the settings are built: field and variable named, no password."""
    variable = f"WS_DIAG_{field.upper()}"
    monkeypatch.setenv(variable, value)
    caplog.set_level(logging.ERROR, logger="ws_diag")
    with pytest.raises(pydantic.ValidationError) as info:
        load_settings()
    lines = describe_settings_error(info.value)
    assert len(lines) == 1
    assert lines[0].startswith(f"{variable} ({field})")
    assert field in str(info.value)
    assert variable in str(info.value)
    logged = [r for r in caplog.records if getattr(r, "ws_diag_event", None) == "settings_invalid"]
    assert [r.levelno for r in logged] == [logging.ERROR]
    assert f"{variable} ({field})" in logged[0].getMessage()
    for text in (str(info.value), repr(info.value), lines[0], logged[0].getMessage()):
        assert PASSWORD not in text


@pytest.mark.parametrize(("field", "value"), BAD_URLS)
def test_unparsable_url_fails_at_construction_from_arguments(field: str, value: str) -> None:
    """The same values given in code fail too, naming the field and its variable, never the password."""
    given = json.loads(value) if field == "http_probes" else value
    with pytest.raises(pydantic.ValidationError) as info:
        DiagSettings(**{field: given})
    assert field in str(info.value)
    assert f"WS_DIAG_{field.upper()}" in str(info.value)
    assert PASSWORD not in str(info.value) + repr(info.value)
    assert describe_settings_error(info.value, {field: given})[0].startswith(f"settings[{field!r}]")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("redis_url", f"redis://:{PASSWORD}@localhost:6379/0"),
        ("redis_url", "rediss://cache.example:6380/1?socket_timeout=2"),
        ("redis_url", "unix:///run/redis/redis.sock?db=2"),
        ("redis_url", "redis://"),
        ("postgres_dsn", f"postgresql://app:{PASSWORD}@db:5432/app"),
        ("postgres_dsn", "postgres://app@db1:5432,db2:5433/app?sslmode=disable"),
        ("postgres_dsn", "postgresql://app@[::1]:5432/app"),
        ("postgres_dsn", "postgresql:///app?host=/run/postgresql"),
        ("sqlalchemy_url", f"postgresql+asyncpg://app:{PASSWORD}@db:5432/app"),
        ("sqlalchemy_url", "sqlite:///tmp/app.db"),
        ("sqlalchemy_url", "sqlite://"),
        ("http_probes", ["https://search.example:8443/health?token=x", "http://[::1]:8080/"]),
    ],
)
def test_urls_the_probes_parse_are_accepted(field: str, value: object) -> None:
    """Every form the probes' parsers take (schemes, several hosts, IPv6, sockets, sqlite) is accepted."""
    settings = DiagSettings(**{field: value})
    assert getattr(settings, field)


def test_redis_url_without_scheme_is_refused_before_any_probe_exists() -> None:
    """WS_DIAG_REDIS_URL=localhost:6379 used to build a probe that was 'degraded ... ValueError' forever."""
    with pytest.raises(pydantic.ValidationError) as info:
        DiagSettings(redis_url="localhost:6379")
    (error,) = info.value.errors(include_url=False, include_input=False)
    assert error["loc"] == ("redis_url",)
    assert "redis://" in error["msg"]


def test_misspelt_variable_is_warned_once_with_the_closest_name(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fresh_warnings: None
) -> None:
    """WS_DIAG_PROBE_TIMEOUTS: one WARNING naming it and WS_DIAG_PROBE_TIMEOUT, however often settings are built."""
    monkeypatch.setenv("WS_DIAG_PROBE_TIMEOUTS", "0.5")
    caplog.set_level(logging.WARNING, logger="ws_diag")
    for _ in range(3):
        assert DiagSettings().probe_timeout == 1.0  # ignored, as before: the warning says so
    warned = [r for r in caplog.records if getattr(r, "ws_diag_event", None) == "settings_unknown_variable"]
    assert len(warned) == 1
    record = warned[0]
    assert (record.name, record.levelno) == ("ws_diag", logging.WARNING)
    assert "WS_DIAG_PROBE_TIMEOUTS" in record.getMessage()
    assert "did you mean WS_DIAG_PROBE_TIMEOUT?" in record.getMessage()
    assert (record.variable, record.suggestion) == ("WS_DIAG_PROBE_TIMEOUTS", "WS_DIAG_PROBE_TIMEOUT")  # type: ignore[attr-defined]
    assert "0.5" not in record.getMessage()  # the value is never repeated


def test_unknown_variable_without_a_close_name_is_warned_too(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fresh_warnings: None
) -> None:
    """A WS_DIAG_* name like no setting is still warned about, with no suggestion."""
    monkeypatch.setenv("WS_DIAG_ZZQX", "1")
    caplog.set_level(logging.WARNING, logger="ws_diag")
    DiagSettings()
    warned = [r for r in caplog.records if getattr(r, "ws_diag_event", None) == "settings_unknown_variable"]
    assert [r.variable for r in warned] == ["WS_DIAG_ZZQX"]  # type: ignore[attr-defined]
    assert warned[0].suggestion is None  # type: ignore[attr-defined]
    assert "did you mean" not in warned[0].getMessage()


def test_misspelt_variable_is_warned_even_when_another_setting_is_invalid(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fresh_warnings: None
) -> None:
    """The warning comes with the settings error, where it explains most (the intended value was ignored)."""
    monkeypatch.setenv("WS_DIAG_CACHE_TTLS", "5")
    monkeypatch.setenv("WS_DIAG_CACHE_TTL", "-5")
    caplog.set_level(logging.WARNING, logger="ws_diag")
    with pytest.raises(pydantic.ValidationError):
        load_settings()
    events = [getattr(r, "ws_diag_event", None) for r in caplog.records]
    assert events.count("settings_unknown_variable") == 1
    assert events.count("settings_invalid") == 1


def test_no_warning_for_real_variables_or_names_read_elsewhere(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fresh_warnings: None
) -> None:
    """Real settings (any case) and WS_DIAG_* names that required_env lists (read by EnvProbe) are not warned about."""
    monkeypatch.setenv("ws_diag_cache_ttl", "3")  # the settings read variables case-insensitively
    monkeypatch.setenv("WS_DIAG_PROBE_TIMEOUT", "0.5")
    monkeypatch.setenv("WS_DIAG_APP_SECRET", "x")
    monkeypatch.setenv("WS_DIAG_REQUIRED_ENV", '["WS_DIAG_APP_SECRET"]')
    caplog.set_level(logging.WARNING, logger="ws_diag")
    settings = DiagSettings()
    assert (settings.cache_ttl, settings.probe_timeout) == (3.0, 0.5)
    assert not [r for r in caplog.records if getattr(r, "ws_diag_event", None) == "settings_unknown_variable"]


@pytest.mark.parametrize(
    ("field", "value"), [case for case in BAD_URLS if "soon" not in case[1] and "nodriver" not in case[1]]
)
def test_urls_are_checked_without_the_optional_libraries(
    monkeypatch: pytest.MonkeyPatch, field: str, value: str
) -> None:
    """Without redis-py or SQLAlchemy installed, the standard-library checks alone refuse the same shapes."""
    monkeypatch.setattr(dsn, "_installed", lambda package: False)
    given = json.loads(value) if field == "http_probes" else value
    with pytest.raises(pydantic.ValidationError) as info:
        DiagSettings(**{field: given})
    assert f"WS_DIAG_{field.upper()}" in str(info.value)
    assert PASSWORD not in str(info.value)
