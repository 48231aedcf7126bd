"""The connection lifecycle (ws_diag.lifecycle): hooks get the diagnosis event, a failing hook changes nothing,
and listeners follow the health checker too (``health_report`` and ``status_changed``, registered once)."""

from __future__ import annotations

import json
import logging

import pytest
from harness import CONNECT, drive, failing

from ws_diag import Component, DiagnosisEvent, DiagnosticsMiddleware, DiagSettings, WebSocketComponentError
from ws_diag.health import HealthChecker, HealthReport, StatusChange
from ws_diag.health.probes import CallableProbe, ProbeFailed
from ws_diag.lifecycle import Connection, ConnectionListener


@pytest.mark.asyncio
async def test_on_diagnosis_hook_gets_the_event() -> None:
    """Hooks receive the diagnosis, the wire code, the app's exception and whether it was delivered."""
    events: list[DiagnosisEvent] = []
    exc = WebSocketComponentError.redis_failure("Cache down")
    middleware = DiagnosticsMiddleware(failing(exc), settings=DiagSettings(), on_diagnosis=events.append)
    run = await drive(middleware, [CONNECT])
    (event,) = events
    assert event.diagnosis.component is Component.REDIS
    assert (event.code, event.http_status, event.delivered) == (4007, None, True)
    assert event.exception is exc
    assert event.path == "/ws"
    assert json.loads(run.sent[1]["text"])["error"]["incident_id"] == event.diagnosis.incident_id


@pytest.mark.asyncio
async def test_failing_hook_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """A hook that raises is logged; the client still gets its frame and the app's exception stands."""

    def broken(event: DiagnosisEvent) -> None:
        raise RuntimeError("hook bug")

    exc = WebSocketComponentError.database_failure()
    middleware = DiagnosticsMiddleware(failing(exc), settings=DiagSettings(), on_diagnosis=[broken])
    run = await drive(middleware, [CONNECT])
    assert run.close is not None
    assert run.close["code"] == 4005
    assert run.error is exc
    assert any("hook" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


async def app(scope: object, receive: object, send: object) -> None:
    """An app never called: these tests drive the checker."""


async def down() -> None:
    raise ProbeFailed("down")


def probe() -> CallableProbe:
    return CallableProbe("database", Component.DATABASE, down)


class Health(ConnectionListener):
    def __init__(self) -> None:
        self.reports: list[HealthReport] = []
        self.changes: list[StatusChange] = []

    def health_report(self, report: HealthReport) -> None:
        self.reports.append(report)

    def status_changed(self, change: StatusChange) -> None:
        self.changes.append(change)


class OnlyOpened(ConnectionListener):
    def opened(self, connection: Connection) -> None:
        """Follows connections only."""


@pytest.mark.asyncio
async def test_a_listener_registered_once_gets_reports_and_status_changes() -> None:
    """`listeners=[x]` alone delivers the checker's reports and status changes to x."""
    health = Health()
    middleware = DiagnosticsMiddleware(app, settings=DiagSettings(), probes=[probe()], listeners=[health])
    report = await middleware.checker.check()
    assert health.reports == [report]
    assert [(c.probe, c.previous, c.current) for c in health.changes] == [("database", "unknown", "failed")]


@pytest.mark.asyncio
async def test_a_checker_passed_in_gets_the_listeners_once_even_when_shared() -> None:
    """A user's checker is handed the listeners' health events, once, though two middlewares share it."""
    health = Health()
    calls: list[HealthReport] = []
    checker = HealthChecker([probe()], on_report=[calls.append])
    DiagnosticsMiddleware(app, settings=DiagSettings(), checker=checker, listeners=[health])
    DiagnosticsMiddleware(app, settings=DiagSettings(), checker=checker, listeners=[health])
    report = await checker.check()
    assert calls == [report]
    assert health.reports == [report]
    assert len(health.changes) == 1


def test_listeners_without_health_events_cost_the_checker_nothing() -> None:
    """A listener that overrides neither health event adds no hook to the checker."""
    middleware = DiagnosticsMiddleware(app, settings=DiagSettings(), probes=[probe()], listeners=[OnlyOpened()])
    assert middleware.checker.on_report == ()
    assert middleware.checker.on_status_change == ()


@pytest.mark.asyncio
async def test_a_raising_health_listener_is_logged_and_the_others_still_hear(caplog: pytest.LogCaptureFixture) -> None:
    """A listener whose health_report raises is logged (hook_failed) and ignored; the next one still gets the report."""

    class Broken(ConnectionListener):
        def health_report(self, report: HealthReport) -> None:
            raise RuntimeError("broken listener")

    health = Health()
    middleware = DiagnosticsMiddleware(app, settings=DiagSettings(), probes=[probe()], listeners=[Broken(), health])
    with caplog.at_level(logging.ERROR, logger="ws_diag"):
        report = await middleware.checker.check()
    assert health.reports == [report]
    failed = [r for r in caplog.records if getattr(r, "ws_diag_event", None) == "hook_failed"]
    assert len(failed) == 1
    assert "health_report" in failed[0].getMessage()
