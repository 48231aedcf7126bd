"""The demo page in real headless Chromium: click each button and read what the page shows.

Chromium is Debian's (``apt-get install -y chromium``), driven by Playwright's Python
package through ``executable_path``; nothing is downloaded. One browser serves the whole
module (the module's tests and its fixture share one event loop); each test gets its own
demo server, in that loop, and its own browser context.

Assertions read the page's visible text (``inner_text``), check that no element spills out
of its column or the viewport, and that the console stayed clean. With
``--screenshots DIR`` each state the tests reach is also saved as ``DIR/<state>.png``
(``docs/screenshots`` in the repository); without it nothing is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, ConsoleMessage, Page, ViewportSize, async_playwright, expect
from playwright.async_api import Error as PlaywrightError
from servers import run_server

from ws_diag import Component, DiagSettings
from ws_diag.client import explain as python_explain
from ws_diag.demo import DEMO_SECRET, build_app
from ws_diag.wire.schemes import CodeScheme

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
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
# The close card's fields, by element id suffix (#r-<name>).
FIELDS = ("code", "component", "message", "suggestions", "retryable", "retry-after", "incident", "source")
INCIDENT_ID = re.compile(r"[0-9a-f]{16}")
CLOCK = r"\d\d:\d\d:\d\d"

# Every element of the page that is laid out must stay inside its box (a section of the page)
# and the viewport; a block whose content is wider than itself (text that does not wrap)
# is reported too. Returns one line per offender.
OVERFLOW = """() => {
    const bad = [];
    const root = document.documentElement;
    const width = root.clientWidth;
    if (root.scrollWidth > width + 1) bad.push(`the page scrolls sideways: ${root.scrollWidth} > ${width}`);
    const name = (n) => n.id ? `#${n.id}` : `${n.tagName.toLowerCase()}.${n.className || ""}` +
        ` "${(n.textContent || "").trim().slice(0, 40)}"`;
    for (const box of document.querySelectorAll("header, main > section")) {
        const outer = box.getBoundingClientRect();
        if (outer.left < -1 || outer.right > width + 1) bad.push(`${name(box)} leaves the viewport`);
        for (const node of box.querySelectorAll("*")) {
            const r = node.getBoundingClientRect();
            if (r.width === 0 && r.height === 0) continue;  // not rendered (closed <details>, hidden)
            if (r.left < outer.left - 1 || r.right > outer.right + 1) {
                bad.push(`${name(node)} [${r.left}, ${r.right}] leaves ${name(box)} [${outer.left}, ${outer.right}]`);
            }
            if (getComputedStyle(node).display !== "inline" && node.scrollWidth > node.clientWidth + 1) {
                bad.push(`${name(node)}: content ${node.scrollWidth} px wide in ${node.clientWidth} px`);
            }
        }
    }
    return bad;
}"""


@dataclass
class Demo:
    """The demo page open in Chromium, and what the page said on its console."""

    page: Page
    base: str  # http://127.0.0.1:PORT
    shots: Path | None = None  # where --screenshots asked for PNGs
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        self.console.append(message.text)
        # Chromium logs every non-2xx fetch; the health report's 503 is expected.
        expected = message.location.get("url", "").endswith("/health") and "status of 503" in message.text
        if message.type == "error" and not expected:
            self.errors.append(f"console error: {message.text} ({message.location})")

    async def press(self, label: str) -> dict[str, str]:
        """Click a scenario button, wait until its socket has closed, return the close card's fields as shown."""
        await self.page.get_by_role("button", name=label).click(timeout=TIMEOUT_MS)
        await expect(self.page.locator("body")).to_have_attribute(
            "data-closed", re.compile(r"^\d+$"), timeout=TIMEOUT_MS
        )
        return {name: await self.page.locator(f"#r-{name}").inner_text() for name in FIELDS}

    async def frames(self) -> list[dict[str, Any]]:
        """The messages of the last connection (the folded "Messages received" block), parsed."""
        text = await self.page.locator("#log").text_content() or ""
        return [json.loads(line) for line in text.splitlines() if line]

    async def health(self, http: int) -> dict[str, tuple[str, str]]:
        """Wait until the health panel says HTTP ``http``; return {probe: (status, latency)} as shown."""
        await expect(self.page.locator("#health-state")).to_contain_text(f"HTTP {http}", timeout=TIMEOUT_MS)
        shown = {}
        for card in await self.page.locator("#health-cards .comp").all():
            probe = await card.get_attribute("data-probe")
            assert probe is not None
            status = await card.locator(".status").inner_text()
            shown[probe] = (status, await card.locator(".latency").inner_text())
        return shown

    async def report(self) -> dict[str, Any]:
        """The raw health report behind the panel (folded away on the page)."""
        report: dict[str, Any] = json.loads(await self.page.locator("#health-raw").text_content() or "")
        return report

    async def timeline(self) -> list[list[str]]:
        """The timeline's rows as shown, newest first: [time, what, component, code, incident id]."""
        rows = []
        for row in await self.page.locator("#timeline-rows tr").all():
            rows.append([cell.strip() for cell in await row.locator("td").all_inner_texts()])
        return rows

    async def fits(self) -> None:
        """Nothing overflows its column or the viewport."""
        offenders: list[str] = await self.page.evaluate(OVERFLOW)
        assert offenders == [], "\n".join(offenders)

    async def snap(self, state: str) -> None:
        """Check the layout, then save the whole page as ``<state>.png`` when --screenshots asked for it."""
        await self.fits()
        if self.shots is not None:
            await self.page.evaluate("window.scrollTo(0, 0)")  # the close card is sticky: show it where it starts
            await self.page.screenshot(path=self.shots / f"{state}.png", full_page=True, animations="disabled")

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


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Path | None:
    """The --screenshots directory (created), or None: by default the tests write nothing."""
    target = request.config.getoption("--screenshots")
    if not target:
        return None
    path = Path(target)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.asynccontextmanager
async def open_demo(
    browser: Browser,
    settings: DiagSettings | None = None,
    *,
    shots: Path | None = None,
    viewport: ViewportSize = DESKTOP,
) -> AsyncIterator[Demo]:
    """Serve ``build_app(settings)`` with hypercorn in this loop and open its page in a fresh context.

    On a clean exit, the page must have logged no console error and raised no exception.
    """
    async with run_server(build_app(settings), "hypercorn") as url:
        context = await browser.new_context(viewport=viewport)
        try:
            context.set_default_timeout(TIMEOUT_MS)
            page = await context.new_page()
            demo = Demo(page, "http://" + url.removeprefix("ws://"), shots)
            page.on("console", demo.on_console)
            page.on("pageerror", lambda exc: demo.errors.append(f"page error: {exc}"))
            await page.goto(demo.base + "/", timeout=TIMEOUT_MS)
            await demo.health(200)  # the page's module has run: the buttons work
            await expect(page.locator("#live")).to_have_text("connected", timeout=TIMEOUT_MS)
            yield demo
        finally:
            await context.close()  # before the server stops, so no request is cut off
    assert demo.errors == []


@pytest_asyncio.fixture(loop_scope="module")
async def demo(browser: Browser, shots: Path | None) -> AsyncIterator[Demo]:
    """The demo app with its default settings, open in Chromium."""
    async with open_demo(browser, shots=shots) as opened:
        yield opened


async def test_first_view_explains_itself(demo: Demo) -> None:
    """Before a click: each scenario says what it shows and what to notice; health up; live connected; no incidents."""
    for scenario in await demo.page.locator(".scenario").all():
        shown = await scenario.inner_text()
        label = await scenario.get_by_role("button").inner_text()
        assert shown.startswith(label), shown
        assert "Notice:" in shown, shown
        described = await scenario.get_by_role("button").get_attribute("aria-describedby")
        assert described is not None
        assert len(described.split()) == 2
        assert len(shown) > len(label) + 80, shown  # a real explanation, not a caption
    assert await demo.page.locator(".scenario").count() == 6
    health = await demo.health(200)
    assert {probe: status for probe, (status, _) in health.items()} == {"database": "healthy", "redis": "healthy"}
    assert all(re.fullmatch(r"\d+\.\d+ ms", latency) for _, latency in health.values()), health
    panel = await demo.page.locator("#health").inner_text()
    assert re.search(rf"last check {CLOCK}", panel), panel
    assert "required" in panel
    assert "optional" in panel
    assert '"component_details"' not in panel  # the raw report is folded away
    assert "Nothing yet" in await demo.page.locator("#card").inner_text()
    assert "No incidents yet" in await demo.page.locator("#timeline-box").inner_text()
    assert await demo.page.locator("#live").inner_text() == "connected"
    await demo.snap("01-first-view")


async def test_health_panel_follows_changes_made_elsewhere(demo: Demo) -> None:
    """The panel polls /health by itself: a probe broken elsewhere shows failed without a click, then healthy."""
    checked = demo.page.locator("#health-checked")
    first = await checked.inner_text()
    await expect(checked).not_to_have_text(first, timeout=TIMEOUT_MS)  # a newer check, shown unprompted
    request = demo.page.context.request
    assert (await request.post(demo.base + "/break/database")).ok
    health = await demo.health(503)
    assert health["database"][0] == "failed"
    await expect(demo.page.locator("#live")).to_contain_text("reconnecting in", timeout=TIMEOUT_MS)
    await expect(demo.page.get_by_role("button", name="Fix database probe")).to_be_enabled(timeout=TIMEOUT_MS)
    await expect(demo.page.get_by_role("button", name="Break database probe")).to_be_disabled(timeout=TIMEOUT_MS)
    assert (await request.delete(demo.base + "/break/database")).ok
    health = await demo.health(200)
    assert health["database"][0] == "healthy"
    await expect(demo.page.get_by_role("button", name="Break database probe")).to_be_enabled(timeout=TIMEOUT_MS)
    await expect(demo.page.locator("#live")).to_have_text("reconnected", timeout=TIMEOUT_MS)


async def test_healthy_echo_closes_normally(demo: Demo) -> None:
    """A healthy session echoes, closes with 1000 and names no component; the timeline stays empty."""
    shown = await demo.press("Healthy echo")
    assert shown == {
        "code": "1000",
        "component": "closed normally",
        "message": "done",
        "suggestions": "none",
        "retryable": "no",
        "retry-after": "-",
        "incident": "-",
        "source": "no frame: a normal close",
    }
    assert [m["type"] for m in await demo.frames()] == ["hello", "echo"]
    assert await demo.timeline() == []
    assert "Messages received (2)" in await demo.page.locator("#card").inner_text()
    await demo.snap("02-healthy-echo")


async def test_database_error_is_diagnosed(demo: Demo, caplog: pytest.LogCaptureFixture) -> None:
    """Database error: a card with 4005 Database, the app's message, suggestions, retry-after, source, incident id."""
    shown = await demo.press("Database error")
    incident = shown.pop("incident")
    assert shown == {
        "code": "4005",
        "component": "Database",
        "message": "Database session factory unavailable",
        "suggestions": "\n".join(Component.DATABASE.suggestions),
        "retryable": "yes",
        "retry-after": "1000 ms (a client waits at least this long before reconnecting)",
        "source": "app: the app named the component (it raised a WebSocketComponentError)",
    }
    assert INCIDENT_ID.fullmatch(incident), incident
    logged = [getattr(r, "incident_id", None) for r in caplog.records if r.getMessage().startswith("diagnosis:")]
    assert logged == [incident]
    card = demo.page.locator("#card")
    assert '"incident_id"' not in await card.inner_text()  # the raw frame is folded away
    [row] = await demo.timeline()
    assert re.fullmatch(CLOCK, row[0]), row
    assert row[1:] == ["Database error (app names it)", "Database", "4005", incident]
    await demo.snap("03-database-error")

    await demo.page.get_by_text("Raw frame JSON").click(timeout=TIMEOUT_MS)
    raw = await demo.page.locator("#raw").inner_text()
    frame = json.loads(raw)
    assert (frame["type"], frame["error"]["code"], frame["error"]["incident_id"]) == ("error", 4005, incident)
    assert '  "type": "error",\n' in raw  # pretty printed, one field a line
    assert frame == (await demo.frames())[-1]
    await demo.snap("04-database-error-raw-frame")


async def test_auth_failure_before_accept(demo: Demo) -> None:
    """An auth failure before accept still reaches the page: 4002 Authentication, not retryable, no retry-after."""
    shown = await demo.press("Auth failure before accept")
    assert (shown["code"], shown["component"], shown["message"], shown["retryable"], shown["retry-after"]) == (
        "4002",
        "Authentication",
        "Token expired: sign in again",
        "no",
        "-",
    )
    assert shown["source"].startswith("app: ")
    assert INCIDENT_ID.fullmatch(shown["incident"]), shown["incident"]
    await demo.snap("05-auth-failure")


async def test_unhandled_exception_is_generic_and_keeps_the_secret(demo: Demo) -> None:
    """An unhandled exception reads 1011 Generic Internal; its text (with the demo secret) is nowhere on the page."""
    shown = await demo.press("Unhandled exception")
    assert (shown["code"], shown["component"], shown["message"], shown["retryable"]) == (
        "1011",
        "Generic Internal",
        Component.GENERIC.description,
        "yes",
    )
    assert shown["source"].startswith("default: ")
    assert INCIDENT_ID.fullmatch(shown["incident"]), shown["incident"]
    page = await demo.page.content()
    assert DEMO_SECRET not in page
    assert "not-a-real-password" not in page
    assert not [line for line in demo.console if "not-a-real-password" in line]
    await demo.snap("06-unhandled-exception")


async def test_ambiguous_timeout_follows_the_database_probe(demo: Demo) -> None:
    """Ambiguous timeout: 1011 while healthy; database probe broken: health failed, live reconnecting, 4005 by probe."""
    shown = await demo.press("Ambiguous timeout")
    assert (shown["code"], shown["component"]) == ("1011", "Generic Internal")
    assert shown["source"].startswith("default: ")

    await demo.page.get_by_role("button", name="Break database probe").click(timeout=TIMEOUT_MS)
    health = await demo.health(503)
    assert health["database"][0] == "failed"
    assert health["redis"][0] == "healthy"
    assert "HTTP 503 \u00b7 1 failed" in await demo.page.locator("#health-state").inner_text()
    assert "failures the app cannot name now read 4005" in await demo.page.locator("#health-cards").inner_text()
    assert (await demo.report())["failed_components"] == ["database"]
    await expect(demo.page.locator("#live")).to_contain_text("reconnecting in", timeout=TIMEOUT_MS)
    assert await demo.page.get_by_role("button", name="Break database probe").is_disabled()
    await demo.snap("07-database-probe-broken")

    shown = await demo.press("Ambiguous timeout")
    assert (shown["code"], shown["component"], shown["message"], shown["retryable"]) == (
        "4005",
        "Database",
        Component.DATABASE.description,
        "yes",
    )
    assert shown["source"].startswith("probe: a failing health probe; the error itself named no component")
    timeline = await demo.timeline()
    whats = [row[1] for row in timeline]
    assert whats[0] == "Ambiguous timeout (probes decide)"
    assert timeline[0][2:4] == ["Database", "4005"]
    assert "you broke the database probe" in whats
    assert any(row[1].startswith("live connection") and row[2:4] == ["Database", "4005"] for row in timeline)
    assert whats[-1] == "Ambiguous timeout (probes decide)"  # the first press, 1011
    assert timeline[-1][2:4] == ["Generic Internal", "1011"]
    await demo.snap("08-ambiguous-timeout-blames-database")

    await demo.page.get_by_role("button", name="Fix database probe").click(timeout=TIMEOUT_MS)
    health = await demo.health(200)
    assert health["database"][0] == "healthy"
    await expect(demo.page.locator("#live")).to_have_text("reconnected", timeout=TIMEOUT_MS)
    assert "you fixed the database probe" in [row[1] for row in await demo.timeline()]
    shown = await demo.press("Ambiguous timeout")
    assert (shown["code"], shown["component"]) == ("1011", "Generic Internal")
    await demo.snap("09-database-probe-fixed")


async def test_redis_probe_broken_is_degraded(demo: Demo) -> None:
    """The optional redis probe broken: shown degraded, health stays HTTP 200, the live connection reconnects."""
    await demo.page.get_by_role("button", name="Break redis probe").click(timeout=TIMEOUT_MS)
    await expect(demo.page.locator("#health-state")).to_contain_text("1 degraded", timeout=TIMEOUT_MS)
    health = await demo.health(200)
    assert (health["database"][0], health["redis"][0]) == ("healthy", "degraded")
    await expect(demo.page.locator("#live")).to_contain_text("Redis failure", timeout=TIMEOUT_MS)
    await demo.snap("10-redis-probe-degraded")
    await demo.page.get_by_role("button", name="Fix redis probe").click(timeout=TIMEOUT_MS)
    await expect(demo.page.locator("#health-state")).to_have_text("HTTP 200 \u00b7 all healthy", timeout=TIMEOUT_MS)
    await expect(demo.page.locator("#live")).to_have_text("reconnected", timeout=TIMEOUT_MS)


async def test_too_long_close_reason_arrives_and_wraps(demo: Demo) -> None:
    """The app's 4000 with a 400-byte reason arrives cut to fit (not 1006) and wraps inside the card."""
    shown = await demo.press("Too-long close reason")
    assert shown["code"] == "4000"
    assert shown["source"] == "no frame: read from the close code and reason alone"
    reason = shown["message"]
    assert set(reason) == {"é"}
    assert 120 <= len(reason.encode()) <= 123
    size = await demo.page.locator("#r-reason-size").inner_text()
    assert size == f"The close reason itself: {len(reason.encode())} UTF-8 bytes (a close frame holds at most 123)."
    message = await demo.page.locator("#r-message").bounding_box()
    card = await demo.page.locator("#card").bounding_box()
    assert message is not None
    assert card is not None
    assert card["x"] < message["x"] < message["x"] + message["width"] < card["x"] + card["width"]
    await demo.snap("11-too-long-close-reason")


async def test_phone_width_has_no_overflow(browser: Browser, shots: Path | None) -> None:
    """On a 390 px wide screen, the page with a long close reason and the database broken stays inside its columns."""
    async with open_demo(browser, shots=shots, viewport=PHONE) as phone:
        await phone.fits()
        await phone.page.get_by_role("button", name="Break database probe").click(timeout=TIMEOUT_MS)
        await phone.health(503)
        await expect(phone.page.locator("#live")).to_contain_text("reconnecting in", timeout=TIMEOUT_MS)
        shown = await phone.press("Too-long close reason")
        assert shown["code"] == "4000"
        await phone.press("Ambiguous timeout")
        await phone.page.get_by_text("Raw frame JSON").click(timeout=TIMEOUT_MS)
        await phone.snap("12-phone")
        await phone.page.get_by_role("button", name="Fix database probe").click(timeout=TIMEOUT_MS)
        await phone.health(200)


async def test_health_panel_says_when_the_endpoint_needs_a_token(browser: Browser) -> None:
    """With a health token, the panel says the endpoint needs one rather than show an empty report as all healthy."""
    settings = DiagSettings(health_path="/health", cache_ttl=0.5, health_token="demo-token")  # noqa: S106 - a test token
    async with run_server(build_app(settings), "hypercorn") as url:
        context = await browser.new_context(viewport=DESKTOP)
        try:
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto("http://" + url.removeprefix("ws://") + "/", timeout=TIMEOUT_MS)
            said = "HTTP 401: no report (the health endpoint needs a token)"
            await expect(page.locator("#health-state")).to_have_text(said, timeout=TIMEOUT_MS)
            assert "all healthy" not in await page.locator("#health").inner_text()
            assert "demo-token" not in await page.content()
        finally:
            await context.close()
    assert errors == []


async def test_legacy_scheme_database_error(browser: Browser) -> None:
    """With the legacy scheme the frame says 1005, the close arrives as 4005, and the page still reads Database."""
    settings = DiagSettings(code_scheme="legacy", health_path="/health", cache_ttl=0.5)
    async with open_demo(browser, settings) as legacy:
        shown = await legacy.press("Database error")
        assert (shown["code"], shown["component"], shown["retryable"]) == ("4005", "Database", "yes")
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
