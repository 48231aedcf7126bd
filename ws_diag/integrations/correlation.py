"""asgi-correlation-id: the request id its middleware chose, as the connection's request id.

Needs the ``correlation`` extra (``asgi-correlation-id``)::

    from asgi_correlation_id import CorrelationIdMiddleware
    from ws_diag.integrations.correlation import CorrelationIdListener

    app = DiagnosticsMiddleware(app, listeners=[CorrelationIdListener()])
    app = CorrelationIdMiddleware(app)  # in front of ws_diag: it sets the id first

Without this listener ws_diag reads the request id from the ``request_id_header``
setting's header (``X-Request-ID`` by default) when a failure is diagnosed. With it,
the id is asgi-correlation-id's context variable as its middleware left it when the
scope reached ws_diag: the client's header when it passed the middleware's validator,
or the id the middleware generated. Either way ws_diag validates it again
(:func:`ws_diag.diagnosis.valid_request_id`) before it is logged, put on the
diagnosis event or, with ``request_id_in_frame``, sent to the client.
"""

from __future__ import annotations

from .._optional import missing

try:
    from asgi_correlation_id import correlation_id
except ModuleNotFoundError as exc:
    missing(exc, "asgi_correlation_id", extra="correlation", feature=__name__, package="asgi-correlation-id")

from ..diagnosis import valid_request_id
from ..lifecycle import Connection, ConnectionListener

__all__ = ["CorrelationIdListener"]


class CorrelationIdListener(ConnectionListener):
    """Sets ``Connection.request_id`` from asgi-correlation-id's context variable at ``opened``.

    One context-variable read per connection; an id that is not a valid request id
    (see :func:`~ws_diag.diagnosis.valid_request_id`) is ignored, and the header is
    read at diagnosis time instead.
    """

    def opened(self, connection: Connection) -> None:
        """Take the id asgi-correlation-id's middleware set for this request."""
        request_id = valid_request_id(correlation_id.get())
        if request_id is not None:
            connection.request_id = request_id
