"""Settings: one immutable object, read from arguments or ``WS_DIAG_*`` variables.

:mod:`.model` holds the fields and their validation, :mod:`.loading` reads what a middleware
was given, :mod:`.dsn` checks the probes' URLs without connecting.
"""

from __future__ import annotations

from .loading import describe_settings_error, load_settings
from .model import ENV_PREFIX, DiagSettings, HttpProbeSpec, PreacceptMode

__all__ = ["ENV_PREFIX", "DiagSettings", "HttpProbeSpec", "PreacceptMode", "describe_settings_error", "load_settings"]
