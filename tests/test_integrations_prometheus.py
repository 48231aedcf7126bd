"""Prometheus metrics: zero from start-up, the session denominator, fresh component state, separate labels.

The end-to-end test serves an app under real servers with prometheus_client's
ASGI exporter mounted next to it, scrapes it over HTTP and parses the Prometheus
text format, as a Prometheus server would.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import CONNECT, drive, failing, ws_scope
from prometheus_client import REGISTRY, CollectorRegistry, make_asgi_app
from prometheus_client.parser import text_string_to_metric_families
from servers import SERVER_KINDS, free_port, run_server
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect

from clients import CLIENT_TIMEOUT, talk
from ws_diag import Component, CustomComponent, DiagnosticsMiddleware, DiagSettings
from ws_diag.health.probes import CallableProbe, ProbeFailed
from ws_diag.integrations.prometheus import CLOSED_OUTCOMES, DIAGNOSIS_SOURCES, PrometheusMetrics
from ws_diag.integrations.prometheus import PrometheusMetrics as ReExported

Labels = frozenset[tuple[str, str]]


def parse(text: str) -> dict[tuple[str, Labels], float]:
    """Prometheus text format -> {(sample name, labels): value}."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, Labels], float], name: str, **labels: str) -> float | None:
    """One sample's value, ``None`` when the series is not exported."""
    return samples.get((name, frozenset(labels.items())))


def names_of(samples: dict[tuple[str, Labels], float]) -> Iterator[tuple[str, dict[str, str]]]:
    """Every (name, labels) exported."""
    for name, labels in samples:
        yield name, dict(labels)


def registry_samples(registry: CollectorRegistry) -> dict[tuple[str, Labels], float]:
    """The registry's samples, as a scrape would show them."""
    return {(s.name, frozenset(s.labels.items())): s.value for m in registry.collect() for s in m.samples}


def test_series_exist_at_zero_from_start_up() -> None:
    """Before any session: opened, every outcome and every component/source/delivered exist at 0."""
    registry = CollectorRegistry()
    billing = CustomComponent("billing", "Billing", 4100)
    PrometheusMetrics(registry=registry, components=[billing])
    samples = registry_samples(registry)
    assert value(samples, "ws_diag_sessions_opened_total") == 0
    for outcome in ("normal", "diagnosed", "client_gone", "restart", "error"):
        assert value(samples, "ws_diag_sessions_closed_total", outcome=outcome) == 0
    assert set(CLOSED_OUTCOMES) == {"normal", "diagnosed", "client_gone", "restart", "error"}
    keys = [*(c.key for c in Component), "billing"]
    for key in keys:
        for source in DIAGNOSIS_SOURCES:
            for delivered in ("true", "false"):
                labels = {"component": key, "source": source, "delivered": delivered}
                assert value(samples, "ws_diag_diagnoses_total", **labels) == 0, labels
    diagnoses = [labels for name, labels in names_of(samples) if name == "ws_diag_diagnoses_total"]
    assert len(diagnoses) == len(keys) * len(DIAGNOSIS_SOURCES) * 2  # nothing else: bounded


def test_second_instance_on_the_default_registry_shares_the_metrics() -> None:
    """Two instances on the default registry neither crash nor double-register; their counts add up."""
    first, second = PrometheusMetrics(), ReExported()
    before = REGISTRY.get_sample_value("ws_diag_sessions_opened_total") or 0.0
    connection: Any = None
    first.opened(connection)
    second.opened(connection)
    assert REGISTRY.get_sample_value("ws_diag_sessions_opened_total") == before + 2


def test_namespace_must_be_a_metric_name_prefix() -> None:
    """A namespace Prometheus cannot use is refused, naming the field."""
    with pytest.raises(ValueError, match="namespace must be a snake_case metric name prefix, got 'ws-diag'"):
        PrometheusMetrics(registry=CollectorRegistry(), namespace="ws-diag")


@pytest.mark.asyncio
async def test_http_denial_status_is_not_a_close_code() -> None:
    """A pre-accept HTTP denial counts its status under http_status; no close_code series appears."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry=registry)

    async def refuses(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        raise TimeoutError

    async def down() -> None:
        raise ProbeFailed("down")

    app = DiagnosticsMiddleware(
        refuses,
        settings=DiagSettings(preaccept="http_denial"),
        probes=[CallableProbe("database", Component.DATABASE, down)],
        listeners=[metrics],
    )
    await drive(app, [CONNECT], scope=ws_scope(denial=True))
    samples = registry_samples(registry)
    assert value(samples, "ws_diag_diagnosis_denials_total", component="database", http_status="503") == 1
    assert [n for n, _ in names_of(samples) if n == "ws_diag_diagnosis_closes_total"] == []
    assert value(samples, "ws_diag_diagnoses_total", component="database", source="probe", delivered="true") == 1
    assert value(samples, "ws_diag_sessions_closed_total", outcome="diagnosed") == 1
    assert all("code" not in labels for _, labels in names_of(samples))


# -- end to end: a real server, scraped over HTTP ------------------------------------------------


class Database:
    """A dependency the test breaks and repairs."""

    def __init__(self) -> None:
        self.up = False

    async def check(self) -> None:
        """The probe's check."""
        if not self.up:
            raise ProbeFailed("database down")


def metrics_app(database: Database) -> tuple[Any, PrometheusMetrics]:
    """Websocket endpoints that end normally, fail, or wait for a client that leaves; /metrics beside them."""

    async def normal(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    async def failing(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()
        raise TimeoutError  # no component by type: the probes blame the database

    async def listening(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:
            await websocket.receive_text()

    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry=registry)
    exporter = make_asgi_app(registry)
    routes = Starlette(
        routes=[WebSocketRoute("/normal", normal), WebSocketRoute("/fail", failing), WebSocketRoute("/gone", listening)]
    )

    async def router(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/metrics":
            await exporter(scope, receive, send)
        else:
            await routes(scope, receive, send)

    app = DiagnosticsMiddleware(
        router,
        settings=DiagSettings(refresh_interval=0.1, cache_ttl=0.05),
        probes=[CallableProbe("database", Component.DATABASE, database.check)],
        listeners=[metrics],
    )
    return app, metrics


async def scrape(client: httpx.AsyncClient, url: str) -> tuple[str, dict[tuple[str, Labels], float]]:
    """GET /metrics in Prometheus text format."""
    response = await client.get(f"{url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text, parse(response.text)


async def scrape_until(
    client: httpx.AsyncClient, url: str, done: Any, what: str
) -> tuple[str, dict[tuple[str, Labels], float]]:
    """Scrape until ``done(samples)``, bounded by CLIENT_TIMEOUT."""
    try:
        async with asyncio.timeout(CLIENT_TIMEOUT):
            while True:
                text, samples = await scrape(client, url)
                if done(samples):
                    return text, samples
                await asyncio.sleep(0.05)  # the next scrape: polling, not waiting for readiness
    except TimeoutError:
        pytest.fail(f"metrics never showed {what}")


def promtool_lint(text: str) -> str:
    """promtool check metrics' complaints about an exposition ("" when it has none)."""
    promtool = shutil.which("promtool")
    assert promtool is not None
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False
    )
    return (done.stdout + done.stderr).strip()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_scraped_over_http_after_real_sessions(kind: str) -> None:
    """Zero series at start, sessions by outcome after normal/diagnosed/client-gone, component_up refreshed."""
    database = Database()
    app, _ = metrics_app(database)
    try:
        await scraped_sessions(app, kind, database)
    finally:
        await app.checker.aclose()  # the background refresh


async def scraped_sessions(app: Any, kind: str, database: Database) -> None:
    """The body of test_scraped_over_http_after_real_sessions."""
    async with run_server(app, kind) as url, httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        http_url = url.replace("ws://", "http://", 1)
        _, start = await scrape(client, http_url)
        assert value(start, "ws_diag_sessions_opened_total") == 0
        for outcome in CLOSED_OUTCOMES:
            assert value(start, "ws_diag_sessions_closed_total", outcome=outcome) == 0
        for component in Component:
            labels = {"component": component.key, "source": "probe", "delivered": "true"}
            assert value(start, "ws_diag_diagnoses_total", **labels) == 0

        async with asyncio.timeout(CLIENT_TIMEOUT), connect(f"{url}/normal") as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
            await ws.wait_closed()
        failed = await talk(f"{url}/fail")
        assert failed.code == 4005
        async with asyncio.timeout(CLIENT_TIMEOUT), connect(f"{url}/gone") as ws:
            await ws.send("hello")

        def all_closed(samples: dict[tuple[str, Labels], float]) -> bool:
            closed = sum(value(samples, "ws_diag_sessions_closed_total", outcome=o) or 0 for o in CLOSED_OUTCOMES)
            return closed == 3

        text, after = await scrape_until(client, http_url, all_closed, "three closed sessions")
        assert value(after, "ws_diag_sessions_opened_total") == 3
        closed = {o: value(after, "ws_diag_sessions_closed_total", outcome=o) for o in CLOSED_OUTCOMES}
        assert closed == {"normal": 1, "diagnosed": 1, "client_gone": 1, "restart": 0, "error": 0}
        assert value(after, "ws_diag_diagnoses_total", component="database", source="probe", delivered="true") == 1
        assert value(after, "ws_diag_diagnosis_closes_total", component="database", close_code="4005") == 1
        assert value(after, "ws_diag_diagnosis_duration_seconds_count") == 1
        assert not [n for n, _ in names_of(after) if n == "ws_diag_diagnosis_denials_total"]
        assert all("code" not in labels for _, labels in names_of(after))
        assert value(after, "ws_diag_component_up", probe="database", component="database") == 0
        database_series = {"probe": "database", "component": "database"}
        checked_down = value(after, "ws_diag_probe_last_check_timestamp_seconds", **database_series)
        assert checked_down is not None
        if shutil.which("promtool"):
            assert promtool_lint(text) == ""

        # The database recovers: no session fails, nobody asks /health; the gauge follows anyway.
        database.up = True

        def recovered(samples: dict[tuple[str, Labels], float]) -> bool:
            return value(samples, "ws_diag_component_up", probe="database", component="database") == 1

        _, fresh = await scrape_until(client, http_url, recovered, "the database up again")
        checked_up = value(fresh, "ws_diag_probe_last_check_timestamp_seconds", **database_series)
        assert checked_up is not None
        assert checked_up > checked_down
        assert value(fresh, "ws_diag_sessions_opened_total") == 3  # scrapes are not sessions


def test_per_connection_benchmark_runs() -> None:
    """benchmarks/sessions.py runs with tiny sizes, counts every session it ran, and reports finite medians."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.sessions", "--quick", "--json", "-"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout)
    assert result["counted_sessions"] == result["expected_counted"]
    listener = result["variants"]["ws_diag + PrometheusMetrics"]
    for key in ("ns_per_session", "added_ns_vs_bare", "ratio_vs_bare", "added_ns_vs_ws_diag", "ratio_vs_ws_diag"):
        assert math.isfinite(listener[key]), key


# -- a real Prometheus server scraping the app, with the shipped rules loaded --------------------

PROMETHEUS = shutil.which("prometheus")
RULES = Path(__file__).resolve().parent.parent / "ops" / "prometheus" / "ws_diag.rules.yml"


async def prometheus_api(client: httpx.AsyncClient, base: str, path: str, **params: str) -> Any:
    """GET a Prometheus API endpoint; its ``data``, or ``None`` while the server is not up yet."""
    try:
        response = await client.get(f"{base}{path}", params=params)
    except httpx.TransportError:
        return None
    if response.status_code != 200:
        return None
    return response.json()["data"]


async def poll(what: str, limit_s: float, check: Any) -> Any:
    """Call ``check`` until it returns something truthy, within ``limit_s`` seconds."""
    try:
        async with asyncio.timeout(limit_s):
            while True:
                found = await check()
                if found:
                    return found
                await asyncio.sleep(0.2)  # Prometheus scrapes and evaluates every second
    except TimeoutError:
        pytest.fail(f"Prometheus never showed {what} within {limit_s} s")


@pytest.mark.asyncio
@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (Debian package 'prometheus')")
async def test_real_prometheus_fires_on_the_first_failure(tmp_path: Path) -> None:
    """Prometheus scrapes the fresh app's zeros; the very first failure fires WsDiagSessionFailures."""
    assert PROMETHEUS is not None
    database = Database()
    app, _ = metrics_app(database)
    async with run_server(app, "uvicorn") as url, httpx.AsyncClient(timeout=5) as client:
        port = free_port()
        target = url.removeprefix("ws://")
        config = tmp_path / "prometheus.yml"
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(RULES)],
                    "scrape_configs": [{"job_name": "app", "static_configs": [{"targets": [target]}]}],
                }
            )
        )
        log = (tmp_path / "prometheus.log").open("w")
        server = await asyncio.create_subprocess_exec(
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        base = f"http://127.0.0.1:{port}"
        series = 'ws_diag_diagnoses_total{job="app",component="database",source="probe",delivered="true"}'
        try:

            async def scraped_zero() -> bool:
                data = await prometheus_api(client, base, "/api/v1/query", query=series)
                return bool(data and data["result"] and data["result"][0]["value"][1] == "0")

            await poll("the database's zero series", 30, scraped_zero)

            async def failure_alerts() -> list[dict[str, Any]]:
                data = await prometheus_api(client, base, "/api/v1/alerts")
                alerts = data["alerts"] if data else []
                return [a for a in alerts if a["labels"]["alertname"] == "WsDiagSessionFailures"]

            assert await failure_alerts() == []
            failed = await talk(f"{url}/fail")
            assert failed.code == 4005
            (alert,) = await poll("WsDiagSessionFailures", 30, failure_alerts)
            assert alert["labels"]["component"] == "database"
            assert alert["state"] == "firing"
        finally:
            server.terminate()
            try:
                await asyncio.wait_for(server.wait(), 10)
            except TimeoutError:
                server.kill()
                await server.wait()
            log.close()


@pytest.mark.asyncio
async def test_prometheus_metrics() -> None:
    """Diagnosed failures are counted by component, source and delivery; probes feed latency, up/down and check time."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry=registry)

    async def down() -> None:
        raise ProbeFailed("down")

    probe = CallableProbe("database", Component.DATABASE, down)
    middleware = DiagnosticsMiddleware(
        failing(TimeoutError()),
        settings=DiagSettings(),
        probes=[probe],
        listeners=[metrics],
    )
    for _ in range(3):
        await drive(middleware, [CONNECT])
    diagnoses = registry.get_sample_value(
        "ws_diag_diagnoses_total", {"component": "database", "source": "probe", "delivered": "true"}
    )
    assert diagnoses == 3
    assert (
        registry.get_sample_value("ws_diag_diagnosis_closes_total", {"component": "database", "close_code": "4005"})
        == 3
    )
    assert registry.get_sample_value("ws_diag_sessions_closed_total", {"outcome": "diagnosed"}) == 3
    assert registry.get_sample_value("ws_diag_component_up", {"probe": "database", "component": "database"}) == 0
    checked = registry.get_sample_value(
        "ws_diag_probe_last_check_timestamp_seconds", {"probe": "database", "component": "database"}
    )
    assert checked is not None
    assert checked > 0
    assert registry.get_sample_value("ws_diag_probe_latency_seconds_count", {"probe": "database"}) == 1  # cached
