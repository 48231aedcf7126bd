"""Prometheus metrics (extra ``prometheus``): rewritten closes, probe latency, component up/down.

::

    metrics = PrometheusMetrics()
    app = DiagnosticsMiddleware(app, on_diagnosis=metrics.on_diagnosis, on_health_report=metrics.on_health_report)

Works in prometheus_client's multi-process mode (``PROMETHEUS_MULTIPROC_DIR``):
counters and histograms add up across workers, and the up/down gauge reports
the minimum over live workers, so a component is "up" only if every worker
saw it up.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import registry as default_registry

from .health import HealthReport
from .responder import DiagnosisEvent

__all__ = ["PrometheusMetrics"]

# Probe latencies: from a cached sub-millisecond check to a deadline of seconds.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class PrometheusMetrics:
    """The metrics, and the two hooks that feed them.

    Args:
        registry: where to register (the default registry when omitted).
        namespace: metric name prefix.
    """

    def __init__(self, registry: CollectorRegistry | None = None, namespace: str = "ws_diag") -> None:
        registry = registry if registry is not None else default_registry.REGISTRY
        self.closes = Counter(
            "closes_rewritten",
            "WebSocket failures ws_diag diagnosed, by component and close code.",
            ["component", "code", "source"],
            namespace=namespace,
            registry=registry,
        )
        self.probe_latency = Histogram(
            "probe_latency_seconds",
            "Latency of each probe run.",
            ["probe"],
            namespace=namespace,
            registry=registry,
            buckets=_LATENCY_BUCKETS,
        )
        self.component_up = Gauge(
            "component_up",
            "1 when the component's last probe passed, 0 when it failed or degraded.",
            ["probe", "component"],
            namespace=namespace,
            registry=registry,
            multiprocess_mode="livemin",
        )

    def on_diagnosis(self, event: DiagnosisEvent) -> None:
        """Count one diagnosed failure."""
        code = event.code if event.code is not None else event.http_status
        self.closes.labels(event.diagnosis.component.key, str(code), event.diagnosis.source).inc()

    def on_health_report(self, report: HealthReport) -> None:
        """Record each probe's latency and up/down state."""
        for result in report.results:
            self.probe_latency.labels(result.name).observe(result.latency_ms / 1000)
            self.component_up.labels(result.name, result.component.key).set(1 if result.ok else 0)
