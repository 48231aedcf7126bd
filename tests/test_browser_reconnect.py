"""The browser's reconnecting helper (``connect`` in ws-diag.js) in headless Chromium, against real servers.

The page's own timestamps (``performance.now()``) measure each wait. The shared retry table
(tests/retry_cases.json) is evaluated by the served module too, case by case.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect
from servers import run_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from test_browser import TIMEOUT_MS, browser, open_demo  # noqa: F401 - browser: the module's Chromium fixture

from ws_diag import Component, DiagnosticsMiddleware, DiagSettings, WebSocketComponentError
from ws_diag.health.probes import CallableProbe, ProbeFailed

pytestmark = pytest.mark.asyncio(loop_scope="module")

CASES = json.loads((Path(__file__).parent / "retry_cases.json").read_text("utf-8"))
# A timer may fire up to a millisecond early against performance.now() (coarsened clocks).
CLOCK_SLACK_MS = 2
KINDS = ("hypercorn", "uvicorn-wsproto")

# Installs connect() on the page and logs every event with the page's own timestamp.
START = """async ({ url, options }) => {
    const m = await import("/ws-diag.js");
    window.events = [];
    window.conn = m.connect(url, options);
    for (const type of ["connecting", "open", "close", "diagnosis", "reconnecting", "giveup"]) {
        window.conn.addEventListener(type, (e) => window.events.push({
            type, t: performance.now(), detail: e.detail, last: window.conn.last,
        }));
    }
}"""
FAST = {"minDelayMs": 20, "maxDelayMs": 100, "maxAttempts": 20}


@dataclass
class Backend:
    """A Starlette app behind ws_diag whose database probe the test breaks and fixes."""

    broken: bool = True
    connects: int = 0
    foreign: list[int] = field(default_factory=list)  # /ws?foreign=1 closes with these, one per connection

    def app(self) -> DiagnosticsMiddleware:
        """Page, module and socket: /ws?auth=bad fails authentication; /ws fails while the probe is broken."""

        async def page(request: Request) -> Response:
            return HTMLResponse("<!doctype html><title>reconnect</title><link rel='icon' href='data:,'>")

        async def script(request: Request) -> Response:
            body = files("ws_diag").joinpath("static/ws-diag.js").read_text("utf-8")
            return Response(body, media_type="text/javascript")

        async def chat(websocket: WebSocket) -> None:
            self.connects += 1
            if websocket.query_params.get("auth") == "bad":
                raise WebSocketComponentError.auth_failure("Token expired: sign in again")
            await websocket.accept()
            if websocket.query_params.get("foreign"):
                await websocket.close(self.foreign.pop(0))  # another stack's HTTP status + 4000, no frame
                return
            if self.broken:
                raise TimeoutError("ambiguous: the probes decide")
            await websocket.send_text("hello")
            with contextlib.suppress(Exception):
                while True:
                    await websocket.receive_text()

        async def check() -> None:
            if self.broken:
                raise ProbeFailed("database broken by the test")

        routes = [Route("/", page), Route("/ws-diag.js", script), WebSocketRoute("/ws", chat)]
        settings = DiagSettings(cache_ttl=0.4, retry_after=0.3)
        probe = CallableProbe("database", Component.DATABASE, check)
        return DiagnosticsMiddleware(Starlette(routes=routes), settings=settings, probes=[probe])


@contextlib.asynccontextmanager
async def open_page(chromium: Browser, backend: Backend, kind: str) -> AsyncIterator[tuple[Page, str]]:
    """Serve the backend with ``kind`` and open its page in ``chromium``; yields the page and ws://host:port."""
    async with run_server(backend.app(), kind) as url:
        context = await chromium.new_context()
        try:
            context.set_default_timeout(TIMEOUT_MS)
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto("http://" + url.removeprefix("ws://") + "/", timeout=TIMEOUT_MS)
            yield page, url
            await page.evaluate("window.conn && window.conn.close()")
        finally:
            await context.close()
    assert errors == []


async def events(page: Page) -> list[dict[str, Any]]:
    """The events the page logged so far."""
    logged: list[dict[str, Any]] = await page.evaluate("window.events")
    return logged


@pytest.mark.parametrize("kind", KINDS)
async def test_waits_as_told_then_reconnects_after_recovery(browser: Browser, kind: str) -> None:  # noqa: F811
    """While the probe fails the page waits at least retry_after_ms each time; after recovery it is back, open."""
    backend = Backend()
    async with open_page(browser, backend, kind) as (page, url):
        await page.evaluate(START, {"url": url + "/ws", "options": FAST})
        await page.wait_for_function(
            "window.events.filter((e) => e.type === 'diagnosis').length >= 2", timeout=TIMEOUT_MS
        )
        backend.broken = False
        await page.wait_for_function("window.conn.state === 'open'", timeout=TIMEOUT_MS)
        logged = await events(page)
    kinds = [e["type"] for e in logged]
    assert kinds[-2:] == ["connecting", "open"]
    assert "giveup" not in kinds
    # conn.last describes the current state: the 4005 close while waiting, nothing once open again.
    assert {e["last"]["code"] for e in logged if e["type"] == "reconnecting"} == {4005}
    assert [e["last"] for e in logged if e["type"] == "open"] == [None] * kinds.count("open")
    closes = [i for i, e in enumerate(logged) if e["type"] == "close"]
    assert len(closes) >= 2
    for index in closes:
        explanation = logged[index]["detail"]["explanation"]
        assert (explanation["code"], explanation["component"], explanation["source"]) == (4005, "Database", "probe")
        hint = explanation["retryAfterMs"]
        assert hint >= 300  # the configured floor; the probe's cache window may ask for more
        waiting = next(e for e in logged[index:] if e["type"] == "reconnecting")
        assert waiting["detail"]["delayMs"] >= hint
        again = next(e for e in logged[index:] if e["type"] == "connecting")
        assert again["t"] - logged[index]["t"] >= hint - CLOCK_SLACK_MS
    assert backend.connects == len(closes) + 1


@pytest.mark.parametrize("kind", KINDS)
async def test_stops_on_authentication_failure(browser: Browser, kind: str) -> None:  # noqa: F811
    """An authentication failure is not retried: giveup, state stopped, no timer, one connection."""
    backend = Backend(broken=False)
    async with open_page(browser, backend, kind) as (page, url):
        await page.evaluate(START, {"url": url + "/ws?auth=bad", "options": FAST})
        await page.wait_for_function("window.conn.state === 'stopped'", timeout=TIMEOUT_MS)
        logged = await events(page)
        # Control is back with the app: after signing in it reconnects, to a working URL.
        await page.evaluate("window.conn.reconnect(window.conn.last && location.origin.replace('http', 'ws') + '/ws')")
        await page.wait_for_function("window.conn.state === 'open'", timeout=TIMEOUT_MS)
    assert [e["type"] for e in logged] == ["connecting", "open", "close", "diagnosis", "giveup"]
    giveup = logged[-1]["detail"]
    assert giveup["action"]["action"] == "stop"
    explanation = giveup["explanation"]
    assert (explanation["code"], explanation["component"], explanation["retryable"]) == (4002, "Authentication", False)
    assert explanation["retryAfterMs"] is None
    assert backend.connects == 2  # the failed one and the one after reconnect()


@pytest.mark.parametrize("kind", KINDS)
async def test_other_stacks_http_status_codes(browser: Browser, kind: str) -> None:  # noqa: F811
    """Without a frame, 4500 (Litestar's server error) backs off and reconnects; 4403 (refused) gives up."""
    backend = Backend(broken=False, foreign=[4500, 4403])
    async with open_page(browser, backend, kind) as (page, url):
        await page.evaluate(START, {"url": url + "/ws?foreign=1", "options": FAST})
        await page.wait_for_function("window.conn.state === 'stopped'", timeout=TIMEOUT_MS)
        logged = await events(page)
    decisions = [e for e in logged if e["type"] in ("reconnecting", "giveup")]
    assert [(e["type"], e["detail"]["explanation"]["code"]) for e in decisions] == [
        ("reconnecting", 4500),
        ("giveup", 4403),
    ]
    assert "server error" in decisions[0]["detail"]["action"]["why"]
    assert "refused request" in decisions[1]["detail"]["action"]["why"]
    assert backend.connects == 2


async def test_retry_table_agrees_with_python(browser: Browser) -> None:  # noqa: F811
    """retryAction and retryDelayMs in Chromium give the shared table's answers (Python is tested on the same file)."""
    async with open_page(browser, Backend(broken=False), "hypercorn") as (page, _):
        got = await page.evaluate(
            """async (cases) => {
                const m = await import("/ws-diag.js");
                return {
                    actions: cases.actions.map((c) => {
                        const a = m.retryAction(c.code, c.frame, c.scheme);
                        return [a.action, a.retryAfterMs, a.why.includes(c.why_has ?? "")];
                    }),
                    delays: cases.delays.map((d) => m.retryDelayMs(
                        { action: d.action[0], retryAfterMs: d.action[1] }, d.attempt, d.random,
                        { minDelayMs: d.min_ms, maxDelayMs: d.max_ms })),
                };
            }""",
            CASES,
        )
    assert got["actions"] == [[*case["expect"], True] for case in CASES["actions"]]
    assert got["delays"] == [case["expect_ms"] for case in CASES["delays"]]


async def test_demo_shows_reconnecting_then_reconnected(browser: Browser) -> None:  # noqa: F811
    """The demo's live connection says "reconnecting in N s" while the database is broken, "reconnected" once fixed."""
    async with open_demo(browser) as demo:
        live = demo.page.locator("#live")
        await expect(live).to_have_text("connected", timeout=TIMEOUT_MS)
        await demo.page.get_by_role("button", name="Break database probe").click(timeout=TIMEOUT_MS)
        await expect(live).to_contain_text("reconnecting in", timeout=TIMEOUT_MS)
        await expect(live).to_contain_text("Database failure", timeout=TIMEOUT_MS)
        shown = await live.inner_text()
        seconds = float(shown.removeprefix("reconnecting in ").split(" s")[0])
        assert seconds >= 1.0  # the demo's retry_after default: 1 s
        await demo.page.get_by_role("button", name="Fix database probe").click(timeout=TIMEOUT_MS)
        await expect(live).to_have_text("reconnected", timeout=TIMEOUT_MS)
