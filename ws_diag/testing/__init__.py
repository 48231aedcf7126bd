"""Test utilities for apps that use ws_diag (need the ``test`` extra; never imported by ``ws_diag`` itself).

- :mod:`ws_diag.testing.servers`: run an ASGI app under a real server (hypercorn,
  uvicorn with each of its websocket implementations, daphne) on a free loopback
  port, with bounded startup and shutdown.
"""

from __future__ import annotations

__all__ = ["ServerError"]


class ServerError(RuntimeError):
    """The server did not start, did not stop, or crashed."""
