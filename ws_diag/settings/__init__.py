"""Settings: one immutable object, read from arguments or ``WS_DIAG_*`` variables.

:mod:`.groups` declares the fields in groups (core, probes, health endpoints, failure
tolerance, clients' hints, observability) with their validation, :mod:`.model` combines them
into :class:`DiagSettings`, :mod:`.loading` reads what a middleware was given, :mod:`.references`
checks, once, the names settings give to components and probes, :mod:`.dsn` checks the probes'
URLs without connecting.
"""

from __future__ import annotations

from .loading import describe_settings_error, load_settings
from .model import ENV_PREFIX, DiagSettings, HttpProbeSpec, PreacceptMode

__all__ = ["ENV_PREFIX", "DiagSettings", "HttpProbeSpec", "PreacceptMode", "describe_settings_error", "load_settings"]
