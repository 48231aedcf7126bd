"""Optional integrations, each in its own module and imported only when used.

Each follows connections through :mod:`ws_diag.lifecycle` events (a
:class:`~ws_diag.lifecycle.ConnectionListener` passed as
``DiagnosticsMiddleware(listeners=[...])``) or the ``on_diagnosis`` hook; none
is imported by ``ws_diag`` itself, and each needs its own extra:

=============================  ===============================  =============
module                         listener                         extra
=============================  ===============================  =============
``opentelemetry``              ``OpenTelemetryListener``        ``otel``
``sentry``                     ``SentryListener``               ``sentry``
``correlation``                ``CorrelationIdListener``        ``correlation``
=============================  ===============================  =============
"""
