"""The connection lifecycle (ws_diag.lifecycle): on_diagnosis hooks get the event; a failing hook changes nothing."""

from __future__ import annotations

import json
import logging

import pytest
from harness import CONNECT, drive, failing

from ws_diag import Component, DiagnosisEvent, DiagnosticsMiddleware, DiagSettings, WebSocketComponentError

pytestmark = pytest.mark.asyncio


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
