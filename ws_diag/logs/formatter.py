"""JSON log lines (extra ``logs``: python-json-logger); see :mod:`ws_diag.logs`."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from .._optional import missing

try:
    from pythonjsonlogger.json import JsonFormatter as _JsonFormatter
except ModuleNotFoundError as exc:
    missing(exc, "pythonjsonlogger", extra="logs", feature="ws_diag.logs.JsonFormatter", package="python-json-logger")

__all__ = ["JsonFormatter"]

_FORMAT = "%(levelname)s %(name)s %(message)s"
_RENAMES = {"levelname": "level", "name": "logger", "exc_info": "traceback"}


class JsonFormatter(_JsonFormatter):
    """python-json-logger's formatter with ws_diag's field names: time, level, logger, message, extras, traceback."""

    def __init__(self, fmt: str = _FORMAT, *, rename_fields: dict[str, str] | None = None, **kwargs: Any) -> None:
        """Args as python-json-logger's ``JsonFormatter``; ``rename_fields`` is applied over ws_diag's renames."""
        super().__init__(fmt, rename_fields={**_RENAMES, **(rename_fields or {})}, **kwargs)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        """Put ``time`` first, then the library's fields (named fields, then every extra attribute)."""
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds")[:-6] + "Z"
        super().add_fields(log_data, record, message_dict)
