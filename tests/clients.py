"""A real ``websockets`` client for the end-to-end tests: what a session saw."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jsonschema
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ws_diag.wire.frame import frame_schema

__all__ = ["CLIENT_TIMEOUT", "Session", "talk"]

CLIENT_TIMEOUT = 10


@dataclass
class Session:
    """What a real client saw."""

    messages: list[str]
    code: int | None
    reason: str | None

    @property
    def frames(self) -> list[dict[str, Any]]:
        """Every diagnostic frame received, each checked against the schema."""
        frames = [json.loads(m) for m in self.messages if m.startswith('{"type":"error"')]
        for frame in frames:
            jsonschema.validate(frame, frame_schema())
        return [frame["error"] for frame in frames]

    @property
    def frame(self) -> dict[str, Any]:
        """The single diagnostic frame."""
        frames = self.frames
        assert len(frames) == 1, self.messages
        return frames[0]


async def talk(url: str, outgoing: Iterable[str] = ("hello",), *, headers: Iterable[tuple[str, str]] = ()) -> Session:
    """Connect (extra request ``headers``), send ``outgoing``, read until the server closes (within CLIENT_TIMEOUT).

    A session that fails before accept is closed by the server right after the
    handshake, so send nothing to it (``outgoing=()``): a send could meet the close first.
    """
    messages: list[str] = []
    async with asyncio.timeout(CLIENT_TIMEOUT), connect(url, additional_headers=list(headers)) as ws:
        try:
            for text in outgoing:
                await ws.send(text)
            while True:
                message = await ws.recv()
                messages.append(message if isinstance(message, str) else message.decode())
        except ConnectionClosed:
            pass
        return Session(messages, ws.close_code, ws.close_reason)
