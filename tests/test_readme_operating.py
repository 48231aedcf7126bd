"""The README's "Operating ws_diag" snippets run as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk

from ws_diag import DiagnosticsMiddleware
from ws_diag.integrations.correlation import CorrelationIdListener
from ws_diag.integrations.opentelemetry import OpenTelemetryListener
from ws_diag.integrations.sentry import SentryListener

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = README.read_text("utf-8").split("\n## Operating ws_diag\n", 1)[1].split("\n## ", 1)[0]
SUBSECTIONS = {title: body for title, _, body in (part.partition("\n") for part in SECTION.split("\n### ")[1:])}
BLOCKS = {
    name: re.findall(r"```python\n(.*?)```", SUBSECTIONS[title], re.DOTALL)[0]
    for name, title in (("traces", "Traces"), ("sentry", "Sentry"), ("correlation", "Correlation ids"))
}
LISTENERS = {"traces": OpenTelemetryListener, "sentry": SentryListener, "correlation": CorrelationIdListener}


def ws_diag_layer(app: Any) -> DiagnosticsMiddleware:
    """The DiagnosticsMiddleware in a stack of middleware (each keeps the next as ``app``)."""
    while not isinstance(app, DiagnosticsMiddleware):
        app = app.app
    return app


@pytest.mark.parametrize("name", list(BLOCKS))
def test_operating_snippet_builds_the_listener(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each snippet builds an app whose ws_diag layer has the section's listener."""
    # sentry_sdk.init with its default integrations patches the standard library for the
    # rest of the session: record the call instead.
    inits: list[dict[str, Any]] = []
    monkeypatch.setattr(sentry_sdk, "init", lambda **options: inits.append(options))
    namespace: dict[str, Any] = {}
    exec(compile(BLOCKS[name], f"README.md:{name}", "exec"), namespace)  # noqa: S102 - the README's own code
    assert len(inits) == (name == "sentry")
    layer = ws_diag_layer(namespace["app"])
    assert any(isinstance(listener, LISTENERS[name]) for listener in layer.lifecycle.listeners)
