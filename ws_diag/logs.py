"""A stdlib JSON log formatter that keeps ws_diag's structured fields.

Every ``ws_diag`` record carries ``ws_diag_event`` (connect, accept, intercepted,
diagnosis, close_sent, fallback, client_gone, send_timeout, refused, repaired,
hook_failed, health_check) and, where they apply, ``path``, ``component``,
``code``, ``incident_id``, ``took_ms``, ``diagnosis_source``, ``probe`` and
``exception`` (a type name, never its text)::

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.getLogger("ws_diag").addHandler(handler)

With structlog, ``structlog.stdlib.ProcessorFormatter`` with
``structlog.stdlib.ExtraAdder()`` among its ``foreign_pre_chain`` picks up the
same fields.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

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


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, ws_diag's fields, and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        """Format ``record`` as a JSON line."""
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in STRUCTURED_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)
