"""DiagSettings: the fields, their ``WS_DIAG_*`` variables and their validation."""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from ..components import DEFAULT_PRIORITY, Component
from ..wire.closecodes import CLOSE_INTERNAL_ERROR
from . import dsn

__all__ = ["ENV_PREFIX", "DiagSettings", "HttpProbeSpec", "PreacceptMode", "env_name"]

logger = logging.getLogger("ws_diag")

ENV_PREFIX = "WS_DIAG_"

PreacceptMode = Literal["accept_close", "http_denial", "passthrough"]

_Seconds = Annotated[float, Field(gt=0, le=300, allow_inf_nan=False)]

# List and set fields are parsed by their own validator (NoDecode), so that a value
# that is not a JSON list gets an answer that says so, with an example.
_LIST_EXAMPLES = {
    "rewrite_codes": "[1011,1006]",
    "required_env": '["A","B"]',
    "probe_priority": '["database","redis"]',
    "required_probes": '["database","redis"]',
}
# How much of a rejected value an error message repeats.
_SHOWN_CHARS = 40


# RFC 9110 section 5.6.2: tchar.
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")

_COMPONENT_KEYS = {component.key: component for component in Component}

_URL_CHECKS = {
    "postgres_dsn": dsn.check_postgres_dsn,
    "redis_url": dsn.check_redis_url,
    "sqlalchemy_url": dsn.check_sqlalchemy_url,
}


class HttpProbeSpec(BaseModel):
    """One HTTP dependency probe in ``http_probes`` (see :class:`ws_diag.health.probes.HttpProbe`).

    Invalid values raise ``pydantic.ValidationError`` naming the field.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    url: SecretStr = Field(description="http(s) URL; its credentials and query are never reported.")
    name: str | None = Field(None, min_length=1, max_length=64, description="Report key; the URL's host by default.")
    method: Literal["GET", "HEAD"] = "GET"
    required: bool = Field(False, description="Whether a failure makes the service unhealthy.")
    component: str = Field("integration", description="Key of the built-in component a failure points at.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: SecretStr) -> SecretStr:
        dsn.check_http_url(url.get_secret_value(), env_name("http_probes"))
        return url

    @field_validator("component")
    @classmethod
    def _known_component(cls, key: str) -> str:
        if key not in _COMPONENT_KEYS:
            msg = f"component must be one of {sorted(_COMPONENT_KEYS)}, got {key!r}"
            raise ValueError(msg)
        return key

    @property
    def component_value(self) -> Component:
        """The built-in component named by ``component``."""
        return _COMPONENT_KEYS[self.component]


class DiagSettings(BaseSettings):
    """ws_diag's settings; every field can be set as ``WS_DIAG_<FIELD>``.

    Invalid values raise ``pydantic.ValidationError`` (a ``ValueError``) at
    construction, naming the field and never repeating the value; so does a DSN
    or URL its probe could not parse (:mod:`ws_diag.settings.dsn`). List fields are read
    from the environment as JSON lists (``WS_DIAG_REQUIRED_ENV='["A","B"]'``).
    A ``WS_DIAG_*`` variable that names no field is ignored and logged once per
    process at WARNING on logger ``ws_diag`` with the closest field's variable
    (``ws_diag_event="settings_unknown_variable"``), unless ``required_env`` lists it.
    The object is immutable.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        # Errors never repeat a rejected value: it may be a token or a DSN.
        hide_input_in_errors=True,
    )

    code_scheme: Literal["private", "legacy"] = Field(
        "private", description="Codes in the JSON frame: 'private' (4000-4999) or 'legacy' (1002-1010)."
    )
    expose_details: bool = Field(False, description="Send details and root_cause (redacted exception text) to clients.")
    preaccept: PreacceptMode = Field(
        "accept_close",
        description="Failures before accept: accept, send the frame and close; answer with an HTTP "
        "denial where the server offers it; or leave them to the server (403/500).",
    )
    probe_timeout: _Seconds = Field(
        1.0,
        description="Deadline of a probe run, seconds, from when the run begins; failures that join a shared run "
        "get its answer.",
    )
    cache_ttl: float = Field(
        2.0, ge=0, le=3600, allow_inf_nan=False, description="How long probe results are reused, seconds."
    )
    send_timeout: _Seconds = Field(
        1.0, description="Deadline for delivering the frame and the close to a slow client, seconds."
    )
    rewrite_codes: Annotated[frozenset[int], NoDecode] = Field(
        frozenset({CLOSE_INTERNAL_ERROR}),
        description="Close codes sent by the app that are diagnosed and rewritten.",
    )
    track_disconnect: bool = Field(
        False,
        description="Wrap receive to see websocket.disconnect (costs ~110 ns per received message); "
        "without it a client's departure is known from exceptions and failed sends.",
    )
    reraise: bool = Field(
        True,
        description="Raise the app's exception into the server after ws_diag delivered its frame and close. "
        "False: log it at ERROR with its traceback instead (ws_diag_event='app_exception'), so that a test "
        "client (Starlette's TestClient) keeps the frame and close; what was not delivered is still raised.",
    )

    postgres_dsn: SecretStr | None = Field(
        None, description="When set, a PostgresProbe named 'database' is built from it."
    )
    redis_url: SecretStr | None = Field(None, description="When set, a RedisProbe named 'redis' is built from it.")
    sqlalchemy_url: SecretStr | None = Field(
        None,
        description="When set, a SQLAlchemyProbe named 'database' is built from this SQLAlchemy URL "
        "(e.g. postgresql+asyncpg://...); not together with postgres_dsn.",
    )
    http_probes: tuple[HttpProbeSpec, ...] = Field(
        (),
        description="HTTP dependencies checked by HttpProbes: a JSON list of URLs or of objects "
        "{url, name, method, required, component}, or a JSON object {name: url}.",
    )
    required_env: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Environment variables that must be set; an EnvProbe named 'environment' checks them."
    )
    refresh_interval: float | None = Field(
        None, gt=0, le=3600, allow_inf_nan=False, description="Refresh probe results in the background, seconds."
    )
    probe_priority: Annotated[tuple[str, ...], NoDecode] = Field(
        DEFAULT_PRIORITY, description="Probe names or component keys blamed first when several fail."
    )
    retry_after: float = Field(
        1.0,
        ge=0,
        le=3600,
        allow_inf_nan=False,
        description="Seconds a retryable failure's frame suggests waiting before reconnecting "
        "(retry_after_ms), when neither the error nor a probe says more.",
    )
    retry_after_by_component: dict[str, Annotated[float, Field(ge=0, le=3600, allow_inf_nan=False)]] = Field(
        default_factory=dict,
        description="Per-component retry_after, seconds, by component key; the variable is JSON: '{\"database\": 5}'.",
    )
    request_id_header: str | None = Field(
        "X-Request-ID",
        max_length=64,
        description="Request header whose value is the connection's request id (validated: at most "
        "128 characters of A-Z a-z 0-9 . _ : / + = -); empty or None to read none.",
    )
    request_id_in_frame: bool = Field(
        False, description="Add the validated request id to the frame as request_id (null when there is none)."
    )
    log_client_address: bool = Field(
        True, description="Put the client's address (host, port) in the 'websocket connect' DEBUG line."
    )
    health_path: str | None = Field(None, description="Answer GET on this HTTP path with the health report.")
    liveness_path: str | None = Field(
        None,
        description="Answer GET on this HTTP path with liveness (200 while the process answers; never runs probes), "
        "e.g. /livez.",
    )
    readiness_path: str | None = Field(
        None, description="Answer GET on this HTTP path with readiness (200 when no required probe failed, else 503)."
    )
    required_probes: Annotated[tuple[str, ...], NoDecode] | None = Field(
        None,
        description="Names of the probes whose failure makes the service unready; every other probe only "
        "degrades it. Unset: each probe's own 'required'.",
    )
    failure_threshold: int = Field(
        1,
        ge=1,
        le=1000,
        description="A failing probe counts as failed after this many consecutive failed runs (1: at once).",
    )
    failure_duration: float | None = Field(
        None,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        description="...or once it has been failing this long, seconds, whichever comes first.",
    )
    failure_cache_ttl: float | None = Field(
        None,
        ge=0,
        le=3600,
        allow_inf_nan=False,
        description="How long a run with a failing probe is reused, seconds; unset: cache_ttl.",
    )
    health_token: SecretStr | None = Field(
        None,
        description="Require 'Authorization: Bearer <token>' on the health endpoint; "
        "never blank, no surrounding whitespace.",
    )

    def __init__(self, **values: Any) -> None:
        # pydantic-settings ignores a WS_DIAG_* variable that names no field: say so, once per name.
        try:
            super().__init__(**values)
        except (pydantic.ValidationError, SettingsError):
            _warn_unknown_variables(_raw_required_env(values))
            raise
        _warn_unknown_variables(self.required_env)

    @field_validator("rewrite_codes", "required_env", "probe_priority", "required_probes", mode="before")
    @classmethod
    def _json_list(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value
        name = info.field_name or ""
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if not isinstance(parsed, list):
            shown = value[:_SHOWN_CHARS] + ("..." if len(value) > _SHOWN_CHARS else "")
            example = _LIST_EXAMPLES.get(name, "[...]")
            msg = f"a JSON list is expected, e.g. {env_name(name)}='{example}', got {shown!r}"
            raise ValueError(msg)
        return parsed

    @field_validator("postgres_dsn", "redis_url", "sqlalchemy_url")
    @classmethod
    def _probe_can_parse(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # Refused now rather than by the probe on its first run (a 'degraded' that is really a typo).
        if value is not None:
            name = info.field_name or ""
            _URL_CHECKS[name](value.get_secret_value(), env_name(name))
        return value

    @field_validator("health_token")
    @classmethod
    def _token_is_usable(cls, token: SecretStr | None) -> SecretStr | None:
        # An empty token would let an empty bearer read the report; one with
        # surrounding whitespace could never be presented (headers are stripped).
        if token is not None:
            secret = token.get_secret_value()
            if not secret.strip():
                msg = "health_token must not be empty or blank; leave it unset to serve the report without a token"
                raise ValueError(msg)
            if secret != secret.strip():
                msg = "health_token must not start or end with whitespace (a client could never present it)"
                raise ValueError(msg)
        return token

    @field_validator("request_id_header")
    @classmethod
    def _header_is_a_token(cls, name: str | None) -> str | None:
        if not name:  # WS_DIAG_REQUEST_ID_HEADER= (empty) reads no header
            return None
        # RFC 9110 section 5.1: a field name is a token.
        if not _TOKEN.fullmatch(name):
            msg = "request_id_header must be an HTTP header name (letters, digits and !#$%&'*+.^_`|~-)"
            raise ValueError(msg)
        return name

    @field_validator("health_path", "liveness_path", "readiness_path")
    @classmethod
    def _path_is_absolute(cls, path: str | None, info: ValidationInfo) -> str | None:
        if path is not None and not path.startswith("/"):
            msg = f"{info.field_name} must start with '/', got {path[:_SHOWN_CHARS]!r}"
            raise ValueError(msg)
        return path

    @field_validator("required_probes")
    @classmethod
    def _probe_names(cls, names: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if names is not None:
            bad = [name for name in names if not name.strip()]
            if bad:
                msg = "required_probes must hold probe names, got an empty one"
                raise ValueError(msg)
        return names

    @model_validator(mode="after")
    def _distinct_paths(self) -> DiagSettings:
        paths: dict[str, str] = {}
        for field in ("health_path", "liveness_path", "readiness_path"):
            path = getattr(self, field)
            if path is None:
                continue
            if path in paths:
                msg = f"{field} and {paths[path]} are the same path {path[:_SHOWN_CHARS]!r}; each needs its own"
                raise ValueError(msg)
            paths[path] = field
        return self

    @field_validator("http_probes", mode="before")
    @classmethod
    def _probe_specs(cls, value: Any) -> Any:
        # {"name": "url" or {...}} and ["url", ...] are shorthands for the list of objects.
        if isinstance(value, dict):
            value = [
                {**spec, "name": name} if isinstance(spec, dict) else {"url": spec, "name": name}
                for name, spec in value.items()
            ]
        if isinstance(value, list | tuple):
            value = [{"url": spec} if isinstance(spec, str) else spec for spec in value]
        return value

    @model_validator(mode="after")
    def _one_database_probe(self) -> DiagSettings:
        if self.postgres_dsn is not None and self.sqlalchemy_url is not None:
            msg = "set one of postgres_dsn and sqlalchemy_url: both would build a probe named 'database'"
            raise ValueError(msg)
        return self

    @field_validator("required_env")
    @classmethod
    def _names_are_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        bad = [name for name in names if not name or "=" in name or "\0" in name]
        if bad:
            msg = f"not environment variable names: {bad!r}"
            raise ValueError(msg)
        return names

    @field_validator("rewrite_codes")
    @classmethod
    def _codes_in_range(cls, codes: frozenset[int]) -> frozenset[int]:
        bad = sorted(code for code in codes if not 1000 <= code <= 4999)
        if bad:
            msg = f"close codes must be within 1000-4999, got {bad}"
            raise ValueError(msg)
        return codes


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


# Unknown WS_DIAG_* names already warned about by this process.
_WARNED_VARIABLES: set[str] = set()


def _warn_unknown_variables(read_elsewhere: tuple[str, ...]) -> None:
    """Warn once per name about a WS_DIAG_* variable that is no setting (a misspelling is silently ignored).

    Names that ``required_env`` lists are read by the EnvProbe, not by the settings: no warning.
    """
    exempt = {name.upper() for name in read_elsewhere}
    fields = [field.upper() for field in DiagSettings.model_fields]
    for name in os.environ:
        upper = name.upper()  # the settings read WS_DIAG_* case-insensitively
        if not upper.startswith(ENV_PREFIX) or upper in exempt or name in _WARNED_VARIABLES:
            continue
        suffix = upper.removeprefix(ENV_PREFIX)
        if suffix in fields:
            continue
        _WARNED_VARIABLES.add(name)
        close = difflib.get_close_matches(suffix, fields, n=1)
        suggestion = f"{ENV_PREFIX}{close[0]}" if close else None
        hint = f"did you mean {suggestion}?" if suggestion else "no setting has a similar name"
        logger.warning(
            "environment variable %s is no ws_diag setting and is ignored; %s",
            name,
            hint,
            extra={"ws_diag_event": "settings_unknown_variable", "variable": name, "suggestion": suggestion},
        )


def _raw_required_env(values: Mapping[str, Any]) -> tuple[str, ...]:
    # The settings failed: required_env as given, or as its variable says, as far as it can be read.
    given = values.get("required_env")
    if given is None:
        raw = next((v for k, v in os.environ.items() if k.upper() == env_name("required_env")), "[]")
        try:
            given = json.loads(raw)
        except ValueError:
            return ()
    if isinstance(given, list | tuple):
        return tuple(name for name in given if isinstance(name, str))
    return ()
