"""Prometheus metrics in prometheus_client's multi-process mode, across real worker processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any


def test_prometheus_multiprocess_mode(tmp_path: Any) -> None:
    """Counters add up across workers, zero series survive, up/down and check time are the minimum over live workers."""
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
    pids = {}
    for state, checked_at in (("up", "2000"), ("down", "1000")):
        done = subprocess.run(
            [sys.executable, "-c", worker, state, checked_at],
            env=env,
            check=True,
            timeout=60,
            capture_output=True,
            text=True,
        )
        pids[state] = int(done.stdout)
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

    counts = {"opened": 2, "diagnosed": 2, "normal": 0, "redis": 2, "database": 0, "close_code": 2}
    # One worker saw it down, at the older check: down, and the age is the oldest worker's.
    assert collected() == {**counts, "up": 0, "checked": 1000}
    # That worker is gone: up, checked at the live worker's time.
    assert collected(pids["down"]) == {**counts, "up": 1, "checked": 2000}
