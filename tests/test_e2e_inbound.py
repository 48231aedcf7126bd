"""End to end: a client sends garbage; the handler's decoding fails; nobody should retry.

Real servers, a FastAPI app decoding with Starlette's ``receive_json()`` or with
pydantic, and ws_diag's own reconnecting client: the frame names Message Handler
(4004), not retryable, and the client stops instead of sending the same bytes again.
"""

from __future__ import annotations

import json
import logging
import re

import jsonschema
import pydantic
import pytest
from fastapi import FastAPI, WebSocket
from servers import SERVER_KINDS, run_server
from websockets.exceptions import ConnectionClosed

from ws_diag import DiagnosticsMiddleware, DiagSettings
from ws_diag.client import ReconnectEvent, RetryPolicy, reconnecting
from ws_diag.retry import retry_action
from ws_diag.wire.frame import frame_schema

CLIENT_TIMEOUT = 10
# One reconnect allowed: a client that wrongly retries runs the body twice, and the test says so.
POLICY = RetryPolicy(min_delay=0.02, max_delay=0.1, max_attempts=1)


class Message(pydantic.BaseModel):
    """What the pydantic endpoint expects."""

    text: str


def chat_app() -> FastAPI:
    """Echo endpoints decoding with ``receive_json()`` (text and binary) or validating with pydantic."""
    app = FastAPI()

    @app.websocket("/json")
    async def by_receive_json(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:
            data = await websocket.receive_json()
            await websocket.send_json(data)

    @app.websocket("/binary")
    async def by_receive_json_binary(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:
            data = await websocket.receive_json(mode="binary")
            await websocket.send_json(data)

    @app.websocket("/pydantic")
    async def by_pydantic(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:
            message = Message.model_validate_json(await websocket.receive_text())
            await websocket.send_text(message.model_dump_json())

    return app


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("endpoint", "garbage"),
    [("json", "this is not json"), ("binary", b"\xff\xfe not utf-8"), ("pydantic", "this is not json")],
)
@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_garbage_from_the_client_is_the_handlers_and_not_retried(
    kind: str, endpoint: str, garbage: str | bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Undecodable input closes with 4004 Message Handler, not retryable, and the reconnecting client stops."""
    caplog.set_level(logging.INFO, logger="ws_diag")
    events: list[ReconnectEvent] = []
    sessions: list[tuple[str, list[str], int | None]] = []
    async with run_server(DiagnosticsMiddleware(chat_app(), settings=DiagSettings()), kind) as url:
        client = reconnecting(
            f"{url}/{endpoint}",
            policy=POLICY,
            on_event=events.append,
            open_timeout=CLIENT_TIMEOUT,
            close_timeout=CLIENT_TIMEOUT,
        )
        async for ws in client:
            hello = '{"text": "hello"}'
            await ws.send(hello.encode() if endpoint == "binary" else hello)
            echo = await ws.recv(decode=True)
            await ws.send(garbage)
            messages: list[str] = []
            try:
                async for message in ws:
                    messages.append(str(message))
            except ConnectionClosed:
                pass
            sessions.append((echo, messages, ws.close_code))
    assert len(sessions) == 1, sessions  # not reconnected
    echo, messages, code = sessions[0]
    assert json.loads(echo) == {"text": "hello"}
    assert len(messages) == 1, messages
    frame = json.loads(messages[0])
    jsonschema.validate(frame, frame_schema())
    error = frame["error"]
    assert (error["component"], error["code"], error["source"]) == ("Message Handler", 4004, "exception")
    assert error["retryable"] is False
    assert error["retry_after_ms"] is None
    assert code == 4004
    assert retry_action(code, error).kind == "stop"
    assert client.gave_up is not None
    assert client.gave_up.action is not None
    assert client.gave_up.action.kind == "stop"
    assert "not retryable" in client.gave_up.action.why
    assert not [event for event in events if event.kind == "reconnecting"]
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("diagnosis:")]
    assert len(logged) == 1, logged
    assert re.search(r"component=Message Handler code=4004 source=exception ", logged[0]), logged[0]
