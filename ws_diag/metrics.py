"""Where :class:`PrometheusMetrics` used to live: a re-export of :mod:`ws_diag.integrations.prometheus`.

``from ws_diag.metrics import PrometheusMetrics`` keeps working (extra
``prometheus``); new code imports it from ``ws_diag.integrations.prometheus``,
where the metrics, their labels and their freshness are documented.
"""

from __future__ import annotations

from .integrations.prometheus import PrometheusMetrics

__all__ = ["PrometheusMetrics"]
