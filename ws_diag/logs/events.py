"""The vocabulary of ws_diag's log records: every ``ws_diag_event`` value, with its logger, level and meaning."""

from __future__ import annotations

import enum

__all__ = ["LogEvent"]


class LogEvent(enum.StrEnum):
    """The ``ws_diag_event`` attribute of a ws_diag log record (a ``str``: compare it with ``"diagnosis"`` too).

    Each member carries ``level`` (the record's usual level), ``logger`` and ``meaning``
    (one line: when it is logged).
    """

    level: str
    logger: str
    meaning: str

    def __new__(cls, value: str, level: str, logger: str, meaning: str) -> LogEvent:
        member = str.__new__(cls, value)
        member._value_ = value
        member.level = level
        member.logger = logger
        member.meaning = meaning
        return member

    CONNECT = (
        "connect",
        "DEBUG",
        "ws_diag",
        "a websocket scope arrived (`client=-` with `log_client_address=False`)",
    )
    ACCEPT = "accept", "DEBUG", "ws_diag", "the app accepted"
    INTERCEPTED = "intercepted", "DEBUG", "ws_diag", "an exception or a failure close of the app reached ws_diag"
    CLIENT_GONE = "client_gone", "DEBUG", "ws_diag", "the connection's client left; nothing more is sent to it"
    DIAGNOSIS = (
        "diagnosis",
        "WARNING",
        "ws_diag",
        "the frame and close went out: component, code (the one actually sent), source, took_ms, incident_id",
    )
    CLOSE_SENT = "close_sent", "DEBUG", "ws_diag", "ws_diag's close went out, after the frame"
    DEADLINE = (
        "deadline",
        "WARNING",
        "ws_diag",
        "the diagnosis passed its backstop (a broken diagnoser): the client is told Generic",
    )
    APP_EXCEPTION = (
        "app_exception",
        "ERROR",
        "ws_diag",
        "with `reraise=False`: the app's exception, delivered as a diagnosis, logged with its traceback",
    )
    FALLBACK = "fallback", "ERROR", "ws_diag", "ws_diag's own error while diagnosing: a plain close goes out instead"
    RESTART = "restart", "INFO", "ws_diag", "a graceful shutdown's frame and 1012 went out"
    REPAIRED = (
        "repaired",
        "WARNING",
        "ws_diag",
        "the app's close could not be delivered as given (code or reason); ws_diag sent a valid one",
    )
    STRICT_FALLBACK = (
        "strict_fallback",
        "INFO",
        "ws_diag",
        "a strict server refused a registered close code; ws_diag closed with the private-range code instead",
    )
    SEND_TIMEOUT = "send_timeout", "WARNING", "ws_diag", "the client was too slow: frame or close not delivered in time"
    HOOK_FAILED = "hook_failed", "ERROR", "ws_diag, ws_diag.health", "a listener or hook raised; logged and ignored"
    HEALTH_CHECK = "health_check", "INFO", "ws_diag.health", "a health run finished (its summary)"
    REFRESH_FAILED = "refresh_failed", "ERROR", "ws_diag.health", "a background health run failed unexpectedly"
    PROBE_UNSUPPORTED = (
        "probe_unsupported",
        "ERROR",
        "ws_diag.health",
        "once per probe: its driver needs asyncio and the app runs under trio: not run, never blamed (`probe`)",
    )
    UNSUPPORTED_LIBRARY = (
        "unsupported_library",
        "ERROR",
        "ws_diag",
        "once: the event loop is neither asyncio nor trio; every connection passes through unwatched",
    )
    STATUS_CHANGE = (
        "status_change",
        "WARNING",
        "ws_diag.health",
        "a probe crossed its failure threshold (INFO when back to healthy), with `status` and `previous_status`",
    )
    SETTINGS_INVALID = (
        "settings_invalid",
        "ERROR",
        "ws_diag",
        "settings that cannot be used, naming the field and its `WS_DIAG_*` variable",
    )
    SETTINGS_UNKNOWN_VARIABLE = (
        "settings_unknown_variable",
        "WARNING",
        "ws_diag",
        "a `WS_DIAG_*` variable that is no setting (once per process), with `variable` and `suggestion`",
    )
