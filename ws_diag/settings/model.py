"""DiagSettings: the groups of :mod:`.groups` combined, read from arguments or ``WS_DIAG_*`` variables."""

from __future__ import annotations

import difflib
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import pydantic
from pydantic import ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from ..logs import LogEvent
from .groups import (
    _LIST_EXAMPLES,
    _SHOWN_CHARS,
    ENV_PREFIX,
    GROUPS,
    ClientHintSettings,
    CoreSettings,
    HealthEndpointSettings,
    HttpProbeSpec,
    ObservabilitySettings,
    PreacceptMode,
    ProbeSettings,
    ToleranceSettings,
    env_name,
)

__all__ = ["ENV_PREFIX", "DiagSettings", "HttpProbeSpec", "PreacceptMode", "env_name"]

logger = logging.getLogger("ws_diag")


# pydantic lists the fields of the last base first: Core's fields come first in model_fields and repr.
class DiagSettings(
    ObservabilitySettings,
    ClientHintSettings,
    ToleranceSettings,
    HealthEndpointSettings,
    ProbeSettings,
    CoreSettings,
    BaseSettings,
):
    """ws_diag's settings; every field can be set as ``WS_DIAG_<FIELD>``.

    The fields are declared in groups (:data:`~ws_diag.settings.groups.GROUPS`: core wire
    behaviour, probes, health endpoints, failure tolerance, clients' hints, observability)
    and read flat: ``settings.probe_timeout``, ``WS_DIAG_PROBE_TIMEOUT``. :meth:`groups`
    says which field is in which group. References to components and probes
    (``retry_after_by_component``, ``probe_priority``, ``required_probes``) are checked once
    everything is known, by :func:`~ws_diag.settings.references.check_references`.

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

    @classmethod
    def groups(cls) -> dict[str, tuple[str, ...]]:
        """The field names of each group, by the group's title, in the reference's order."""
        return {title: tuple(group.model_fields) for title, group in GROUPS.items()}

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
            extra={"ws_diag_event": LogEvent.SETTINGS_UNKNOWN_VARIABLE, "variable": name, "suggestion": suggestion},
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
