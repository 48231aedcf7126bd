"""FastAPI: ``app.add_middleware(DiagnosticsMiddleware, settings=...)``.

Run from the repository root: ``hypercorn examples.fastapi_app:app`` or
``uvicorn examples.fastapi_app:app --ws websockets``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, WebSocket, WebSocketException, status

from ws_diag import DiagnosticsMiddleware, DiagSettings, WebSocketComponentError

app = FastAPI()
# accept_close is the default: even a browser, which cannot read a refused handshake, gets the frame.
app.add_middleware(DiagnosticsMiddleware, settings=DiagSettings(preaccept="accept_close"))


def current_user(websocket: WebSocket) -> str:
    """A dependency that fails before the endpoint runs, so before accept."""
    if websocket.query_params.get("token") != "valid":
        raise WebSocketComponentError.auth_failure("Token missing or expired")
    return "alice"


def not_banned(websocket: WebSocket) -> None:
    if websocket.query_params.get("user") == "mallory":
        raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION)  # before accept: HTTP 403, unchanged


@app.websocket("/ws/database")
async def database(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.receive_text()
    raise WebSocketComponentError.database_failure("Database session factory unavailable", user_id="user123")


@app.websocket("/ws/crash")
async def crash(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.receive_text()
    raise RuntimeError("connection string postgres://app:hunter2@db/app refused")  # never sent to the client


@app.websocket("/ws/auth")
async def auth(websocket: WebSocket, user: Annotated[str, Depends(current_user)]) -> None:
    await websocket.accept()
    await websocket.send_text(f"hello {user}")
    await websocket.close()


@app.websocket("/ws/policy", dependencies=[Depends(not_banned)])
async def policy(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.receive_text()
    # A deliberate close: ws_diag lets it through unchanged (1008 is not in rewrite_codes).
    raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION, reason="Message not allowed")
