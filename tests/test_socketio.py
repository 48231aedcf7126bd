"""Socket.IO under ws_diag: python-socketio's ``ASGIApp`` wrapped in DiagnosticsMiddleware changes nothing.

python-socketio handles its handlers' failures inside its own protocol: a
connect handler that returns ``False`` or raises ``ConnectionRefusedError``
becomes a CONNECT_ERROR packet (``44{"message": ...}``), any other exception in
a handler is logged by python-socketio/Engine.IO and the session goes on, a
server-side ``disconnect()`` is a DISCONNECT packet (``41``); no exception
reaches the ASGI layer, and Engine.IO ends its websocket with 1000 (or the
server with its own 1012 on shutdown). So ws_diag never diagnoses anything
there, and it must not: every text message on an Engine.IO websocket is a
packet whose first character is its type digit (``0`` open, ``1`` close, ``2``
ping, ``3`` pong, ``4`` message, with Socket.IO's own type after it: ``40``
connect, ``41`` disconnect, ``42`` event, ``43`` ack, ``44`` connect error).
ws_diag's JSON frame (``{"type": "error", ...}``) starts with ``{``, which is no
packet type: a Socket.IO client would treat it as a protocol error, never as a
diagnosis (measured with a middleware that sends one after the accept: python-engineio's
client fails with ``ValueError: invalid literal for int() with base 10: '{'``).
Its close codes (4000-4999) would mean nothing to Socket.IO either.

Each test runs the same scenarios against the bare ``ASGIApp`` and against it
wrapped in ws_diag, under real servers, and compares what the client saw: the
raw Engine.IO transcript (every frame, the close code) with the ``websockets``
client, and the events of the real ``socketio.AsyncClient``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest
import socketio
from servers import run_server
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ws_diag import DiagnosticsMiddleware, DiagSettings

WAIT_S = 10  # every wait below is bounded by this
KINDS = ("hypercorn", "uvicorn")
EIO_PATH = "/socket.io/?EIO=4&transport=websocket"
_SID = re.compile(r'"sid":"[^"]+"')

# (name, Socket.IO CONNECT packet, packets sent after it, replies to read before the client closes)
RAW_SCENARIOS: tuple[tuple[str, str, tuple[str, ...], int], ...] = (
    ("connected, an acknowledged event", "40", ('421["echo","hi"]',), 2),
    ("connect handler returns False", '40{"kind":"refuse"}', (), 1),
    ("connect handler raises ConnectionRefusedError", '40{"kind":"reject"}', (), 1),
    ("connect handler raises RuntimeError", '40{"kind":"crash"}', (), 0),
    ("event handler raises, then an acknowledged event", "40", ('42["boom",1]', '421["echo","after"]'), 2),
    ("server-side disconnect", "40", ('42["kick",1]',), 2),
)


def socketio_app(wrapped: bool) -> Any:
    """A Socket.IO server whose handlers fail in every way a handler can; wrapped in ws_diag or not."""
    sio = socketio.AsyncServer(async_mode="asgi", logger=False, engineio_logger=False)

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> bool | None:
        kind = (auth or {}).get("kind")
        if kind == "refuse":
            return False
        if kind == "reject":
            raise socketio.exceptions.ConnectionRefusedError("nope", {"retry": 5})
        if kind == "crash":
            msg = "connect handler failed"
            raise RuntimeError(msg)
        return None

    @sio.on("boom")
    async def boom(sid: str, data: Any) -> None:
        msg = "event handler failed"
        raise RuntimeError(msg)

    @sio.on("kick")
    async def kick(sid: str, data: Any) -> None:
        await sio.disconnect(sid)

    @sio.on("echo")
    async def echo(sid: str, data: Any) -> Any:
        return data

    app = socketio.ASGIApp(sio)
    return DiagnosticsMiddleware(app, settings=DiagSettings()) if wrapped else app


def normalise(frame: str | bytes) -> str | bytes:
    """A frame with its session ids blanked (they differ between runs)."""
    return _SID.sub('"sid":"-"', frame) if isinstance(frame, str) else frame


async def drain(ws: ClientConnection, frames: list[str | bytes]) -> tuple[int | None, str]:
    """Read until the connection is closed; the close code and reason the client saw."""
    try:
        while True:
            frames.append(normalise(await ws.recv()))
    except ConnectionClosed:
        pass
    return ws.close_code, ws.close_reason


async def raw_session(url: str, connect_packet: str, sends: tuple[str, ...], replies: int) -> list[Any]:
    """One Engine.IO websocket session: the frames the client received, then the close code and reason."""
    frames: list[str | bytes] = []
    async with asyncio.timeout(WAIT_S):
        async with connect(url + EIO_PATH) as ws:
            frames.append(normalise(await ws.recv()))  # Engine.IO OPEN
            await ws.send(connect_packet)
            for packet in sends:
                await ws.send(packet)
            for _ in range(replies):
                frames.append(normalise(await ws.recv()))
        code, reason = await drain(ws, frames)
    return [*frames, ("close", code, reason)]


def assert_engineio_only(transcript: list[Any]) -> None:
    """Every text frame is an Engine.IO packet: it starts with a packet type digit, never with ws_diag's ``{``."""
    for frame in transcript[:-1]:
        assert isinstance(frame, str), frame
        assert frame[:1] in set("0123456"), frame
        assert '"type":"error"' not in frame, frame


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_socketio_raw_transcript_is_unchanged_by_ws_diag(kind: str) -> None:
    """Socket.IO's own failures reach the raw Engine.IO client identically with and without ws_diag, no frame added."""
    seen: dict[bool, dict[str, list[Any]]] = {}
    for wrapped in (False, True):
        async with run_server(socketio_app(wrapped), kind) as url:
            seen[wrapped] = {
                name: await raw_session(url, packet, sends, replies) for name, packet, sends, replies in RAW_SCENARIOS
            }
    assert seen[True] == seen[False]
    for transcript in seen[True].values():
        assert_engineio_only(transcript)
        assert transcript[-1] == ("close", 1000, "")
    assert seen[True]["connect handler returns False"][1] == '44{"message":"Connection rejected by server"}'
    assert seen[True]["connect handler raises ConnectionRefusedError"][1] == '44{"message":"nope","data":{"retry":5}}'
    assert seen[True]["event handler raises, then an acknowledged event"][2] == '431["after"]'
    assert seen[True]["server-side disconnect"][2] == "41"


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", [*KINDS, "uvicorn-wsproto"])
async def test_socketio_server_shutdown_is_unchanged_by_ws_diag(kind: str) -> None:
    """A server stopping under an open Socket.IO session closes it as without ws_diag: no Service Restart frame."""
    seen: dict[bool, list[Any]] = {}
    for wrapped in (False, True):
        frames: list[str | bytes] = []
        async with asyncio.timeout(WAIT_S):
            async with run_server(socketio_app(wrapped), kind) as url:
                ws = await connect(url + EIO_PATH)
                frames.append(normalise(await ws.recv()))
                await ws.send("40")
                frames.append(normalise(await ws.recv()))
            code, reason = await drain(ws, frames)  # the server is gone: the close has arrived or never will
        seen[wrapped] = [*frames, ("close", code, reason)]
    assert seen[True] == seen[False]
    assert_engineio_only(seen[True])


async def client_session(url: str, auth: dict[str, Any] | None, actions: Callable[..., Any] | None) -> list[Any]:
    """What the real ``socketio.AsyncClient`` reports for one session: its events, in order."""
    events: list[Any] = []
    client = socketio.AsyncClient(reconnection=False, logger=False, engineio_logger=False)
    kicked = asyncio.Event()

    @client.event
    async def connect() -> None:
        events.append("connect")

    @client.event
    async def connect_error(data: Any) -> None:
        events.append(("connect_error", data))

    @client.event
    async def disconnect(reason: Any = None) -> None:
        events.append(("disconnect", reason))
        kicked.set()

    async with asyncio.timeout(WAIT_S):
        try:
            await client.connect(url.replace("ws://", "http://"), transports=["websocket"], auth=auth, wait_timeout=1)
        except socketio.exceptions.ConnectionError as exc:
            events.append(("connect failed", str(exc)))
        else:
            if actions is not None:
                await actions(client, events, kicked)
        await client.disconnect()
        await client.shutdown()
    return events


async def _echo(client: socketio.AsyncClient, events: list[Any], kicked: asyncio.Event) -> None:
    events.append(("ack", await client.call("echo", "hi", timeout=WAIT_S)))


async def _boom_then_echo(client: socketio.AsyncClient, events: list[Any], kicked: asyncio.Event) -> None:
    await client.emit("boom", 1)
    events.append(("ack", await client.call("echo", "after", timeout=WAIT_S)))


async def _kicked(client: socketio.AsyncClient, events: list[Any], kicked: asyncio.Event) -> None:
    await client.emit("kick", 1)
    await kicked.wait()


CLIENT_SCENARIOS: tuple[tuple[str, dict[str, Any] | None, Callable[..., Any] | None], ...] = (
    ("connected, an acknowledged event", None, _echo),
    ("connect handler returns False", {"kind": "refuse"}, None),
    ("connect handler raises ConnectionRefusedError", {"kind": "reject"}, None),
    ("connect handler raises RuntimeError", {"kind": "crash"}, None),
    ("event handler raises, then an acknowledged event", None, _boom_then_echo),
    ("server-side disconnect", None, _kicked),
)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_socketio_client_sees_the_same_with_ws_diag(kind: str) -> None:
    """The real socketio.AsyncClient reports the same events for every failure with and without ws_diag."""
    seen: dict[bool, dict[str, list[Any]]] = {}
    for wrapped in (False, True):
        async with run_server(socketio_app(wrapped), kind) as url:
            seen[wrapped] = {name: await client_session(url, auth, actions) for name, auth, actions in CLIENT_SCENARIOS}
    assert seen[True] == seen[False]
    assert seen[True]["connected, an acknowledged event"] == [
        "connect",
        ("ack", "hi"),
        ("disconnect", "client disconnect"),
    ]
    assert ("connect_error", {"message": "nope", "data": {"retry": 5}}) in seen[True][
        "connect handler raises ConnectionRefusedError"
    ]
    assert ("ack", "after") in seen[True]["event handler raises, then an acknowledged event"]
    assert ("disconnect", "server disconnect") in seen[True]["server-side disconnect"]
