"""Prometheus metrics in prometheus_client's multi-process mode, across real worker processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any


def test_prometheus_multiprocess_mode(tmp_path: Any) -> None:
    """In multi-process mode counters add up across workers and up/down is the minimum over live workers."""
    worker = textwrap.dedent(
        """
        import sys
        from ws_diag.metrics import PrometheusMetrics
        from ws_diag import Component, Diagnosis, DiagnosisEvent
        from ws_diag.health import HealthReport, ProbeResult
        from datetime import datetime, UTC
        metrics = PrometheusMetrics()
        diagnosis = Diagnosis.for_component(Component.REDIS, "probe")
        metrics.on_diagnosis(DiagnosisEvent(diagnosis, 4007, None, True, 1.0, "/ws", None))
        up = sys.argv[1] == "up"
        status = "healthy" if up else "failed"
        result = ProbeResult("redis", Component.REDIS, True, status, 1.0)
        metrics.on_health_report(HealthReport((result,), datetime.now(UTC), 1.0))
        print(__import__("os").getpid())
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    pids = {}
    for state in ("up", "down"):
        done = subprocess.run(
            [sys.executable, "-c", worker, state], env=env, check=True, timeout=60, capture_output=True, text=True
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
        print(json.dumps({
            "closes": registry.get_sample_value(
                "ws_diag_closes_rewritten_total", {"component": "redis", "code": "4007", "source": "probe"}),
            "up": registry.get_sample_value("ws_diag_component_up", {"probe": "redis", "component": "redis"}),
        }))
        """
    )

    def collected(*dead: int) -> dict[str, float]:
        argv = [sys.executable, "-c", collect, *map(str, dead)]
        return json.loads(subprocess.run(argv, env=env, check=True, timeout=60, capture_output=True, text=True).stdout)

    assert collected() == {"closes": 2, "up": 0}  # one worker saw it down: down
    assert collected(pids["down"]) == {"closes": 2, "up": 1}  # that worker is gone: up
