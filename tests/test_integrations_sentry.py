"""Sentry: tagged events for real failures, none for deliberate ones, under real servers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from harness import CONNECT, drive, text, ws_scope
from sentry_sdk.envelope import Envelope
from sentry_sdk.integrations.asgi import SentryAsgiMiddleware
from sentry_sdk.integrations.dedupe import DedupeIntegration
from sentry_sdk.transport import Transport
from servers import run_server
from websockets.asyncio.client import connect

from clients import CLIENT_TIMEOUT, talk
from ws_diag import Component, DiagnosticsMiddleware, DiagSettings, WebSocketComponentError
from ws_diag.components import SERVICE_RESTART
from ws_diag.diagnosis import Diagnosis
from ws_diag.integrations.sentry import SentryListener
from ws_diag.lifecycle import Connection, DiagnosisEvent


class MemoryTransport(Transport):
    """A Sentry transport that keeps every envelope in memory."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        """Keep the envelope."""
        self.envelopes.append(envelope)

    @property
    def events(self) -> list[dict[str, Any]]:
        """The error events sent so far."""
        return [event for envelope in self.envelopes if (event := envelope.get_event()) is not None]


@pytest.fixture
def sentry() -> Iterator[MemoryTransport]:
    """sentry-sdk initialised with an in-memory transport (no integrations of its own), reset afterwards."""
    transport = MemoryTransport()
    sentry_sdk.init(
        dsn="https://public@sentry.invalid/1",
        transport=transport,
        default_integrations=False,
        auto_enabling_integrations=False,
    )
    try:
        yield transport
    finally:
        sentry_sdk.get_global_scope().set_client(None)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """One failure per path: raise Redis or Authentication, close 1011 without an exception, or end normally."""
    path = scope["path"]
    await receive()
    await send({"type": "websocket.accept"})
    await receive()
    if path == "/redis":
        raise WebSocketComponentError.redis_failure("no cache")
    if path == "/auth":
        raise WebSocketComponentError.auth_failure("token expired")
    if path == "/close-1011":
        await send({"type": "websocket.close", "code": 1011})
    elif path == "/normal":
        await send({"type": "websocket.close", "code": 1000})
    elif path == "/client-leaves":
        while (await receive())["type"] != "websocket.disconnect":
            pass


async def wait_for(transport: MemoryTransport, count: int) -> list[dict[str, Any]]:
    """The first ``count`` events (polled: the listener runs after the client saw the close)."""
    async with asyncio.timeout(CLIENT_TIMEOUT):
        while True:
            if len(events := transport.events) >= count:
                return events
            await asyncio.sleep(0.01)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["hypercorn", "uvicorn"])
async def test_raised_failure_is_reported_with_its_tags(kind: str, sentry: MemoryTransport) -> None:
    """The app's exception is captured once, tagged with the frame's incident id, component, code and source."""
    middleware = DiagnosticsMiddleware(app, settings=DiagSettings(), listeners=[SentryListener()])
    async with run_server(middleware, kind) as url:
        session = await talk(url + "/redis")
        (event,) = await wait_for(sentry, 1)
    assert session.code == 4007
    tags = event["tags"]
    assert tags["incident_id"] == session.frame["incident_id"]
    assert (tags["component"], tags["close_code"], tags["diagnosis_source"]) == ("redis", "4007", "app")
    (exception,) = event["exception"]["values"]
    assert (exception["type"], exception["value"]) == ("WebSocketComponentError", "no cache")
    assert event["contexts"]["ws_diag"]["component"] == "Redis"


@pytest.mark.asyncio
async def test_app_close_without_exception_is_a_message(sentry: MemoryTransport) -> None:
    """An app's own 1011 (no exception) becomes a message event, not an empty one, with the same tags."""
    middleware = DiagnosticsMiddleware(app, settings=DiagSettings(), listeners=[SentryListener()])
    async with run_server(middleware, "uvicorn") as url:
        session = await talk(url + "/close-1011")
        (event,) = await wait_for(sentry, 1)
    assert "exception" not in event
    assert event["message"] == "WebSocket Generic Internal failure (close 1011)"
    assert event["level"] == "error"
    assert event["tags"]["incident_id"] == session.frame["incident_id"]
    assert (event["tags"]["component"], event["tags"]["close_code"]) == ("generic", "1011")
    assert event["tags"]["diagnosis_source"] == "default"
    assert event["fingerprint"] == ["ws_diag", "generic", "1011"]


@pytest.mark.asyncio
async def test_deliberate_and_normal_endings_are_not_reported(sentry: MemoryTransport) -> None:
    """An Authentication failure raised on purpose, a normal close and a client leaving send nothing."""
    middleware = DiagnosticsMiddleware(app, settings=DiagSettings(), listeners=[SentryListener()])
    async with run_server(middleware, "uvicorn") as url:
        assert (await talk(url + "/auth")).code == 4002
        assert (await talk(url + "/normal")).code == 1000
        async with asyncio.timeout(CLIENT_TIMEOUT), connect(url + "/client-leaves") as ws:
            await ws.close()
        # A failure reported after them proves the listener ran for the ones before.
        await talk(url + "/redis")
        (event,) = await wait_for(sentry, 1)
    assert event["tags"]["component"] == "redis"


@pytest.mark.asyncio
async def test_ignored_components_and_sources_are_configurable(sentry: MemoryTransport) -> None:
    """ignore_components and ignore_sources leave those diagnoses out; Authentication is then reported."""
    listener = SentryListener(ignore_components=[Component.REDIS], ignore_sources=["default"])
    middleware = DiagnosticsMiddleware(app, settings=DiagSettings(), listeners=[listener])
    for path in ("/redis", "/close-1011", "/auth"):
        await drive(middleware, [CONNECT, text("hi")], scope=ws_scope(path=path))
    (event,) = sentry.events
    assert event["tags"]["component"] == "auth"


def test_restarts_are_never_reported(sentry: MemoryTransport) -> None:
    """A diagnosis with source "shutdown" is not reported, even when no source is ignored."""
    diagnosis = Diagnosis.for_component(SERVICE_RESTART, "shutdown")
    event = DiagnosisEvent(diagnosis, 1012, None, True, 0.1, "/ws", None)
    listener = SentryListener(ignore_components=())
    assert not listener.reports(event)
    listener.diagnosed(Connection({"type": "websocket"}), event)
    assert sentry.events == []


def test_a_single_string_is_refused() -> None:
    """ignore_components="auth" (a string, not a collection) is a TypeError naming the arguments."""
    with pytest.raises(TypeError, match="ignore_components"):
        SentryListener(ignore_components="auth")


@pytest.fixture
def sentry_with_dedupe() -> Iterator[MemoryTransport]:
    """sentry-sdk with only its DedupeIntegration (a default one): a second report of one exception is dropped."""
    transport = MemoryTransport()
    sentry_sdk.init(
        dsn="https://public@sentry.invalid/1",
        transport=transport,
        default_integrations=False,
        auto_enabling_integrations=False,
        integrations=[DedupeIntegration()],
    )
    try:
        yield transport
    finally:
        sentry_sdk.get_global_scope().set_client(None)


@pytest.mark.asyncio
async def test_inside_sentry_middleware_the_tagged_report_is_the_one_kept(sentry_with_dedupe: MemoryTransport) -> None:
    """ws_diag inside SentryAsgiMiddleware: one event for the exception, and it carries ws_diag's tags."""
    inner = DiagnosticsMiddleware(app, settings=DiagSettings(), listeners=[SentryListener()])
    async with run_server(SentryAsgiMiddleware(inner), "uvicorn") as url:
        session = await talk(url + "/redis")
        (event,) = await wait_for(sentry_with_dedupe, 1)
        # A later failure proves nothing more was coming for the first one.
        await talk(url + "/close-1011")
        events = await wait_for(sentry_with_dedupe, 2)
    assert event["tags"]["incident_id"] == session.frame["incident_id"]
    assert [e["tags"].get("component") for e in events] == ["redis", "generic"]
