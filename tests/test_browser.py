"""The demo page in real headless Chromium: click each button and read what the page shows.

Chromium is Debian's (``apt-get install -y chromium``), driven by Playwright's Python
package through ``executable_path``; nothing is downloaded. One browser serves the whole
module (the module's tests and its fixture share one event loop); each test gets its own
demo server, in that loop, and its own browser context.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect
from playwright.async_api import Error as PlaywrightError
from servers import run_server

from ws_diag import Component, DiagSettings
from ws_diag.client import explain as python_explain
from ws_diag.codes import CodeScheme
from ws_diag.demo import DEMO_SECRET, build_app

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHROMIUM = "/usr/bin/chromium"
# Playwright gives each launch a fresh temporary user data dir of its own and removes it on close.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # we run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000  # every wait on the page is bounded by this
FIELDS = ("code", "component", "message", "suggestions", "retryable", "incident")
INCIDENT_ID = re.compile(r"[0-9a-f]{16}")


@dataclass
class Demo:
    """The demo page open in Chromium, and what the page said on its console."""

    page: Page
    base: str  # http://127.0.0.1:PORT
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        self.console.append(message.text)
        # Chromium logs every non-2xx fetch; the health report's 503 is expected.
        expected = message.location.get("url", "").endswith("/health") and "status of 503" in message.text
        if message.type == "error" and not expected:
            self.errors.append(f"console error: {message.text} ({message.location})")

    async def press(self, label: str) -> dict[str, str]:
        """Click a connection button, wait until the socket has closed, return the result table as shown."""
        await self.page.get_by_role("button", name=label).click(timeout=TIMEOUT_MS)
        await expect(self.page.locator("body")).to_have_attribute(
            "data-closed", re.compile(r"^\d+$"), timeout=TIMEOUT_MS
        )
        return {name: await self.page.locator(f"#r-{name}").inner_text() for name in FIELDS}

    async def frames(self) -> list[dict[str, Any]]:
        """The messages the page logged for the last connection, parsed."""
        return [json.loads(line) for line in (await self.page.locator("#log").inner_text()).splitlines() if line]

    async def health(self, status: int) -> dict[str, Any]:
        """Wait until the health panel shows HTTP ``status``; return the report it shows."""
        panel = self.page.locator("#health")
        await expect(panel).to_contain_text(f"HTTP {status}", timeout=TIMEOUT_MS)
        head, _, body = (await panel.inner_text()).partition("\n")
        assert head == f"HTTP {status}"
        report: dict[str, Any] = json.loads(body)
        return report

    async def explain(self, cases: Sequence[tuple[int, str, str]]) -> list[dict[str, Any]]:
        """``explain({code, reason}, null, scheme)`` from the served module, evaluated in the page."""
        results: list[dict[str, Any]] = await self.page.evaluate(
            """async (cases) => {
                const m = await import("/ws-diag.js");
                return cases.map(([code, reason, scheme]) => m.explain({ code, reason }, null, scheme));
            }""",
            list(cases),
        )
        return results


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, for the whole module; fails (never skips) when it is missing."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"the browser tests need Debian's Chromium at {CHROMIUM}: run `apt-get install -y chromium` "
            "(scripts/test does so when run as root)",
            pytrace=False,
        )
    async with async_playwright() as playwright:
        try:
            chromium = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=30_000
            )
        except PlaywrightError as exc:
            pytest.fail(f"{CHROMIUM} did not start (is `apt-get install -y chromium` complete?): {exc}", pytrace=False)
        try:
            yield chromium
        finally:
            await chromium.close()


@contextlib.asynccontextmanager
async def open_demo(browser: Browser, settings: DiagSettings | None = None) -> AsyncIterator[Demo]:
    """Serve ``build_app(settings)`` with hypercorn in this loop and open its page in a fresh context.

    On a clean exit, the page must have logged no console error and raised no exception.
    """
    async with run_server(build_app(settings), "hypercorn") as url:
        context = await browser.new_context()
        try:
            context.set_default_timeout(TIMEOUT_MS)
            page = await context.new_page()
            demo = Demo(page, "http://" + url.removeprefix("ws://"))
            page.on("console", demo.on_console)
            page.on("pageerror", lambda exc: demo.errors.append(f"page error: {exc}"))
            await page.goto(demo.base + "/", timeout=TIMEOUT_MS)
            await demo.health(200)  # the page's module has run: the buttons work
            yield demo
        finally:
            await context.close()  # before the server stops, so no request is cut off
    assert demo.errors == []


@pytest_asyncio.fixture(loop_scope="module")
async def demo(browser: Browser) -> AsyncIterator[Demo]:
    """The demo app with its default settings, open in Chromium."""
    async with open_demo(browser) as opened:
        yield opened


async def test_healthy_echo_closes_normally(demo: Demo) -> None:
    """A healthy session echoes, closes with 1000 and names no component."""
    shown = await demo.press("Healthy echo")
    assert shown == {
        "code": "1000",
        "component": "-",
        "message": "done",
        "suggestions": "-",
        "retryable": "false",
        "incident": "-",
    }
    assert [m["type"] for m in await demo.frames()] == ["hello", "echo"]


async def test_database_error_is_diagnosed(demo: Demo, caplog: pytest.LogCaptureFixture) -> None:
    """Database error: 4005 Database, the app's message and suggestions, retryable, the server log's incident id."""
    shown = await demo.press("Database error")
    incident = shown.pop("incident")
    assert shown == {
        "code": "4005",
        "component": "Database",
        "message": "Database session factory unavailable",
        "suggestions": "; ".join(Component.DATABASE.suggestions),
        "retryable": "true",
    }
    assert INCIDENT_ID.fullmatch(incident), incident
    logged = [getattr(r, "incident_id", None) for r in caplog.records if r.getMessage().startswith("diagnosis:")]
    assert logged == [incident]
    frame = (await demo.frames())[-1]
    assert (frame["type"], frame["error"]["code"], frame["error"]["incident_id"]) == ("error", 4005, incident)


async def test_auth_failure_before_accept(demo: Demo) -> None:
    """An auth failure before accept still reaches the page: 4002 Authentication, not retryable."""
    shown = await demo.press("Auth failure before accept")
    assert (shown["code"], shown["component"], shown["message"], shown["retryable"]) == (
        "4002",
        "Authentication",
        "Token expired: sign in again",
        "false",
    )
    assert INCIDENT_ID.fullmatch(shown["incident"]), shown["incident"]


async def test_unhandled_exception_is_generic_and_keeps_the_secret(demo: Demo) -> None:
    """An unhandled exception reads 1011 Generic Internal; its text (with the demo secret) is nowhere on the page."""
    shown = await demo.press("Unhandled exception")
    assert (shown["code"], shown["component"], shown["message"], shown["retryable"]) == (
        "1011",
        "Generic Internal",
        Component.GENERIC.description,
        "true",
    )
    assert INCIDENT_ID.fullmatch(shown["incident"]), shown["incident"]
    page = await demo.page.content()
    assert DEMO_SECRET not in page
    assert "not-a-real-password" not in page
    assert not [line for line in demo.console if "not-a-real-password" in line]


async def test_ambiguous_timeout_follows_the_database_probe(demo: Demo) -> None:
    """Ambiguous timeout: 1011 while healthy; 4005 Database once the page breaks the database probe (health 503)."""
    shown = await demo.press("Ambiguous timeout")
    assert (shown["code"], shown["component"]) == ("1011", "Generic Internal")

    await demo.page.get_by_role("button", name="Break database probe").click(timeout=TIMEOUT_MS)
    report = await demo.health(503)
    assert report["failed_components"] == ["database"]
    assert report["component_details"]["database"]["status"] != "healthy"

    shown = await demo.press("Ambiguous timeout")
    assert (shown["code"], shown["component"], shown["message"], shown["retryable"]) == (
        "4005",
        "Database",
        Component.DATABASE.description,
        "true",
    )

    await demo.page.get_by_role("button", name="Fix database probe").click(timeout=TIMEOUT_MS)
    assert (await demo.health(200))["failed_components"] == []
    shown = await demo.press("Ambiguous timeout")
    assert (shown["code"], shown["component"]) == ("1011", "Generic Internal")


async def test_too_long_close_reason_arrives(demo: Demo) -> None:
    """The app's 4000 with a 400-byte reason arrives, cut to fit, instead of a dropped connection (1006)."""
    shown = await demo.press("Too-long close reason")
    assert shown["code"] == "4000"
    reason = shown["message"]
    assert set(reason) == {"é"}
    assert 120 <= len(reason.encode()) <= 123


async def test_legacy_scheme_database_error(browser: Browser) -> None:
    """With the legacy scheme the frame says 1005, the close arrives as 4005, and the page still reads Database."""
    settings = DiagSettings(code_scheme="legacy", health_path="/health", cache_ttl=0.5)
    async with open_demo(browser, settings) as legacy:
        shown = await legacy.press("Database error")
        assert (shown["code"], shown["component"], shown["retryable"]) == ("4005", "Database", "true")
        assert (await legacy.frames())[-1]["error"]["code"] == 1005


async def test_explain_without_a_frame(demo: Demo) -> None:
    """explain() with no frame: legacy wire codes name components; codes no server sends (1005, 1006) never do."""
    cases = [(4005, "", "legacy"), (1007, "", "legacy"), (1002, "", "legacy"), (1005, "", "legacy")]
    cases += [(1006, "", "private"), (1006, "", "legacy"), (4007, "", "private"), (1000, "", "private")]
    got = {
        (code, scheme): (r["component"], r["retryable"])
        for (code, _, scheme), r in zip(cases, await demo.explain(cases), strict=True)
    }
    assert got == {
        (4005, "legacy"): ("Database", True),
        (1007, "legacy"): ("Redis", True),
        (1002, "legacy"): ("Authentication", False),
        (1005, "legacy"): (None, True),  # a close frame without a code: nothing says Database
        (1006, "private"): (None, True),
        (1006, "legacy"): (None, True),
        (4007, "private"): ("Redis", True),
        (1000, "private"): (None, False),
    }
    (bare,) = await demo.explain([(1006, "", "private")])
    assert bare == {
        "code": 1006,
        "component": None,
        "message": "Connection lost without a close frame",
        "suggestions": [],
        "retryable": True,
        "incidentId": None,
        "frameCode": None,
        "retryAfterMs": None,
        "source": None,
    }
    named = await demo.page.evaluate(
        "import('/ws-diag.js').then(m => [m.componentForCode(4005, 'legacy'), m.componentForCode(1005, 'legacy'),"
        " m.componentForFrameCode(1005, 'legacy'), m.componentForCode(1009, 'private')])"
    )
    # On the wire legacy Database is 4005; 1005 only ever appears inside the frame; private 1009 is no component.
    assert named == ["Database", None, "Database", None]


async def test_explain_agrees_with_the_python_helper(demo: Demo) -> None:
    """Without a frame, the browser helper and ws_diag.client agree on component and retryable for every code."""
    schemes: tuple[CodeScheme, ...] = ("private", "legacy")
    cases = [(code, "", scheme) for scheme in schemes for code in [*range(1000, 1016), *range(3999, 4012)]]
    in_browser = [(r["component"], r["retryable"]) for r in await demo.explain(cases)]
    in_python = [(e.component, e.retryable) for e in (python_explain(c, r, None, scheme=s) for c, r, s in cases)]
    assert dict(zip(cases, in_browser, strict=True)) == dict(zip(cases, in_python, strict=True))
