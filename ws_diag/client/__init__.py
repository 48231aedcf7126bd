"""For Python clients: explain a close, and reconnect the way the server suggests.

Imports nothing of the server side (no pydantic, no middleware, no health checker):
:mod:`ws_diag.client.explain` reads a close, :mod:`ws_diag.client.reconnect` comes back
after one, following the shared retry table (:func:`ws_diag.retry.retry_action`).
"""

from __future__ import annotations

from .explain import Explanation, explain, parse_frame
from .reconnect import Connections, ReconnectEvent, Reconnecting, RetryPolicy, reconnecting, retry_delay_ms

__all__ = [
    "Connections",
    "Explanation",
    "ReconnectEvent",
    "Reconnecting",
    "RetryPolicy",
    "explain",
    "parse_frame",
    "reconnecting",
    "retry_delay_ms",
]
