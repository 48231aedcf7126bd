"""Prometheus metrics in prometheus_client's multi-process mode, across real worker processes."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from servers import free_port
from websockets.exceptions import ConnectionClosedOK
from websockets.sync.client import connect as ws_connect


def test_prometheus_multiprocess_mode(tmp_path: Any) -> None:
    """Counters add up across workers, zero series survive, component_up is the newest reading, dead or alive."""
    worker = textwrap.dedent(
        """
        import sys
        from ws_diag.metrics import PrometheusMetrics
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
        metrics.on_health_report(HealthReport((result,), datetime.fromtimestamp(float(sys.argv[2]), UTC), 1.0))
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
GUNICORN_CONF = TESTS.parent / "ops" / "gunicorn" / "gunicorn.conf.py"
POLL_TIMEOUT = 30.0  # generous: two cores shared with other suites; each poll ends as soon as it sees the state
UP = "ws_diag_component_up"
UP_LABELS = {"probe": "dependency", "component": "redis"}


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    found: list[int] = []
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in Path(path).read_text().split()]
    return found


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


def _workers(parent: int) -> set[int]:
    """The server's worker processes (not multiprocessing's resource tracker)."""
    return {pid for pid in _children(parent) if "resource_tracker" not in _cmdline(pid)}


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


def _poll(what: str, check: Callable[[], Any], log: Path) -> Any:
    """Call ``check`` until it returns something truthy, bounded by POLL_TIMEOUT."""
    deadline = time.monotonic() + POLL_TIMEOUT
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)  # the next poll: the state comes from background probes in other processes
    pytest.fail(f"never saw {what}; server log:\n{log.read_text()[-3000:]}")


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn", "gunicorn-child_exit"])
def test_killed_worker_does_not_freeze_component_up(server: str, tmp_path: Path) -> None:
    """A SIGKILLed, respawned worker's stale 0 gives way: component_up turns 1 once the component recovers."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    health = tmp_path / "health"
    health.write_text("down")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    if server == "uvicorn":
        command = [sys.executable, "-m", "uvicorn", "--app-dir", str(TESTS), "--workers", "2"]
        command += ["--host", "127.0.0.1", "--port", str(port), "workers_app:app"]
    else:
        command = [sys.executable, "-m", "gunicorn", "-k", "uvicorn_worker.UvicornWorker", "-w", "2"]
        command += ["-b", f"127.0.0.1:{port}", "--pythonpath", str(TESTS), "--graceful-timeout", "5"]
        # gunicorn-child_exit: the recipe's config (mark_process_dead); plain gunicorn: no hook at all.
        command += ["-c", str(GUNICORN_CONF) if server == "gunicorn-child_exit" else "/dev/null", "workers_app:app"]
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "WS_DIAG_TEST_HEALTH_FILE": str(health)}
    log = tmp_path / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with httpx.Client(timeout=5) as client:
            killed = _kill_and_recover(process.pid, server, client, url, metrics_dir, health, log)
        assert killed not in _workers(process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


def _kill_and_recover(
    parent: int, server: str, client: httpx.Client, url: str, metrics_dir: Path, health: Path, log: Path
) -> int:
    """The body of test_killed_worker_does_not_freeze_component_up; returns the killed worker's pid."""

    def answers() -> bool:
        try:
            return client.get(f"{url}/metrics").status_code == 200
        except httpx.TransportError:
            return False

    _poll("the server answering", answers, log)
    for _ in range(4):
        with ws_connect(f"{url.replace('http', 'ws', 1)}/ws", open_timeout=5) as ws, pytest.raises(ConnectionClosedOK):
            ws.recv(timeout=5)

    def all_down(workers: set[int]) -> bool:
        return len(workers) == 2 and all(_reading(metrics_dir, pid) == 0 for pid in workers)

    workers = _poll(
        "both workers reporting the component down", lambda: (w := _workers(parent)) and all_down(w) and w, log
    )
    assert _scrape(client, url)[UP] == 0
    killed = min(workers)
    os.kill(killed, signal.SIGKILL)
    respawned = _poll(
        "a respawned worker reporting the component down",
        lambda: (w := _workers(parent)) and killed not in w and all_down(w) and w,
        log,
    )
    assert respawned - workers, "no new worker"
    if server != "gunicorn-child_exit":
        # Nobody marked the killed worker dead: its reading (0) is still in the directory.
        assert _reading(metrics_dir, killed) == 0
    # Its counts too: 4 sessions, wherever they ran.
    assert _poll("4 opened sessions", lambda: _scrape(client, url).get("ws_diag_sessions_opened_total") == 4, log)
    recovered_at = time.time()
    health.write_text("up")
    scraped = _poll("component_up 1 after the recovery", lambda: (s := _scrape(client, url))[UP] == 1 and s, log)
    # The check time is the newest check's, not the dead worker's.
    assert scraped["ws_diag_probe_last_check_timestamp_seconds"] >= recovered_at - 1
    return killed
