"""JSON log lines that keep every field of a record: ws_diag's, OpenTelemetry's and your own.

Needs the ``logs`` extra (python-json-logger). Every ``ws_diag`` record carries
``ws_diag_event`` (connect, accept, intercepted, diagnosis, close_sent, fallback,
client_gone, send_timeout, refused, repaired, hook_failed, health_check, app_exception) and, where
they apply, ``path``, ``component``, ``code``, ``incident_id``, ``took_ms``,
``diagnosis_source``, ``probe`` and ``exception`` (a type name, never its text)::

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.getLogger("ws_diag").addHandler(handler)

Each line is one JSON object: ``time`` (UTC, ISO 8601 with ``Z``), ``level``,
``logger``, ``message``, then every extra attribute of the record (ws_diag's fields,
``otelTraceID``/``otelSpanID`` from OpenTelemetry's logging instrumentation, anything
passed as ``extra=``), and ``traceback`` when the record has one. Keyword arguments
are python-json-logger's (``static_fields``, ``json_default``, ...); ``rename_fields``
is merged over ours.

With structlog, ``structlog.stdlib.ProcessorFormatter`` with
``structlog.stdlib.ExtraAdder()`` among its ``foreign_pre_chain`` picks up the
same fields.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

try:
    from pythonjsonlogger.json import JsonFormatter as _JsonFormatter
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    msg = "ws_diag.logs needs python-json-logger: pip install 'ws_diag[logs]'"
    raise ImportError(msg) from exc

__all__ = ["STRUCTURED_FIELDS", "JsonFormatter"]

STRUCTURED_FIELDS = (
    "ws_diag_event",
    "path",
    "component",
    "code",
    "incident_id",
    "took_ms",
    "diagnosis_source",
    "probe",
    "exception",
)
"""The record attributes ws_diag sets (each only where it applies)."""

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
