"""Health reports in the IETF format, as verbose text, and the ``Accept`` negotiation between formats.

The IETF format is draft-inadarei-api-health-check-06 ("Health Check Response
Format for HTTP APIs", media type ``application/health+json``): a ``status`` of
``pass``, ``warn`` or ``fail`` (section 3.1: 2xx-3xx for pass and warn, 4xx-5xx
for fail) and ``checks`` keyed ``{componentName}:{measurementName}`` (section 4),
each an array of objects with ``componentType``, ``observedValue``,
``observedUnit``, ``status``, ``time`` and, unless passing, ``output``.
"""

from __future__ import annotations

from typing import Any, Literal

from ..components import Component
from .report import HealthReport, ProbeResult

__all__ = [
    "HEALTH_JSON",
    "JSON",
    "MAX_OUTPUT_CHARS",
    "HealthStatus",
    "negotiate",
    "report_status",
    "to_health_json",
    "verbose_text",
]

HEALTH_JSON = "application/health+json"
JSON = "application/json"

# An ``output`` (an exception's redacted text, or its type name) is cut to this many characters.
MAX_OUTPUT_CHARS = 256

HealthStatus = Literal["pass", "warn", "fail"]

# Section 4.2: pre-defined component types are component, datastore and system.
_DATASTORES = frozenset({Component.DATABASE.key, Component.REDIS.key})
_SYSTEMS = frozenset({Component.DEPENDENCY.key})


def report_status(report: HealthReport) -> HealthStatus:
    """``fail`` when a required probe failed, ``warn`` when any other is failing, else ``pass``."""
    if not report.healthy:
        return "fail"
    return "pass" if all(r.ok for r in report.results) else "warn"


def _check_status(result: ProbeResult) -> HealthStatus:
    return "pass" if result.ok else "fail" if result.status == "failed" else "warn"


def _output(result: ProbeResult, expose_details: bool) -> str:
    text = (result.error if expose_details else result.error_type) or result.error_type or "failed"
    return text if len(text) <= MAX_OUTPUT_CHARS else text[: MAX_OUTPUT_CHARS - 3] + "..."


def _component_name(result: ProbeResult) -> str:
    # Section 4: a component name must not contain the ':' separating it from the measurement.
    return result.name.replace(":", "_")


def to_health_json(report: HealthReport, *, expose_details: bool = False) -> dict[str, Any]:
    """The report as an ``application/health+json`` document.

    One check per probe, keyed ``<probe name>:responseTime``: ``observedValue`` is the
    probe's latency (``observedUnit`` ``ms``), ``time`` the run's start (UTC, ISO 8601),
    ``componentType`` ``datastore`` (database, redis), ``system`` (environment) or
    ``component``. Extra keys (section 4.10): ``component`` (the display name),
    ``required`` and, while failing, ``consecutiveFailures``. ``output`` (only when not
    passing) is the redacted error with ``expose_details``, else the exception type
    name; at most :data:`MAX_OUTPUT_CHARS` characters. No DSN, token or exception
    text appears unless ``expose_details``.
    """
    time = report.checked_at.isoformat().replace("+00:00", "Z")
    checks: dict[str, list[dict[str, Any]]] = {}
    for result in report.results:
        key = result.component.key
        check: dict[str, Any] = {
            "componentType": "datastore" if key in _DATASTORES else "system" if key in _SYSTEMS else "component",
            "observedValue": round(result.latency_ms, 3),
            "observedUnit": "ms",
            "status": _check_status(result),
            "time": time,
            "component": result.component.display_name,
            "required": result.required,
        }
        if not result.ok:
            check["output"] = _output(result, expose_details)
            check["consecutiveFailures"] = result.failures
        checks[f"{_component_name(result)}:responseTime"] = [check]
    status = report_status(report)
    document: dict[str, Any] = {"status": status, "description": "ws_diag dependency checks"}
    if status != "pass":  # section 3.5: omitted when passing
        document["output"] = report.to_dict()["summary"]
    document["checks"] = checks
    return document


def verbose_text(name: str, report: HealthReport | None, *, expose_details: bool = False) -> str:
    """Kubernetes-style ``?verbose`` output: one ``[+]``/``[-]`` line per check, then the verdict.

    ``name`` is the endpoint (``livez``, ``readyz``); ``report`` is ``None`` for liveness,
    which checks nothing but that the process answers (a ``ping`` line). A failing
    probe's line says ``failed`` (it counts) or ``degraded`` (not required, or within
    the failure threshold), its consecutive failures, and the error as in
    :func:`to_health_json`.
    """
    if report is None:
        return f"[+]ping ok\n{name} check passed\n"
    lines = []
    for result in report.results:
        required = "required" if result.required else "optional"
        if result.ok:
            lines.append(f"[+]{result.name} ok ({required}, {result.latency_ms:.1f} ms)")
        else:
            runs = "run" if result.failures == 1 else "runs"
            lines.append(
                f"[-]{result.name} {result.status} ({required}, {result.failures} failed {runs}): "
                f"{_output(result, expose_details)}"
            )
    lines.append(f"{name} check {'passed' if report.healthy else 'failed'}")
    return "\n".join(lines) + "\n"


def _media_ranges(accept: str) -> list[tuple[str, float]]:
    ranges = []
    for part in accept.split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        if not media:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0  # RFC 9110 12.4.2: a malformed weight is no preference
                q = q if 0.0 <= q <= 1.0 else 0.0
        ranges.append((media.lower(), q))
    return ranges


def _quality(media: str, ranges: list[tuple[str, float]]) -> tuple[float, int]:
    """The weight the most specific matching range gives ``media``, and that specificity (0: no match)."""
    kind = media.split("/", 1)[0]
    best = (0.0, 0)
    for pattern, q in ranges:
        specificity = 3 if pattern == media else 2 if pattern == f"{kind}/*" else 1 if pattern == "*/*" else 0
        if specificity > best[1]:
            best = (q, specificity)
    return best


def negotiate(accept: str | None, offers: tuple[str, ...] = (JSON, HEALTH_JSON)) -> str:
    """The offer an ``Accept`` header prefers (RFC 9110 section 12.5.1); the first offer on a tie.

    Each offer gets the weight of the most specific range that matches it; the
    heaviest wins, a more specific match breaks a tie, and otherwise the first
    offer (the default) wins. No header, or nothing acceptable, gives the default
    too: a health endpoint answers rather than sending 406.
    """
    if not accept:
        return offers[0]
    ranges = _media_ranges(accept[:1024])  # bounded: a header cannot make this loop long
    best, best_key = offers[0], (0.0, 0)
    for offer in offers:
        key = _quality(offer, ranges)
        if key[0] > 0 and key > best_key:
            best, best_key = offer, key
    return best
