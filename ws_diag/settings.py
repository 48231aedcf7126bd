"""Settings: one immutable object, read from arguments or ``WS_DIAG_*`` variables."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .codes import CLOSE_INTERNAL_ERROR, DEFAULT_PRIORITY

__all__ = ["DiagSettings", "PreacceptMode"]

PreacceptMode = Literal["accept_close", "http_denial", "passthrough"]

_Seconds = Annotated[float, Field(gt=0, le=300, allow_inf_nan=False)]


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
    required_env: tuple[str, ...] = Field(
        (), description="Environment variables that must be set; an EnvProbe named 'environment' checks them."
    )
    refresh_interval: float | None = Field(
        None, gt=0, le=3600, allow_inf_nan=False, description="Refresh probe results in the background, seconds."
    )
    probe_priority: tuple[str, ...] = Field(
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
