"""Section 1: the message path in-process (no sockets), ws_diag against the bare app and peers.

Variants, all wrapping the same raw echo app and driven by ``ws_diag.bench``
(in-memory receive/send, interleaved rounds, medians):

* bare app;
* ws_diag with default settings, with probes configured (PostgreSQL, Redis,
  environment; no I/O on this path) and, for reference, with ``track_disconnect``;
* naive ``async def`` pass-through wrappers (send only; receive and send);
* Sentry's ``SentryAsgiMiddleware`` (``sentry_sdk.init`` with tracing on,
  default integrations off, a transport that drops everything);
* OpenTelemetry's ``OpenTelemetryMiddleware`` (SDK ``TracerProvider``, spans
  handed to an exporter that drops them: the cost shown is the instrumentation's).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ws_diag import DiagnosticsMiddleware, DiagSettings
from ws_diag._types import ASGIApp, Message, Receive, Scope, Send
from ws_diag.bench import Variant, async_send_wrapper, echo_app, measure
from ws_diag.health.probes import EnvProbe, PostgresProbe, RedisProbe

from .common import QuietGate

__all__ = ["MessagePathConfig", "run"]

GOAL_ADDED_NS = 50.0


@dataclass(frozen=True)
class MessagePathConfig:
    messages: int = 20_000
    rounds: int = 31
    quiet_budget_s: float = 30.0

    @classmethod
    def quick(cls) -> MessagePathConfig:
        return cls(messages=200, rounds=3, quiet_budget_s=0.0)


def plain_send_wrapper(app: ASGIApp) -> ASGIApp:
    """The cheapest way to see ``send``: a plain function returning the server's awaitable."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        def watched_send(message: Message) -> Awaitable[None]:
            return send(message)

        await app(scope, receive, watched_send)

    return wrapped


def async_receive_send_wrapper(app: ASGIApp) -> ASGIApp:
    """A naive pass-through middleware that watches both directions with ``async def``."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def watched_receive() -> Message:
            return await receive()

        async def watched_send(message: Message) -> None:
            await send(message)

        await app(scope, watched_receive, watched_send)

    return wrapped


@contextlib.contextmanager
def sentry_middleware(app: ASGIApp) -> Iterator[ASGIApp]:
    """Sentry's ASGI middleware around ``app``, with a client that sends nothing anywhere."""
    import sentry_sdk
    from sentry_sdk.integrations.asgi import SentryAsgiMiddleware
    from sentry_sdk.transport import Transport

    class DropTransport(Transport):
        def capture_envelope(self, envelope: Any) -> None:
            pass

    sentry_sdk.init(
        dsn="https://0123456789abcdef0123456789abcdef@sentry.invalid/1",
        transport=DropTransport,
        traces_sample_rate=1.0,
        default_integrations=False,
        auto_enabling_integrations=False,
    )
    try:
        yield SentryAsgiMiddleware(app)
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)


def otel_middleware(app: ASGIApp) -> ASGIApp:
    """OpenTelemetry's ASGI middleware around ``app``, spans ending in an exporter that drops them."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class DropExporter(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(DropExporter()))
    middleware: ASGIApp = OpenTelemetryMiddleware(app, tracer_provider=provider)
    return middleware


def _probes() -> list[Any]:
    # Constructed only: none of them does I/O unless a failure has to be attributed.
    return [
        PostgresProbe("postgresql://user:secret@127.0.0.1:1/db", timeout=0.5),
        RedisProbe("redis://127.0.0.1:1/0", timeout=0.5),
        EnvProbe(["PATH"]),
    ]


async def run(cfg: MessagePathConfig) -> dict[str, Any]:
    """Measure every variant interleaved; returns the JSON-ready result."""
    app = echo_app
    gate = QuietGate(cfg.quiet_budget_s)
    await gate.wait()
    with sentry_middleware(app) as sentry:
        variants = [
            Variant("bare", app, "raw ASGI echo app"),
            Variant("ws_diag", DiagnosticsMiddleware(app, settings=DiagSettings()), "default settings"),
            Variant(
                "ws_diag + probes",
                DiagnosticsMiddleware(app, settings=DiagSettings(probe_timeout=0.5), probes=_probes()),
                "PostgresProbe, RedisProbe, EnvProbe configured",
            ),
            Variant(
                "ws_diag track_disconnect",
                DiagnosticsMiddleware(app, settings=DiagSettings(track_disconnect=True)),
                "opt-in receive wrapper (reference)",
            ),
            Variant("def send wrapper", plain_send_wrapper(app), "reference: the floor for watching send"),
            Variant("async def send wrapper", async_send_wrapper(app), "naive pass-through, send only"),
            Variant("async def receive+send wrapper", async_receive_send_wrapper(app), "naive pass-through, both"),
            Variant("Sentry", sentry, "SentryAsgiMiddleware, traces_sample_rate=1.0"),
            Variant(
                "OpenTelemetry",
                otel_middleware(app),
                "OpenTelemetryMiddleware, SDK tracer",
                messages=max(cfg.messages // 10, 10),  # a span per message: 10x fewer keeps the run short
            ),
        ]
        report = await measure(variants, messages=cfg.messages, rounds=cfg.rounds, target="raw ASGI echo app")
    result = report.to_dict()
    result["quiet"] = gate.as_dict()
    ws_diag = report.variant("ws_diag")
    peers = [v for v in report.variants if v.name in _PEERS]
    added = ws_diag.added_ns
    cheaper = added is not None and all(p.added_ns is not None and added < p.added_ns for p in peers)
    result["goal"] = {
        "text": f"ws_diag adds at most {GOAL_ADDED_NS:.0f} ns per message and less than every peer",
        "added_ns": added,
        "met": added is not None and added <= GOAL_ADDED_NS and cheaper,
        "within_50ns": added is not None and added <= GOAL_ADDED_NS,
        "cheaper_than_every_peer": cheaper,
    }
    return result


_PEERS = ("async def send wrapper", "async def receive+send wrapper", "Sentry", "OpenTelemetry")


def render(result: dict[str, Any]) -> str:
    """Markdown table."""
    lines = [
        f"{result['messages']:,} messages per session, {result['rounds']} interleaved rounds; "
        "ns per message = one `receive` + one `send` of the echo, median of rounds; "
        "added and ratio are medians of the per-round difference to / ratio with `bare`.",
        "",
        "| variant | ns / message | added ns / message | ratio to bare | note |",
        "|---|---:|---:|---:|---|",
    ]
    for v in result["variants"]:
        if v["error"]:
            lines.append(f"| {v['name']} | error | | | {v['error']} |")
            continue
        added = "-" if v["name"] == result["baseline"] else _signed(v["added_ns"])
        lines.append(f"| {v['name']} | {_num(v['ns_per_message'])} | {added} | {_ratio(v['ratio'])} | {v['note']} |")
    goal = result["goal"]
    lines += [
        "",
        f"Goal: {goal['text']}: **{'met' if goal['met'] else 'NOT met'}** "
        f"(ws_diag adds {_signed(goal['added_ns'])} ns).",
    ]
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+,.0f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
