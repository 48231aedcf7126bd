"""The app tests/test_integrations_prometheus_multiprocess.py serves under ``uvicorn --workers`` and gunicorn.

Every worker imports this module: PrometheusMetrics on the default registry (its values
in ``PROMETHEUS_MULTIPROC_DIR``), ``/metrics`` from a MultiProcessCollector, one probe
that reads the file named by ``WS_DIAG_TEST_HEALTH_FILE`` ("up" or anything else) and
is refreshed in the background, and a websocket endpoint that accepts and closes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, make_asgi_app, multiprocess

from ws_diag import Component, DiagnosticsMiddleware, DiagSettings
from ws_diag.health.probes import CallableProbe
from ws_diag.integrations.prometheus import PrometheusMetrics

HEALTH_FILE = Path(os.environ["WS_DIAG_TEST_HEALTH_FILE"])


def dependency_up() -> bool:
    """The test's switch: the file says "up"."""
    return HEALTH_FILE.read_text() == "up"


scrape_registry = CollectorRegistry()
multiprocess.MultiProcessCollector(scrape_registry)
exporter = make_asgi_app(scrape_registry)
metrics = PrometheusMetrics()


async def routes(scope: Any, receive: Any, send: Any) -> None:
    """/metrics, a websocket that accepts and closes, and the lifespan."""
    if scope["type"] == "http":
        await exporter(scope, receive, send)
    elif scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})
    else:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await app.checker.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


app = DiagnosticsMiddleware(
    routes,
    settings=DiagSettings(refresh_interval=0.2, cache_ttl=0.1),
    probes=[CallableProbe("dependency", Component.REDIS, dependency_up)],
    listeners=[metrics],
)
