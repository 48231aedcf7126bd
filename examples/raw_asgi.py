"""Raw ASGI: wrap the application callable itself.

Run from the repository root: ``hypercorn examples.raw_asgi:app``, or
``uvicorn examples.raw_asgi:app --ws websockets`` (or ``--ws wsproto``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ws_diag import DiagnosticsMiddleware, DiagSettings, WebSocketComponentError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def chat(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "websocket":
        return  # websockets only: no lifespan handling, no HTTP routes
    if scope["path"] == "/ws/auth":
        # Before accept: the client still gets the frame and 4002 (preaccept="accept_close").
        raise WebSocketComponentError.auth_failure("Token expired")
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await receive()  # the client's first message
    if scope["path"] == "/ws/database":
        # After accept: the frame, then close 4005.
        raise WebSocketComponentError.database_failure("Database session factory unavailable", user_id="user123")
    # Anything else: the frame says "Generic Internal", close 1011; the exception text stays in the log.
    raise RuntimeError("connection string postgres://app:hunter2@db/app refused")


app = DiagnosticsMiddleware(chat, settings=DiagSettings())
