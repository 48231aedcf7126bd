"""Settings: one immutable object, read from arguments or ``WS_DIAG_*`` variables."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .codes import CLOSE_INTERNAL_ERROR, DEFAULT_PRIORITY, Component

__all__ = ["DiagSettings", "HttpProbeSpec", "PreacceptMode"]

PreacceptMode = Literal["accept_close", "http_denial", "passthrough"]

_Seconds = Annotated[float, Field(gt=0, le=300, allow_inf_nan=False)]


_COMPONENT_KEYS = {component.key: component for component in Component}


class HttpProbeSpec(BaseModel):
    """One HTTP dependency probe in ``http_probes`` (see :class:`ws_diag.probes.HttpProbe`).

    Invalid values raise ``pydantic.ValidationError`` naming the field.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: SecretStr = Field(description="http(s) URL; its credentials and query are never reported.")
    name: str | None = Field(None, min_length=1, max_length=64, description="Report key; the URL's host by default.")
    method: Literal["GET", "HEAD"] = "GET"
    required: bool = Field(False, description="Whether a failure makes the service unhealthy.")
    component: str = Field("integration", description="Key of the built-in component a failure points at.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: SecretStr) -> SecretStr:
        scheme, sep, rest = url.get_secret_value().partition("://")
        if not sep or scheme.lower() not in {"http", "https"} or not rest.split("/", 1)[0].rpartition("@")[2]:
            msg = "url must be an http:// or https:// URL with a host"
            raise ValueError(msg)
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
    construction, naming the field. The object is immutable.
    """

    model_config = SettingsConfigDict(env_prefix="WS_DIAG_", frozen=True, extra="forbid")

    code_scheme: Literal["private", "legacy"] = Field(
        "private", description="Codes in the JSON frame: 'private' (4000-4999) or 'legacy' (1002-1010)."
    )
    expose_details: bool = Field(False, description="Send details and root_cause (redacted exception text) to clients.")
    preaccept: PreacceptMode = Field(
        "accept_close",
        description="Failures before accept: accept, send the frame and close; answer with an HTTP "
        "denial where the server offers it; or leave them to the server (403/500).",
    )
    probe_timeout: _Seconds = Field(1.0, description="Hard deadline of a whole diagnosis, seconds.")
    cache_ttl: float = Field(
        2.0, ge=0, le=3600, allow_inf_nan=False, description="How long probe results are reused, seconds."
    )
    send_timeout: _Seconds = Field(
        1.0, description="Deadline for delivering the frame and the close to a slow client, seconds."
    )
    rewrite_codes: frozenset[int] = Field(
        frozenset({CLOSE_INTERNAL_ERROR}),
        description="Close codes sent by the app that are diagnosed and rewritten.",
    )
    track_disconnect: bool = Field(
        False,
        description="Wrap receive to see websocket.disconnect (costs ~110 ns per received message); "
        "without it a client's departure is known from exceptions and failed sends.",
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
    required_env: tuple[str, ...] = Field(
        (), description="Environment variables that must be set; an EnvProbe named 'environment' checks them."
    )
    refresh_interval: float | None = Field(
        None, gt=0, le=3600, allow_inf_nan=False, description="Refresh probe results in the background, seconds."
    )
    probe_priority: tuple[str, ...] = Field(
        DEFAULT_PRIORITY, description="Probe names or component keys blamed first when several fail."
    )
    health_path: str | None = Field(None, description="Answer GET on this HTTP path with the health report.")
    health_token: SecretStr | None = Field(
        None, description="Require 'Authorization: Bearer <token>' on the health endpoint."
    )

    @field_validator("health_path")
    @classmethod
    def _path_is_absolute(cls, path: str | None) -> str | None:
        if path is not None and not path.startswith("/"):
            msg = f"health_path must start with '/', got {path!r}"
            raise ValueError(msg)
        return path

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
