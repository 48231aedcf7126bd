"""Small statistics helpers (no dependencies: the load generator imports this too)."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Iterable, Sequence

__all__ = [
    "at_least",
    "at_most",
    "bootstrap_ci",
    "median",
    "paired_median_ratio",
    "paired_ratios",
    "percentile",
    "summary",
    "worst",
]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of already sorted values; NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = max(math.ceil(q / 100 * len(sorted_values)), 1)
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def summary(values: Iterable[float], scale: float = 1.0, digits: int = 3) -> dict[str, float | int | None]:
    """n, mean, p50, p90, p99, p99.9 and max of ``values`` divided by ``scale``."""
    data = sorted(v / scale for v in values)
    if not data:
        return {"n": 0, "mean": None, "p50": None, "p90": None, "p99": None, "p999": None, "max": None}
    return {
        "n": len(data),
        "mean": round(statistics.fmean(data), digits),
        "p50": round(percentile(data, 50), digits),
        "p90": round(percentile(data, 90), digits),
        "p99": round(percentile(data, 99), digits),
        "p999": round(percentile(data, 99.9), digits),
        "max": round(data[-1], digits),
    }


def median(values: Iterable[float | None]) -> float | None:
    """The median of the finite values, or ``None``."""
    data = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(data) if data else None


def paired_median_ratio(values: Sequence[float | None], baseline: Sequence[float | None]) -> float | None:
    """Median over rounds of value / baseline in the same round."""
    pairs = [
        v / b
        for v, b in zip(values, baseline, strict=False)
        if v is not None and b is not None and math.isfinite(v) and math.isfinite(b) and b != 0
    ]
    return statistics.median(pairs) if pairs else None


def paired_ratios(values: Sequence[float | None], baseline: Sequence[float | None]) -> list[float]:
    """value / baseline per round, for the rounds where both are usable."""
    return [
        v / b
        for v, b in zip(values, baseline, strict=False)
        if v is not None and b is not None and math.isfinite(v) and math.isfinite(b) and b != 0
    ]


def bootstrap_ci(values: Sequence[float], level: float = 0.95, resamples: int = 2000) -> list[float] | None:
    """A percentile-bootstrap confidence interval of the median of ``values`` (fixed seed: reproducible)."""
    if len(values) < 3:
        return None
    rng = random.Random(1234)  # noqa: S311 - resampling, not cryptography
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    low = medians[int((1 - level) / 2 * resamples)]
    high = medians[min(int((1 + level) / 2 * resamples), resamples - 1)]
    return [round(low, 4), round(high, 4)]


MET, UNRESOLVED, NOT_MET = "met", "not resolved (within noise)", "NOT met"


def at_least(value: float | None, interval: list[float] | None, goal: float) -> str:
    """Verdict for "value >= goal": met; NOT met if even the interval's top is below; else unresolved."""
    if value is None:
        return NOT_MET
    if value >= goal:
        return MET
    return UNRESOLVED if interval is not None and interval[1] >= goal else NOT_MET


def at_most(value: float | None, interval: list[float] | None, goal: float) -> str:
    """Verdict for "value <= goal": met; NOT met if even the interval's bottom is above; else unresolved."""
    if value is None:
        return NOT_MET
    if value <= goal:
        return MET
    return UNRESOLVED if interval is not None and interval[0] <= goal else NOT_MET


def worst(*verdicts: str) -> str:
    """The least favourable of several verdicts."""
    for verdict in (NOT_MET, UNRESOLVED):
        if verdict in verdicts:
            return verdict
    return MET
