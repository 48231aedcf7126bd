"""Counts what the reliability tests tried, for docs/reliability.md.

Tests call ``record(area, **counts)``; ``pytest --reliability-report FILE``
writes the table when the session ends. Only on that explicit option: running the
tests never modifies a tracked file. Regenerate the checked-in table with
``./scripts/test --reliability-report docs/reliability.md``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

STATS: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
OUTCOMES: dict[str, list[str]] = defaultdict(list)

AREAS = {
    "fuzz": "Protocol fuzzing (Hypothesis), in-process and through real servers",
    "load": "Load: concurrent sessions through real servers, 10% failing",
    "faults": "Faults: PostgreSQL/Redis killed, frozen, restarted, black-holed; broken probes and classifiers",
    "hostile": "Hostile input: reasons, codes, details, settings, planted secrets",
    "matrix": "Server matrix: hypercorn; uvicorn default (websockets-sansio), wsproto, legacy websockets; daphne",
}


def record(area: str, **counts: int) -> None:
    """Add ``counts`` (cases, sessions, faults, leaks, ...) to ``area``."""
    for name, value in counts.items():
        STATS[area][name] += value


def outcome(area: str, nodeid: str, passed: bool) -> None:
    """Remember a reliability test's result."""
    OUTCOMES[area].append(("passed " if passed else "FAILED ") + nodeid)


def write_report(path: Path, python: str, versions: dict[str, str]) -> None:
    """Write the markdown table of everything recorded."""
    lines = [
        "# Reliability: what the suite tried",
        "",
        "Produced by the test suite on request: `./scripts/test --reliability-report docs/reliability.md`.",
        f"Python {python}; " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) + ".",
        "",
        "| area | tests passed / run | what was tried | leaks found |",
        "|---|---|---|---|",
    ]
    for area, title in AREAS.items():
        results = OUTCOMES.get(area, [])
        passed = sum(r.startswith("passed") for r in results)
        counts = STATS.get(area, {})
        tried = ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in sorted(counts.items()) if k != "leaks") or "-"
        lines.append(f"| {title} | {passed} / {len(results)} | {tried} | {counts.get('leaks', 0)} |")
    lines += [
        "",
        "Leaks are secrets found in client-visible bytes, asyncio tasks left running, or memory not returned;",
        "each test asserts none, so a non-zero count would also be a failed test.",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
