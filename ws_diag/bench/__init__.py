"""In-process benchmark of the websocket message path: what a middleware costs per message.

No sockets and no server: an ASGI app's websocket is driven with plain async
``receive``/``send`` callables (connect, accept, N text messages, disconnect),
the way uvicorn's own websocket benchmarks drive an app. Variants (the bare
app, the app wrapped by ws_diag, reference wrappers) run interleaved, A B A B
..., for ``rounds`` rounds; the report gives the median nanoseconds per message
(one ``receive`` plus whatever the app sends in answer, one ``send`` for an
echo app) and, per variant, the median over rounds of its difference to and
ratio with the baseline measured in the same round.

``ws-diag bench [module:attribute]`` runs it against the built-in echo app or
against a user's own ASGI app. Peers that need extra packages (Sentry,
OpenTelemetry) live in the repository's ``benchmarks/`` package, not here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._importing import ImportFromStringError, import_from_string
from .._types import ASGIApp, Message, Receive, Scope, Send
from ..middleware import DiagnosticsMiddleware
from ..settings import DiagSettings
from .driver import LifespanError, Session, lifespan, run_session, websocket_scope

__all__ = [
    "DEFAULT_TEXT",
    "BenchReport",
    "ImportFromStringError",
    "LifespanError",
    "Variant",
    "VariantResult",
    "async_send_wrapper",
    "default_variants",
    "echo_app",
    "environment",
    "import_from_string",
    "lifespan",
    "measure",
    "run_cli",
    "websocket_scope",
]

DEFAULT_TEXT = '{"type":"ping"}'
"""What the simulated client sends: small JSON, so apps that ``receive_json`` work too."""

EXIT_OK, EXIT_APP_FAILED, EXIT_USAGE = 0, 1, 2


# -- apps and wrappers --------------------------------------------------------


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A raw ASGI websocket echo app: accept, send every message back, return on disconnect."""
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        text = message.get("text")
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


def async_send_wrapper(app: ASGIApp) -> ASGIApp:
    """The naive way to watch ``send``: an ``async def`` that awaits the server's send."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def watched_send(message: Message) -> None:
            await send(message)

        await app(scope, receive, watched_send)

    return wrapped


@dataclass(frozen=True)
class Variant:
    """One way of running the app: a name, the ASGI callable, a note for the table."""

    name: str
    app: ASGIApp
    note: str = ""
    messages: int | None = None
    """Messages per session for this variant (default: the run's); for very slow peers."""


def default_variants(app: ASGIApp, *, settings: DiagSettings | None = None) -> list[Variant]:
    """Bare, wrapped by ws_diag, and a naive ``async def`` send wrapper for reference.

    An app that is already a :class:`DiagnosticsMiddleware` is unwrapped for the bare variant.
    """
    bare = app.app if isinstance(app, DiagnosticsMiddleware) else app
    settings = settings if settings is not None else DiagSettings()
    return [
        Variant("bare", bare, "the app as it is"),
        Variant(
            "ws_diag", DiagnosticsMiddleware(bare, settings=settings), "DiagnosticsMiddleware(app, DiagSettings())"
        ),
        Variant("async def send wrapper", async_send_wrapper(bare), "reference: a naive pass-through middleware"),
    ]


# -- measuring ----------------------------------------------------------------------


@dataclass
class VariantResult:
    """One variant's medians over the rounds.

    ``ns_per_message`` is the median over rounds of elapsed time divided by the
    messages the app received; ``added_ns`` and ``ratio`` are medians over rounds
    of the difference to, and ratio with, the baseline's time in the same round.
    """

    name: str
    note: str
    ns_per_message: float | None
    added_ns: float | None
    ratio: float | None
    samples_ns: list[float]
    received: int
    sent: int
    error: str | None = None
    added_ns_iqr: tuple[float, float] | None = None
    """The 25th and 75th percentiles of the per-round differences: how noisy ``added_ns`` is."""


@dataclass
class BenchReport:
    """The outcome of :func:`measure`."""

    target: str
    path: str
    messages: int
    rounds: int
    baseline: str
    text: str
    variants: list[VariantResult]
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every variant ran without an error."""
        return all(v.error is None for v in self.variants)

    def variant(self, name: str) -> VariantResult:
        """The result of the variant called ``name``."""
        for result in self.variants:
            if result.name == name:
                return result
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "benchmark": "ws_diag in-process message path",
            "target": self.target,
            "path": self.path,
            "messages": self.messages,
            "rounds": self.rounds,
            "baseline": self.baseline,
            "text": self.text,
            "unit": "ns per message (one receive and the app's answer, one send for an echo app)",
            "variants": [
                {
                    "name": v.name,
                    "note": v.note,
                    "ns_per_message": _rounded(v.ns_per_message),
                    "added_ns": _rounded(v.added_ns),
                    "added_ns_iqr": [_rounded(x) for x in v.added_ns_iqr] if v.added_ns_iqr else None,
                    "ratio": _rounded(v.ratio, 4),
                    "samples_ns": [_rounded(s) for s in v.samples_ns],
                    "received": v.received,
                    "sent": v.sent,
                    "error": v.error,
                }
                for v in self.variants
            ],
            "environment": self.environment,
        }

    def table(self) -> str:
        """A plain-text table for the terminal."""
        lines = [
            f"ws_diag in-process benchmark: {self.target}, path {self.path}",
            f"{self.messages:,} messages x {self.rounds} rounds, variants interleaved; "
            "ns per message = one receive + the app's answer, median of rounds;",
            f"added and ratio: median over rounds against {self.baseline!r} in the same round",
            "",
        ]
        rows = [("variant", "ns/msg", "added ns", "ratio", "note")]
        for v in self.variants:
            if v.error is not None:
                rows.append((v.name, "-", "-", "-", f"ERROR: {v.error}"))
                continue
            added = "-" if v.added_ns is None or v.name == self.baseline else f"{v.added_ns:+.1f}"
            ratio = "-" if v.ratio is None else f"{v.ratio:.3f}"
            per = "-" if v.ns_per_message is None else f"{v.ns_per_message:.1f}"
            rows.append((v.name, per, added, ratio, v.note))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            cells = [row[0].ljust(widths[0]), *(row[i].rjust(widths[i]) for i in (1, 2, 3)), row[4]]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)


def _rounded(value: float | None, digits: int = 1) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


async def measure(
    variants: Sequence[Variant],
    *,
    messages: int = 20_000,
    rounds: int = 7,
    path: str = "/ws",
    text: str = DEFAULT_TEXT,
    baseline: str | None = None,
    target: str = "built-in echo app",
    state: dict[str, Any] | None = None,
    session_limit_s: float = 60.0,
    warmup: bool = True,
) -> BenchReport:
    """Time ``variants`` interleaved (A B A B ..., the order reversed every other round).

    Args:
        variants: the apps to compare; names must be unique.
        messages: text messages per session (per round and variant), unless a variant sets its own.
        rounds: interleaved rounds; medians are reported.
        path: the websocket path in the scope.
        text: the text of each message.
        baseline: the variant ``added_ns`` and ``ratio`` refer to (default: the first).
        target: what is measured, for the report.
        state: lifespan state to copy into every scope.
        session_limit_s: seconds one session may take before it counts as failed.
        warmup: run each variant once, untimed, before the rounds.
    """
    baseline = _check_arguments(variants, messages, rounds, baseline)

    def scope() -> Scope:
        return websocket_scope(path, state=dict(state) if state is not None else None)

    sessions: dict[str, list[Session]] = {v.name: [] for v in variants}
    errors: dict[str, str] = {}
    if warmup:
        for variant in variants:
            count = variant.messages or messages
            warm = await run_session(variant.app, scope(), max(count // 10, 1), text, session_limit_s)
            if warm.error is not None:
                errors[variant.name] = warm.error
    for round_index in range(rounds):
        for variant in variants if round_index % 2 == 0 else list(reversed(variants)):
            if variant.name in errors:
                continue
            fresh = scope()
            gc.collect()
            result = await run_session(variant.app, fresh, variant.messages or messages, text, session_limit_s)
            if result.error is not None:
                errors[variant.name] = result.error
            sessions[variant.name].append(result)
    per_message = {name: [_per_message(s) for s in runs] for name, runs in sessions.items()}
    results = [_result(variant, sessions[variant.name], per_message, baseline, errors) for variant in variants]
    return BenchReport(target, path, messages, rounds, baseline, text, results, environment())


def _check_arguments(variants: Sequence[Variant], messages: int, rounds: int, baseline: str | None) -> str:
    if messages < 1 or rounds < 1:
        msg = f"messages and rounds must be positive, got {messages} and {rounds}"
        raise ValueError(msg)
    names = [v.name for v in variants]
    if not names:
        msg = "no variants to measure"
        raise ValueError(msg)
    if len(set(names)) != len(names):
        msg = f"variant names must be unique, got {names}"
        raise ValueError(msg)
    baseline = baseline if baseline is not None else names[0]
    if baseline not in names:
        msg = f"baseline {baseline!r} is not one of {names}"
        raise ValueError(msg)
    return baseline


def _result(
    variant: Variant,
    runs: list[Session],
    per_message: dict[str, list[float]],
    baseline: str,
    errors: dict[str, str],
) -> VariantResult:
    samples = per_message[variant.name]
    error = errors.get(variant.name)
    finite = [s for s in samples if math.isfinite(s)]
    if error is None and len(finite) != len(samples):
        error = "the app received no messages"
    paired = [
        (s, b) for s, b in zip(samples, per_message[baseline], strict=False) if math.isfinite(s) and math.isfinite(b)
    ]
    usable = error is None and baseline not in errors and bool(paired)
    differences = sorted(s - b for s, b in paired)
    return VariantResult(
        name=variant.name,
        note=variant.note,
        ns_per_message=statistics.median(finite) if finite and error is None else None,
        added_ns=statistics.median(differences) if usable else None,
        ratio=statistics.median(s / b for s, b in paired) if usable else None,
        samples_ns=samples,
        received=runs[-1].received if runs else 0,
        sent=runs[-1].sent if runs else 0,
        error=error,
        added_ns_iqr=_quartiles(differences) if usable else None,
    )


def _quartiles(values: Sequence[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0], values[0])
    quarts = statistics.quantiles(values, n=4)
    return (quarts[0], quarts[2])


def _per_message(session: Session) -> float:
    return session.elapsed_ns / session.received if session.received else math.nan


# -- environment ------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    """The machine and interpreter the numbers come from."""
    from .. import __version__

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ws_diag": __version__,
    }


# -- the command line ------------------------------------------------------------------------


def run_cli(args: argparse.Namespace) -> int:
    """``ws-diag bench``: the in-process benchmark on ``args.target`` (or the echo app)."""
    target: str | None = getattr(args, "target", None)
    messages: int = getattr(args, "messages", 20_000)
    rounds: int = getattr(args, "rounds", 7)
    path: str = getattr(args, "path", "/ws")
    json_path: str | None = getattr(args, "json", None)
    text: str = getattr(args, "text", None) or DEFAULT_TEXT
    if messages < 1 or rounds < 1:
        print("ws-diag bench: --messages and --rounds must be positive", file=sys.stderr)
        return EXIT_USAGE
    app: Any = echo_app
    if target is not None:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # like uvicorn's --app-dir .
        try:
            app = import_from_string(target)
        except ImportFromStringError as exc:
            print(f"ws-diag bench: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if not callable(app):
            print(f"ws-diag bench: {target} is not an ASGI app (not callable)", file=sys.stderr)
            return EXIT_USAGE
    try:
        report = asyncio.run(_run(app, target or "built-in echo app", messages, rounds, path, text))
    except LifespanError as exc:
        print(f"ws-diag bench: {exc}", file=sys.stderr)
        return EXIT_APP_FAILED
    print(report.table())
    if json_path is not None:
        Path(json_path).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        print(f"\nwrote {json_path}")
    return EXIT_OK if report.ok else EXIT_APP_FAILED


async def _run(app: ASGIApp, target: str, messages: int, rounds: int, path: str, text: str) -> BenchReport:
    variants = default_variants(app)
    async with lifespan(variants[0].app) as state:
        return await measure(
            variants, messages=messages, rounds=rounds, path=path, text=text, target=target, state=state
        )
