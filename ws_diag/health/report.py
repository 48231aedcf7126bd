"""Health reports: one probe's result, and one run of all of them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ..components import DEFAULT_PRIORITY, ComponentLike
from ..redaction import redact_details
from ..wire.schemes import CodeScheme, frame_code

__all__ = ["HealthReport", "ProbeResult", "ProbeStatus"]

ProbeStatus = Literal["healthy", "failed", "degraded"]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe's outcome. ``error`` is redacted; ``error_type`` is just the exception's name.

    ``status`` is ``healthy``; ``failed`` (a required probe whose failure counts: past the
    checker's failure threshold); or ``degraded`` (failing, but not required or still within
    the threshold). ``failures`` counts the consecutive failed runs up to this one (0 when
    healthy) and ``failing_since`` is when the first of them started (UTC).
    """

    name: str
    component: ComponentLike
    required: bool
    status: ProbeStatus
    latency_ms: float
    error: str | None = None
    error_type: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    failures: int = 0
    failing_since: datetime | None = None

    @property
    def ok(self) -> bool:
        """Whether the probe passed."""
        return self.status == "healthy"


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The results of one run of every probe."""

    results: tuple[ProbeResult, ...]
    checked_at: datetime
    took_ms: float
    generation: int = 0  # the checker's cache generation this run belongs to

    @property
    def healthy(self) -> bool:
        """No required probe failed."""
        return all(r.status != "failed" for r in self.results)

    def culprit(self, priority: Sequence[str] = DEFAULT_PRIORITY) -> ProbeResult | None:
        """The result a failure should be blamed on.

        Failed (required) probes first, then degraded ones; within each, probes
        whose name or component key comes first in ``priority``, then the rest in
        registration order. ``None`` when everything is healthy.
        """
        rank = {key: index for index, key in enumerate(priority)}

        def order(item: tuple[int, ProbeResult]) -> tuple[int, int, int]:
            index, result = item
            named = min(rank.get(result.name, len(rank)), rank.get(result.component.key, len(rank)))
            return (0 if result.status == "failed" else 1, named, index)

        unhealthy = [(i, r) for i, r in enumerate(self.results) if not r.ok]
        return min(unhealthy, key=order)[1] if unhealthy else None

    def to_dict(self, *, code_scheme: CodeScheme = "private", expose_details: bool = True) -> dict[str, Any]:
        """The report as the JSON ``health_path`` serves by default.

        Without ``expose_details`` errors are reduced to type names.
        """
        failed = [r for r in self.results if r.status == "failed"]
        degraded = [r for r in self.results if r.status == "degraded"]
        suggestions: list[str] = []
        for result in (*failed, *degraded):
            suggestions.extend(s for s in result.component.suggestions if s not in suggestions)
        summary = f"{len(failed)} of {len(self.results)} probes failed"
        if degraded:
            summary += f", {len(degraded)} degraded"
        return {
            "healthy": self.healthy,
            "failed_components": [r.name for r in failed],
            "degraded_components": [r.name for r in degraded],
            "component_details": {
                r.name: {
                    "status": r.status,
                    "component": r.component.display_name,
                    "required": r.required,
                    "error": (r.error if expose_details else r.error_type) if not r.ok else None,
                    "error_code": frame_code(r.component, code_scheme) if not r.ok else None,
                    "latency_ms": round(r.latency_ms, 3),
                    "details": redact_details(r.details) if expose_details else None,
                }
                for r in self.results
            },
            "error_suggestions": suggestions,
            "summary": summary,
            "checked_at": self.checked_at.isoformat().replace("+00:00", "Z"),
            "took_ms": round(self.took_ms, 3),
        }
