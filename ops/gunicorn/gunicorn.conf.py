"""gunicorn settings for an app with ws_diag's PrometheusMetrics under several uvicorn workers.

Run (PROMETHEUS_MULTIPROC_DIR: a directory of its own, writable, on local disk or tmpfs)::

    PROMETHEUS_MULTIPROC_DIR=/run/myapp-metrics gunicorn -c gunicorn.conf.py \\
        -k uvicorn_worker.UvicornWorker -w 4 -b 0.0.0.0:8000 myapp:app

and serve ``/metrics`` from a registry with prometheus_client's ``MultiProcessCollector``
(see docs/how-to/prometheus.md, "Several worker processes"). Do not use ``--preload``: each worker builds the app,
its probes and its metrics itself. tests/test_integrations_prometheus_multiprocess.py runs this file.
"""

from __future__ import annotations

import glob
import os
from typing import Any

from prometheus_client import multiprocess


def on_starting(server: Any) -> None:
    """Empty the metrics directory before the first worker starts: files of an earlier run would count."""
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]  # KeyError here: set it before starting gunicorn
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)


def child_exit(server: Any, worker: Any) -> None:
    """A worker ended (any reason, SIGKILL included): drop its live* gauges (prometheus_client's bookkeeping)."""
    multiprocess.mark_process_dead(worker.pid)
