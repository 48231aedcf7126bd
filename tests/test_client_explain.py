"""The Python client's explain() and parse_frame() (ws_diag.client.explain): with the frame, and from the code alone."""

from __future__ import annotations

import json
from typing import Any

import pytest
from harness import drive, failing

from ws_diag import DiagnosticsMiddleware, WebSocketComponentError
from ws_diag.client import explain, parse_frame

pytestmark = pytest.mark.asyncio


async def test_client_explain_with_frame() -> None:
    """explain() pairs the close with the frame: component, message, suggestions, retryable, incident id."""
    run = await drive(DiagnosticsMiddleware(failing(WebSocketComponentError.database_failure("DB down"))))
    frame_text = run.sent[1]["text"]
    result = explain(4005, "Database failure", frame_text)
    assert (result.component, result.message, result.retryable, result.frame_code) == (
        "Database",
        "DB down",
        True,
        4005,
    )
    assert result.incident_id == json.loads(frame_text)["error"]["incident_id"]
    assert result.as_dict()["incidentId"] == result.incident_id
    assert parse_frame(frame_text.encode()) == json.loads(frame_text)["error"]


@pytest.mark.parametrize(
    ("code", "scheme", "component", "retryable"),
    [
        (4007, "private", "Redis", True),
        (4002, "private", "Authentication", False),
        (4005, "legacy", "Database", True),
        (1005, "legacy", None, True),
        (1007, "legacy", "Redis", True),
        (1000, "private", None, False),
        (1006, "private", None, True),
        (None, "private", None, True),
        (4321, "private", None, False),  # an app's own code: the retry table stops (no reconnect loop)
    ],
)
async def test_client_explain_without_frame(
    code: int | None, scheme: Any, component: str | None, retryable: bool
) -> None:
    """Without a frame explain() still names the component from the code, in either scheme."""
    result = explain(code, "", "not a frame", scheme=scheme)
    assert (result.component, result.retryable) == (component, retryable)
