"""Prometheus metrics (extra ``prometheus``): sessions, diagnoses, probes, as a connection listener.

::

    from ws_diag.integrations.prometheus import PrometheusMetrics

    metrics = PrometheusMetrics()
    app = DiagnosticsMiddleware(app, listeners=[metrics])

Exported (``ws_diag`` is the default namespace):

=============================================== ========= ==========================================
``ws_diag_sessions_opened_total``               counter   websocket sessions that reached ws_diag
``ws_diag_sessions_closed_total{outcome}``      counter   ended sessions: ``normal``, ``diagnosed``,
                                                          ``client_gone``, ``restart``, ``error``
``ws_diag_diagnoses_total{component,source,     counter   failures ws_diag diagnosed; ``delivered`` is
delivered}``                                              ``"true"`` when frame and close reached the client
``ws_diag_diagnosis_closes_total{component,     counter   the close code a diagnosis sent
close_code}``
``ws_diag_diagnosis_denials_total{component,    counter   the HTTP status of a pre-accept denial
http_status}``                                            (``preaccept="http_denial"``)
``ws_diag_diagnosis_duration_seconds``          histogram from the failure to the diagnosis, probes included
``ws_diag_probe_latency_seconds{probe}``        histogram each probe run
``ws_diag_component_up{probe,component}``       gauge     1 when the probe's last check passed, else 0
``ws_diag_probe_last_check_timestamp_seconds    gauge     Unix time of that check: its age says how
{probe,component}``                                       stale ``component_up`` is
=============================================== ========= ==========================================

Zero from start-up: ``sessions_opened_total``, every outcome of
``sessions_closed_total`` and every (component, source, delivered) of
``diagnoses_total`` exist at 0 as soon as the object is built, for the ten
built-in components and the custom ones passed as ``components``, so that
``rate()``/``increase()`` see the very first failure after a restart (a series
that appears at 1 reads as no increase). Close codes, HTTP statuses and probe
series appear when first seen: alert on ``diagnoses_total``.

Freshness: ws_diag does not probe on a schedule of its own for metrics. Each
health report (a failure's check, a health request, or the background refresh
of ``refresh_interval``) sets ``component_up`` *and*
``probe_last_check_timestamp_seconds``, so ``time() - ..._timestamp_seconds``
is the age of the reading: with ``refresh_interval`` set it stays below that
interval; without it a reading ages until the next failure or health request,
and the age shows it instead of a stale 0 passing for news. The shipped rules
only page on a fresh ``component_up == 0``.

Cost: two counter increments per connection (``opened``, ``closed``), a few
more per diagnosis and per probe run; nothing per message.

Works in prometheus_client's multi-process mode (``PROMETHEUS_MULTIPROC_DIR``,
``uvicorn --workers N``, gunicorn): counters and histograms add up across
workers, dead ones included. ``component_up`` is the newest reading of any
worker (mode ``mostrecent``) and the check timestamp the newest check (``max``):
a worker that died (SIGKILL, OOM) leaves its gauge file behind, and its last
reading counts only until a live worker checks again, with or without
``multiprocess.mark_process_dead``. Each worker probes on its own; workers that
disagree (one cannot reach Redis, the others can) take turns.

Several instances on one registry (two apps in one process, or tests on the
default registry) share one set of metrics: counts add up instead of failing
with "Duplicated timeseries".
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, get_args

from .._optional import missing

try:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client import registry as default_registry
except ModuleNotFoundError as exc:
    missing(exc, "prometheus_client", extra="prometheus", feature=__name__, package="prometheus-client")

from ..components import Component, ComponentLike
from ..diagnosis import DiagnosisSource
from ..health.report import HealthReport
from ..lifecycle import Connection, ConnectionListener, ConnectionOutcome

if TYPE_CHECKING:
    from ..lifecycle import DiagnosisEvent

__all__ = ["CLOSED_OUTCOMES", "DIAGNOSIS_SOURCES", "METRIC_NAMES", "PrometheusMetrics"]

CLOSED_OUTCOMES: tuple[ConnectionOutcome, ...] = tuple(o for o in get_args(ConnectionOutcome) if o != "open")
"""The ``outcome`` label values of ``sessions_closed_total``, each exported from start-up."""

# A graceful shutdown is a session outcome (restart), never a diagnosis.
DIAGNOSIS_SOURCES: tuple[DiagnosisSource, ...] = tuple(s for s in get_args(DiagnosisSource) if s != "shutdown")
"""The ``source`` label values of ``diagnoses_total``, each exported from start-up."""

METRIC_NAMES = (
    "sessions_opened_total",
    "sessions_closed_total",
    "diagnoses_total",
    "diagnosis_closes_total",
    "diagnosis_denials_total",
    "diagnosis_duration_seconds",
    "probe_latency_seconds",
    "component_up",
    "probe_last_check_timestamp_seconds",
)
"""Every exported metric's name after the namespace (``ws_diag_`` + name), as a scrape shows it."""

# Probe latencies: from a cached sub-millisecond check to a deadline of seconds.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BOOL = ("true", "false")


@dataclass(frozen=True, slots=True)
class _Metrics:
    """One registry's collectors, shared by every PrometheusMetrics built on it."""

    opened: Counter
    closed: Counter
    diagnoses: Counter
    closes: Counter
    denials: Counter
    duration: Histogram
    probe_latency: Histogram
    component_up: Gauge
    last_check: Gauge


# (registry, namespace) -> collectors: a registry refuses a second collector of the same name.
_shared: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, _Metrics]] = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()


def _create(registry: CollectorRegistry, namespace: str) -> _Metrics:
    def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        # prometheus_client appends _total itself.
        return Counter(name.removesuffix("_total"), doc, labels, namespace=namespace, registry=registry)

    return _Metrics(
        opened=counter("sessions_opened_total", "WebSocket sessions that reached ws_diag."),
        closed=counter(
            "sessions_closed_total",
            "WebSocket sessions that ended, by outcome (normal, diagnosed, client_gone, restart, error).",
            ("outcome",),
        ),
        diagnoses=counter(
            "diagnoses_total",
            "Failures ws_diag diagnosed, by component, diagnosis source and whether the client got the diagnosis.",
            ("component", "source", "delivered"),
        ),
        closes=counter(
            "diagnosis_closes_total",
            "Close codes ws_diag sent with a diagnosis, by component.",
            ("component", "close_code"),
        ),
        denials=counter(
            "diagnosis_denials_total",
            "HTTP statuses of pre-accept denials ws_diag sent with a diagnosis, by component.",
            ("component", "http_status"),
        ),
        duration=Histogram(
            "diagnosis_duration_seconds",
            "Time from a failure to its diagnosis, health checks included.",
            namespace=namespace,
            registry=registry,
            buckets=_LATENCY_BUCKETS,
        ),
        probe_latency=Histogram(
            "probe_latency_seconds",
            "Latency of each probe run.",
            ["probe"],
            namespace=namespace,
            registry=registry,
            buckets=_LATENCY_BUCKETS,
        ),
        component_up=Gauge(
            "component_up",
            "1 when the component's last probe passed, 0 when it failed or degraded.",
            ["probe", "component"],
            namespace=namespace,
            registry=registry,
            # The newest reading wins: a dead worker's file (uvicorn --workers never calls
            # mark_process_dead) must not pin a recovered component at 0.
            multiprocess_mode="mostrecent",
        ),
        last_check=Gauge(
            "probe_last_check_timestamp_seconds",
            "Unix time of the probe's last check (the reading component_up reports).",
            ["probe", "component"],
            namespace=namespace,
            registry=registry,
            multiprocess_mode="max",  # the newest check; never a dead worker's older one
        ),
    )


def _metrics_for(registry: CollectorRegistry, namespace: str) -> _Metrics:
    with _shared_lock:
        by_namespace = _shared.setdefault(registry, {})
        metrics = by_namespace.get(namespace)
        if metrics is None:
            metrics = by_namespace[namespace] = _create(registry, namespace)
        return metrics


class PrometheusMetrics(ConnectionListener):
    """The metrics, fed by connection events and health reports.

    Pass it as ``DiagnosticsMiddleware(listeners=[metrics])``: one listener follows the
    connections and, through the middleware's checker, every health report.

    Args:
        registry: where to register (the default registry when omitted). Instances on
            the same registry and namespace share their metrics.
        namespace: metric name prefix (snake_case).
        components: custom components the app uses (those given to the middleware's
            ``components``), exported at zero from start-up like the built-in ones.

    Raises:
        ValueError: ``namespace`` is not a valid metric name prefix, or another collector
            on ``registry`` already uses one of these names (prometheus_client's error).
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        namespace: str = "ws_diag",
        *,
        components: Iterable[ComponentLike] = (),
    ) -> None:
        if not namespace.isidentifier() or not namespace.isascii() or namespace.startswith("_"):
            msg = f"namespace must be a snake_case metric name prefix, got {namespace!r}"
            raise ValueError(msg)
        registry = registry if registry is not None else default_registry.REGISTRY
        self.namespace = namespace
        self._metrics = metrics = _metrics_for(registry, namespace)
        self._opened = metrics.opened
        # Children resolved once: closing a session is a dict lookup and an increment.
        self._closed = {outcome: metrics.closed.labels(outcome) for outcome in CLOSED_OUTCOMES}
        for component in (*Component, *components):
            for source in DIAGNOSIS_SOURCES:
                for delivered in _BOOL:
                    metrics.diagnoses.labels(component.key, source, delivered)

    def opened(self, connection: Connection) -> None:
        """Count a session."""
        self._opened.inc()

    def closed(self, connection: Connection) -> None:
        """Count an ended session by its outcome."""
        child = self._closed.get(connection.outcome)
        if child is None:  # an outcome this version does not know: still counted
            child = self._metrics.closed.labels(connection.outcome)
        child.inc()

    def diagnosed(self, connection: Connection, event: DiagnosisEvent) -> None:
        """Count one diagnosed failure, its close code or HTTP status, and how long it took."""
        self.on_diagnosis(event)

    def on_diagnosis(self, event: DiagnosisEvent) -> None:
        """Count one diagnosis (what :meth:`diagnosed` does; for code that has the event only).

        Pass the object as a listener instead of this as an ``on_diagnosis`` hook: only a
        listener counts sessions, the denominator of a failure ratio.
        """
        metrics = self._metrics
        key = event.diagnosis.component.key
        metrics.diagnoses.labels(key, event.diagnosis.source, "true" if event.delivered else "false").inc()
        if event.code is not None:
            metrics.closes.labels(key, str(event.code)).inc()
        if event.http_status is not None:
            metrics.denials.labels(key, str(event.http_status)).inc()
        metrics.duration.observe(event.took_ms / 1000)

    def health_report(self, report: HealthReport) -> None:
        """Record each probe's latency, up/down state and the time of the check."""
        metrics = self._metrics
        checked_at = report.checked_at.timestamp()
        for result in report.results:
            metrics.probe_latency.labels(result.name).observe(result.latency_ms / 1000)
            metrics.component_up.labels(result.name, result.component.key).set(1 if result.ok else 0)
            metrics.last_check.labels(result.name, result.component.key).set(checked_at)

    def __repr__(self) -> str:
        return f"<PrometheusMetrics namespace={self.namespace!r}>"
