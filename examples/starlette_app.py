"""Starlette: add ``DiagnosticsMiddleware`` to the middleware stack.

``app = DiagnosticsMiddleware(Starlette(...))`` works just as well. Run from the repository root:
``hypercorn examples.starlette_app:app`` or ``uvicorn examples.starlette_app:app --ws wsproto``.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import WebSocketException
from starlette.middleware import Middleware
from starlette.routing import WebSocketRoute
from starlette.status import WS_1008_POLICY_VIOLATION
from starlette.websockets import WebSocket

from ws_diag import DiagnosticsMiddleware, DiagSettings, WebSocketComponentError


async def database(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.receive_text()
    raise WebSocketComponentError.database_failure("Database session factory unavailable", user_id="user123")


async def crash(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.receive_text()
    raise RuntimeError("connection string postgres://app:hunter2@db/app refused")  # never sent to the client


async def auth(websocket: WebSocket) -> None:
    raise WebSocketComponentError.auth_failure("Token expired")  # before accept


async def policy(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.receive_text()
    # A deliberate close: ws_diag lets it through unchanged (1008 is not in rewrite_codes).
    raise WebSocketException(code=WS_1008_POLICY_VIOLATION, reason="Message not allowed")


async def policy_before_accept(websocket: WebSocket) -> None:
    raise WebSocketException(code=WS_1008_POLICY_VIOLATION)  # the server's HTTP 403, unchanged


app = Starlette(
    routes=[
        WebSocketRoute("/ws/database", database),
        WebSocketRoute("/ws/crash", crash),
        WebSocketRoute("/ws/auth", auth),
        WebSocketRoute("/ws/policy", policy),
        WebSocketRoute("/ws/policy-before-accept", policy_before_accept),
    ],
    middleware=[Middleware(DiagnosticsMiddleware, settings=DiagSettings())],
)
