"""The README's quickstart code runs as written and does what the README says."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from servers import SERVER_KINDS, run_server
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text("utf-8"), flags=re.DOTALL)
# The frame the README shows right after the quickstart snippets.
SHOWN_FRAME = re.search(r"The client now receives\n\n```json\n(.*?)```", README.read_text("utf-8"), re.DOTALL)


def quickstart_apps() -> dict[str, Any]:
    """Run the first two Python blocks (raw ASGI, then FastAPI's add_middleware) and return the app each defines."""
    apps = {}
    for name, block in zip(("raw", "fastapi"), BLOCKS[:2], strict=True):
        namespace: dict[str, Any] = {}  # each block stands alone, as a reader would copy it
        exec(compile(block, f"README.md:{name}", "exec"), namespace)  # noqa: S102 - the README's own code
        apps[name] = namespace["app"]
    return apps


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", SERVER_KINDS)
@pytest.mark.parametrize("which", ["raw", "fastapi"])
async def test_quickstart_gives_4005_and_the_frame(which: str, kind: str) -> None:
    """Following the README, the client sees the Database frame and close code 4005 on every server."""
    app = quickstart_apps()[which]
    path = "" if which == "raw" else "/ws"
    async with run_server(app, kind) as url, connect(url + path, open_timeout=10) as ws:
        await ws.send("hello")
        frame = json.loads(await ws.recv())
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert ws.close_code == 4005
    assert frame["error"]["component"] == "Database"
    assert frame["error"]["message"] == "Database session factory unavailable"
    assert ws.close_reason == f"Database failure (incident {frame['error']['incident_id']})"
    assert_is_the_shown_frame(frame)


def assert_is_the_shown_frame(frame: dict[str, Any]) -> None:
    """``frame`` is the README's example: every field shown is sent, with the value shown (bar time and id)."""
    assert SHOWN_FRAME is not None, "README: no JSON block after 'The client now receives'"
    shown = json.loads(SHOWN_FRAME.group(1))
    assert shown["type"] == frame["type"]
    assert set(shown["error"]) <= set(frame["error"]), "the README shows a field the frame does not have"
    varying = {"timestamp", "incident_id"}
    for field, value in shown["error"].items():
        if field not in varying:
            assert frame["error"][field] == value, f"README shows {field}={value!r}"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", frame["error"]["timestamp"])
    assert re.fullmatch(r"[0-9a-f]{16}", frame["error"]["incident_id"])
