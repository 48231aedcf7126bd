"""Prometheus metrics in prometheus_client's multi-process mode, across real worker processes."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from multiworker import KINDS, poll, serving, workers_of
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosedOK
from websockets.sync.client import connect as ws_connect


def test_prometheus_multiprocess_mode(tmp_path: Any) -> None:
    """Counters add up across workers, zero series survive, component_up is the newest reading, dead or alive."""
    worker = textwrap.dedent(
        """
        import sys
        from ws_diag.integrations.prometheus import PrometheusMetrics
        from ws_diag import Component, Diagnosis, DiagnosisEvent
        from ws_diag.health import HealthReport, ProbeResult
        from ws_diag.lifecycle import Connection
        from datetime import datetime, UTC
        metrics = PrometheusMetrics()
        connection = Connection({"type": "websocket", "path": "/ws"})
        metrics.opened(connection)
        diagnosis = Diagnosis.for_component(Component.REDIS, "probe")
        metrics.diagnosed(connection, DiagnosisEvent(diagnosis, 4007, None, True, 1.0, "/ws", None))
        connection.outcome = "diagnosed"
        metrics.closed(connection)
        up = sys.argv[1] == "up"
        status = "healthy" if up else "failed"
        result = ProbeResult("redis", Component.REDIS, True, status, 1.0)
        metrics.health_report(HealthReport((result,), datetime.fromtimestamp(float(sys.argv[2]), UTC), 1.0))
        print(__import__("os").getpid())
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    def report(state: str, checked_at: str) -> int:
        """One worker process: a session, a diagnosis, a health report; returns its pid."""
        argv = [sys.executable, "-c", worker, state, checked_at]
        return int(subprocess.run(argv, env=env, check=True, timeout=60, capture_output=True, text=True).stdout)

    collect = textwrap.dedent(
        """
        import json, sys
        from prometheus_client import CollectorRegistry, multiprocess
        for pid in sys.argv[1:]:
            multiprocess.mark_process_dead(int(pid))
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        redis = {"probe": "redis", "component": "redis"}
        print(json.dumps({
            "opened": registry.get_sample_value("ws_diag_sessions_opened_total"),
            "diagnosed": registry.get_sample_value("ws_diag_sessions_closed_total", {"outcome": "diagnosed"}),
            "normal": registry.get_sample_value("ws_diag_sessions_closed_total", {"outcome": "normal"}),
            "redis": registry.get_sample_value(
                "ws_diag_diagnoses_total", {"component": "redis", "source": "probe", "delivered": "true"}),
            "database": registry.get_sample_value(
                "ws_diag_diagnoses_total", {"component": "database", "source": "probe", "delivered": "true"}),
            "close_code": registry.get_sample_value(
                "ws_diag_diagnosis_closes_total", {"component": "redis", "close_code": "4007"}),
            "up": registry.get_sample_value("ws_diag_component_up", redis),
            "checked": registry.get_sample_value("ws_diag_probe_last_check_timestamp_seconds", redis),
        }))
        """
    )

    def collected(*dead: int) -> dict[str, float]:
        argv = [sys.executable, "-c", collect, *map(str, dead)]
        return json.loads(subprocess.run(argv, env=env, check=True, timeout=60, capture_output=True, text=True).stdout)

    def counts(n: int) -> dict[str, float]:
        return {"opened": n, "diagnosed": n, "normal": 0, "redis": n, "database": 0, "close_code": n}

    down = report("down", "1000")
    up = report("up", "2000")
    # The newer reading wins (mostrecent), the newest check time with it (max).
    assert collected() == {**counts(2), "up": 1, "checked": 2000}
    # Both workers gone, marked dead or not: counts stay, the last reading stays (its age tells).
    assert collected(down, up) == {**counts(2), "up": 1, "checked": 2000}
    # A respawned worker's reading replaces a dead worker's, whichever it says.
    report("down", "3000")
    assert collected() == {**counts(3), "up": 0, "checked": 3000}


# -- A worker killed for real: uvicorn --workers 2, gunicorn with uvicorn workers --------------------------------

TESTS = Path(__file__).resolve().parent
UP = "ws_diag_component_up"
UP_LABELS = {"probe": "dependency", "component": "redis"}


def _reading(directory: Path, pid: int) -> float | None:
    """``component_up`` as one worker's own gauge files hold it (``None``: it has not reported)."""
    files = glob.glob(str(directory / f"gauge_*_{pid}.db"))
    for metric in MultiProcessCollector.merge(files):
        for sample in metric.samples:
            if sample.name == UP and sample.labels == UP_LABELS:
                return sample.value
    return None


def _scrape(client: httpx.Client, url: str) -> dict[str, float]:
    """The scraped component_up, its check time and the opened sessions (whichever worker answers)."""
    response = client.get(f"{url}/metrics")
    response.raise_for_status()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            ours = sample.labels == UP_LABELS and sample.name in (UP, "ws_diag_probe_last_check_timestamp_seconds")
            if ours or sample.name == "ws_diag_sessions_opened_total":
                found[sample.name] = sample.value
    return found


@pytest.mark.parametrize("server", KINDS)
def test_killed_worker_does_not_freeze_component_up(server: str, tmp_path: Path) -> None:
    """A SIGKILLed, respawned worker's stale 0 gives way: component_up turns 1 once the component recovers."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    health = tmp_path / "health"
    health.write_text("down")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "WS_DIAG_TEST_HEALTH_FILE": str(health)}
    log = tmp_path / "server.log"
    with serving(server, "workers_app:app", app_dir=TESTS, env=env, log=log) as (parent, url):
        with httpx.Client(timeout=5) as client:
            killed = _kill_and_recover(parent, server, client, url, metrics_dir, health, log)
        assert killed not in workers_of(parent)


def _kill_and_recover(
    parent: int, server: str, client: httpx.Client, url: str, metrics_dir: Path, health: Path, log: Path
) -> int:
    """The body of test_killed_worker_does_not_freeze_component_up; returns the killed worker's pid."""

    def answers() -> bool:
        try:
            return client.get(f"{url}/metrics").status_code == 200
        except httpx.TransportError:
            return False

    poll("the server answering", answers, log)
    for _ in range(4):
        with ws_connect(f"{url.replace('http', 'ws', 1)}/ws", open_timeout=5) as ws, pytest.raises(ConnectionClosedOK):
            ws.recv(timeout=5)

    def all_down(workers: set[int]) -> bool:
        return len(workers) == 2 and all(_reading(metrics_dir, pid) == 0 for pid in workers)

    workers = poll(
        "both workers reporting the component down", lambda: (w := workers_of(parent)) and all_down(w) and w, log
    )
    assert _scrape(client, url)[UP] == 0
    killed = min(workers)
    os.kill(killed, signal.SIGKILL)
    respawned = poll(
        "a respawned worker reporting the component down",
        lambda: (w := workers_of(parent)) and killed not in w and all_down(w) and w,
        log,
    )
    assert respawned - workers, "no new worker"
    if server != "gunicorn-child_exit":
        # Nobody marked the killed worker dead: its reading (0) is still in the directory.
        assert _reading(metrics_dir, killed) == 0
    # Its counts too: 4 sessions, wherever they ran.
    assert poll("4 opened sessions", lambda: _scrape(client, url).get("ws_diag_sessions_opened_total") == 4, log)
    recovered_at = time.time()
    health.write_text("up")
    scraped = poll("component_up 1 after the recovery", lambda: (s := _scrape(client, url))[UP] == 1 and s, log)
    # The check time is the newest check's, not the dead worker's.
    assert scraped["ws_diag_probe_last_check_timestamp_seconds"] >= recovered_at - 1
    return killed
