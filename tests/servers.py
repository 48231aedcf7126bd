"""The test suite's server runner: :mod:`ws_diag.testing.servers`, re-exported.

Tests import it as ``from servers import SERVER_KINDS, run_server``; the one
implementation (shared with ``benchmarks/``) lives in the package.
"""

from __future__ import annotations

from ws_diag.testing.servers import (
    KINDS,
    SERVER_KINDS,
    DaphneServer,
    ServerError,
    free_port,
    run_daphne,
    run_server,
)

__all__ = ["KINDS", "SERVER_KINDS", "DaphneServer", "ServerError", "free_port", "run_daphne", "run_server"]
