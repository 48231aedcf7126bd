"""ws_diag's log records: their vocabulary (:class:`LogEvent`) and JSON lines that keep every field.

Every ``ws_diag`` record carries ``ws_diag_event`` (a :class:`LogEvent`: the one list
of them, with each one's meaning) and, where they apply, ``path``, ``component``,
``code``, ``incident_id``, ``took_ms``, ``diagnosis_source``, ``probe`` and ``exception`` (a type name, never its text).

:class:`JsonFormatter` needs the ``logs`` extra (python-json-logger)::

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

from typing import TYPE_CHECKING, Any

from .events import LogEvent

if TYPE_CHECKING:
    from .formatter import JsonFormatter

__all__ = ["STRUCTURED_FIELDS", "JsonFormatter", "LogEvent"]

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
    "request_id",
    "status",
    "previous_status",
    "variable",
    "suggestion",
)
"""The record attributes ws_diag sets (each only where it applies)."""


def __getattr__(name: str) -> Any:
    # JsonFormatter needs python-json-logger: imported when asked for, so that LogEvent needs nothing.
    if name == "JsonFormatter":
        from .formatter import JsonFormatter

        return JsonFormatter
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
