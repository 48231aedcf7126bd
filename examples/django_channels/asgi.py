"""The ASGI application. Run from the repository root:
``daphne -b 127.0.0.1 -p 8000 examples.django_channels.asgi:application``.

ws_diag wraps the whole ``ProtocolTypeRouter``: websockets get diagnosed, HTTP goes straight
to Django, and ``WS_DIAG_HEALTH_PATH`` can serve the health report. Wrapping only the
``"websocket"`` application, as Channels' ``AuthMiddlewareStack`` is, works as well.
Settings come from ``WS_DIAG_*`` environment variables.
"""

from __future__ import annotations

import os

from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.asgi import get_asgi_application
from django.urls import path

from ws_diag import DiagnosticsMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_channels.settings")
django_asgi_app = get_asgi_application()  # sets Django up before the consumers are imported

from . import consumers  # noqa: E402

websocket_urlpatterns = [
    path("ws/database", consumers.DatabaseConsumer.as_asgi()),
    path("ws/crash", consumers.CrashConsumer.as_asgi()),
    path("ws/auth", consumers.AuthConsumer.as_asgi()),
    path("ws/policy", consumers.PolicyConsumer.as_asgi()),
]

application = DiagnosticsMiddleware(
    ProtocolTypeRouter({"http": django_asgi_app, "websocket": URLRouter(websocket_urlpatterns)})
)
