"""Quart: wrap ``app.asgi_app``, as Flask apps wrap ``wsgi_app``.

Run from the repository root: ``hypercorn examples.quart_app:app`` or
``uvicorn examples.quart_app:app --ws wsproto``.
"""

from __future__ import annotations

from quart import Quart, websocket

from ws_diag import DiagnosticsMiddleware, DiagSettings, WebSocketComponentError


def create_app() -> Quart:
    app = Quart(__name__)
    # Quart logs an unhandled websocket exception and closes with a normal 1000, which hides the
    # failure from ws_diag and from the client. Propagating lets the exception reach ws_diag
    # (and the server, which logs it once).
    app.config["PROPAGATE_EXCEPTIONS"] = True

    @app.websocket("/ws/database")
    async def database() -> None:
        await websocket.accept()
        await websocket.receive()
        raise WebSocketComponentError.database_failure("Database session factory unavailable", user_id="user123")

    @app.websocket("/ws/crash")
    async def crash() -> None:
        await websocket.accept()
        await websocket.receive()
        raise RuntimeError("connection string postgres://app:hunter2@db/app refused")  # never sent to the client

    @app.websocket("/ws/auth")
    async def auth() -> None:
        raise WebSocketComponentError.auth_failure("Token expired")  # before accept

    app.asgi_app = DiagnosticsMiddleware(app.asgi_app, settings=DiagSettings())
    return app


app = create_app()
