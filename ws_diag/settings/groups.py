"""The settings' groups: each declares and validates its fields; ``DiagSettings`` combines them.

A group is a pydantic model of its own so that the structure shows: what ws_diag does on
the wire, which probes it builds, the health endpoints, failure tolerance, what clients are
told, what is logged. Every field keeps its flat name (``settings.probe_timeout``) and its
``WS_DIAG_<FIELD>`` variable; the groups are never instantiated on their own.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import NoDecode

from ..components import DEFAULT_PRIORITY, Component
from ..wire.closecodes import CLOSE_INTERNAL_ERROR
from . import dsn

__all__ = [
    "ENV_PREFIX",
    "GROUPS",
    "ClientHintSettings",
    "CoreSettings",
    "HealthEndpointSettings",
    "HttpProbeSpec",
    "ObservabilitySettings",
    "PreacceptMode",
    "ProbeSettings",
    "ToleranceSettings",
    "env_name",
]

ENV_PREFIX = "WS_DIAG_"


def env_name(field: str) -> str:
    """A field's environment variable: ``WS_DIAG_<FIELD>``."""
    return f"{ENV_PREFIX}{field.upper()}"


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


class CoreSettings(BaseModel):
    """What ws_diag does on the wire: the frame, the close, the diagnosis deadline."""

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

    probe_priority: Annotated[tuple[str, ...], NoDecode] = Field(
        DEFAULT_PRIORITY, description="Probe names or component keys blamed first when several fail."
    )

    @field_validator("rewrite_codes")
    @classmethod
    def _codes_in_range(cls, codes: frozenset[int]) -> frozenset[int]:
        bad = sorted(code for code in codes if not 1000 <= code <= 4999)
        if bad:
            msg = f"close codes must be within 1000-4999, got {bad}"
            raise ValueError(msg)
        return codes


class ProbeSettings(BaseModel):
    """Which probes the settings build, and which of them are required."""

    postgres_dsn: SecretStr | None = Field(
        None, description="When set, a PostgresProbe named 'database' is built from it."
    )

    redis_url: SecretStr | None = Field(
        None,
        description="When set, a RedisProbe named 'redis' is built from it: optional (a failure is 'degraded', "
        "readiness stays 200) unless listed in required_probes.",
    )

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

    required_probes: Annotated[tuple[str, ...], NoDecode] | None = Field(
        None,
        description="Names of the probes whose failure makes the service unready; every other probe only "
        "degrades it. Unset: each probe's own 'required'.",
    )

    @field_validator("postgres_dsn", "redis_url", "sqlalchemy_url")
    @classmethod
    def _probe_can_parse(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # Refused now rather than by the probe on its first run (a 'degraded' that is really a typo).
        if value is not None:
            name = info.field_name or ""
            _URL_CHECKS[name](value.get_secret_value(), env_name(name))
        return value

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
    def _one_database_probe(self) -> Self:
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

    @field_validator("required_probes")
    @classmethod
    def _probe_names(cls, names: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if names is not None:
            bad = [name for name in names if not name.strip()]
            if bad:
                msg = "required_probes must hold probe names, got an empty one"
                raise ValueError(msg)
        return names


class HealthEndpointSettings(BaseModel):
    """The HTTP paths the middleware answers itself, and their token."""

    health_path: str | None = Field(None, description="Answer GET on this HTTP path with the health report.")

    liveness_path: str | None = Field(
        None,
        description="Answer GET on this HTTP path with liveness (200 while the process answers; never runs probes), "
        "e.g. /livez.",
    )

    readiness_path: str | None = Field(
        None, description="Answer GET on this HTTP path with readiness (200 when no required probe failed, else 503)."
    )

    health_token: SecretStr | None = Field(
        None,
        description="Require 'Authorization: Bearer <token>' on the health endpoint; "
        "never blank, no surrounding whitespace.",
    )

    @field_validator("health_path", "liveness_path", "readiness_path")
    @classmethod
    def _path_is_absolute(cls, path: str | None, info: ValidationInfo) -> str | None:
        if path is not None and not path.startswith("/"):
            msg = f"{info.field_name} must start with '/', got {path[:_SHOWN_CHARS]!r}"
            raise ValueError(msg)
        return path

    @model_validator(mode="after")
    def _distinct_paths(self) -> Self:
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


class ToleranceSettings(BaseModel):
    """When a failing probe counts as failed, and how long results are reused."""

    cache_ttl: float = Field(
        2.0, ge=0, le=3600, allow_inf_nan=False, description="How long probe results are reused, seconds."
    )

    failure_cache_ttl: float | None = Field(
        None,
        ge=0,
        le=3600,
        allow_inf_nan=False,
        description="How long a run with a failing probe is reused, seconds; unset: cache_ttl.",
    )

    refresh_interval: float | None = Field(
        None, gt=0, le=3600, allow_inf_nan=False, description="Refresh probe results in the background, seconds."
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


class ClientHintSettings(BaseModel):
    """What the frame tells clients beyond the component: when to retry, which request."""

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

    request_id_in_frame: bool = Field(
        False, description="Add the validated request id to the frame as request_id (null when there is none)."
    )


class ObservabilitySettings(BaseModel):
    """What ws_diag reads and logs about a connection."""

    request_id_header: str | None = Field(
        "X-Request-ID",
        max_length=64,
        description="Request header whose value is the connection's request id (validated: at most "
        "128 characters of A-Z a-z 0-9 . _ : / + = -); empty or None to read none.",
    )

    log_client_address: bool = Field(
        True, description="Put the client's address (host, port) in the 'websocket connect' DEBUG line."
    )

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


GROUPS: dict[str, type[BaseModel]] = {
    "Core": CoreSettings,
    "Probes": ProbeSettings,
    "Health endpoints": HealthEndpointSettings,
    "Failure tolerance": ToleranceSettings,
    "Clients' hints": ClientHintSettings,
    "Observability": ObservabilitySettings,
}
"""The groups by title, in the order the reference lists them."""
