"""Channels consumers: raise, and ws_diag (wrapping the websocket application) tells the client."""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer

from ws_diag import WebSocketComponentError


class DatabaseConsumer(AsyncWebsocketConsumer):
    """Accepts (the default ``connect``), then fails on the first message: frame and 4005."""

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        raise WebSocketComponentError.database_failure("Database session factory unavailable", user_id="user123")


class CrashConsumer(AsyncWebsocketConsumer):
    """An unexpected exception: frame saying "Generic Internal" and 1011, no exception text."""

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        raise RuntimeError("connection string postgres://app:hunter2@db/app refused")


class AuthConsumer(AsyncWebsocketConsumer):
    """Fails before accept: ws_diag accepts, sends the frame and closes with 4002."""

    async def connect(self) -> None:
        raise WebSocketComponentError.auth_failure("Token expired")


class PolicyConsumer(AsyncWebsocketConsumer):
    """Deliberate closes, which ws_diag leaves alone."""

    async def connect(self) -> None:
        if b"user=mallory" in self.scope["query_string"]:
            await self.close()  # before accept: HTTP 403
        else:
            await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # daphne (autobahn) only sends 1000 and 3000-4999: a 1008 here would make send() raise.
        await self.close(code=4403, reason="Message not allowed")
