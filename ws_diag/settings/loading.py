"""Reading the settings a middleware was given, and saying what is wrong with them."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pydantic
from pydantic_settings import SettingsError

from ..logs import LogEvent
from .model import DiagSettings, env_name

__all__ = ["describe_settings_error", "load_settings"]

logger = logging.getLogger("ws_diag")


def describe_settings_error(
    exc: pydantic.ValidationError | SettingsError, given: Mapping[str, Any] | None = None
) -> list[str]:
    """One line per invalid setting, naming where it came from and what is wrong.

    A field passed in ``given`` is named as ``settings['field']``, any other as
    its ``WS_DIAG_<FIELD>`` variable and its field name. Values are never
    repeated (a DSN or token could be among them), except where a validator
    quotes a non-secret one (a list that is not JSON).
    """
    if isinstance(exc, SettingsError):  # a source that could not be read at all
        return [str(exc)]
    given = given or {}
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = error["loc"]
        field = str(loc[0]) if loc else ""
        where = ".".join(str(part) for part in loc[1:])
        if field in given or field not in DiagSettings.model_fields:
            source = f"settings[{field!r}]" if field in given else repr(field)
        else:
            source = f"{env_name(field)} ({field})"
        ctx = error.get("ctx", {})
        text = str(ctx["error"]) if error["type"] == "value_error" and "error" in ctx else error["msg"]
        lines.append(f"{source}{'[' + where + ']' if where else ''}: {text}")
    return lines


def load_settings(value: DiagSettings | Mapping[str, Any] | None = None) -> DiagSettings:
    """The settings ``DiagnosticsMiddleware(settings=...)`` was given, as a :class:`DiagSettings`.

    Args:
        value: a :class:`DiagSettings` (used as is), a mapping of its fields
            (``{"probe_timeout": 0.5}``; fields it leaves out are read from
            ``WS_DIAG_*`` variables), or ``None`` (everything from the environment).

    Raises:
        TypeError: ``value`` is none of these, or a mapping key is not a string.
        pydantic.ValidationError: a value is invalid (a ``ValueError``; the error names the field).
        pydantic_settings.SettingsError: a ``WS_DIAG_*`` source could not be read.

    Every failure is also logged at ERROR on the ``ws_diag`` logger, naming the
    field and its ``WS_DIAG_*`` variable, before it is raised: a middleware
    built lazily (Starlette's ``add_middleware`` builds it on the first lifespan
    event, and uvicorn's ``--lifespan auto`` swallows errors raised there)
    must still fail loudly.
    """
    if isinstance(value, DiagSettings):
        return value
    try:
        if value is None:
            return DiagSettings()
        if not isinstance(value, Mapping):
            msg = f"settings must be a DiagSettings, a mapping of its fields or None, got {type(value).__name__}"
            raise TypeError(msg)
        bad_keys = [key for key in value if not isinstance(key, str)]
        if bad_keys:
            msg = f"settings mapping keys must be field names (str), got {bad_keys[0]!r}"
            raise TypeError(msg)
        return DiagSettings(**value)
    except (pydantic.ValidationError, SettingsError) as exc:
        given = value if isinstance(value, Mapping) else {}
        logger.error(
            "invalid ws_diag settings, DiagnosticsMiddleware not built: %s",
            "; ".join(describe_settings_error(exc, given)),
            extra={"ws_diag_event": LogEvent.SETTINGS_INVALID},
        )
        raise
    except TypeError as exc:
        logger.error(
            "invalid ws_diag settings, DiagnosticsMiddleware not built: %s",
            exc,
            extra={"ws_diag_event": LogEvent.SETTINGS_INVALID},
        )
        raise
