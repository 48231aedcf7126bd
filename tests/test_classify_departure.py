"""Whose client left: decided from one connection's own evidence (ws_diag.classify.departure)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect

from ws_diag import Classifier
from ws_diag.classify.departure import CallSite, client_left


class FakeServerConnection:
    """A server's per-connection protocol object: ``send`` is a bound method, as in uvicorn and hypercorn."""

    def __init__(self, *, gone: bool, refusal: type[Exception] = ConnectionResetError) -> None:
        self.gone = gone
        self.refusal = refusal

    async def send(self, message: Any) -> None:
        if self.gone:
            raise self.refusal("client disconnected")


class CallableSend:
    """A send implemented as an instance with ``async def __call__``."""

    def __init__(self, server: FakeServerConnection) -> None:
        self.server = server

    async def __call__(self, message: Any) -> None:
        await self.server.send(message)


def wrapping_send(send: Any) -> Any:
    """A wrapping middleware's send: a closure per connection."""

    async def wrapped(message: Any) -> None:
        await send(message)

    return wrapped


async def starlette_like_send(send: Any) -> None:
    """What Starlette's WebSocket.send does with an OSError: a WebSocketDisconnect(1006) raised in its handler."""
    try:
        await send({"type": "websocket.send", "text": "x"})
    except OSError:
        raise WebSocketDisconnect(code=1006)  # noqa: B904 - Starlette chains by context, as here


async def raised(coro: Any) -> BaseException:
    """The exception ``coro`` raises (it must raise)."""
    try:
        await coro
    except Exception as exc:
        return exc
    pytest.fail("expected an exception")


def test_call_site_needs_something_to_tell_instances_apart() -> None:
    """Bound methods, closures and callable instances have a call site; a module-level function has none."""
    server = FakeServerConnection(gone=False)
    assert CallSite.of(server.send) is not None
    assert CallSite.of(wrapping_send(server.send)) is not None
    assert CallSite.of(CallableSend(server)) is not None
    assert CallSite.of(starlette_like_send) is None
    assert CallSite.of(print) is None


@pytest.mark.parametrize("make_send", [lambda s: s.send, lambda s: wrapping_send(s.send), CallableSend])
def test_own_send_failure_means_own_client_left(make_send: Any) -> None:
    """A disconnect raised through this connection's own send: its client left."""
    mine = FakeServerConnection(gone=True)
    send = make_send(mine)
    exc = asyncio.run(raised(starlette_like_send(send)))
    assert client_left(exc, send, Classifier())


@pytest.mark.parametrize("make_send", [lambda s: s.send, lambda s: wrapping_send(s.send), CallableSend])
def test_peer_send_failure_is_not_this_clients_departure(make_send: Any) -> None:
    """A disconnect raised through another connection's send (a broadcast): this client is still there."""
    mine, peer = FakeServerConnection(gone=False), FakeServerConnection(gone=True)
    exc = asyncio.run(raised(starlette_like_send(make_send(peer))))
    assert isinstance(exc, WebSocketDisconnect)
    assert not client_left(exc, make_send(mine), Classifier())


def test_closing_a_departed_peer_is_not_this_clients_departure() -> None:
    """A RuntimeError raised while handling the peer's disconnect: still the peer's departure, not ours."""
    mine, peer = FakeServerConnection(gone=False), FakeServerConnection(gone=True)

    async def close_peer() -> None:
        try:
            await starlette_like_send(peer.send)
        except WebSocketDisconnect:
            raise RuntimeError('Cannot call "send" once a close message has been sent.')  # noqa: B904

    exc = asyncio.run(raised(close_peer()))
    assert not client_left(exc, mine.send, Classifier())


async def receive_text(receive: Any) -> str:
    """Starlette's receive_text: a disconnect type raised with the received message in hand."""
    message = await receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message["code"])
    return str(message["text"])


def test_disconnect_from_receive_is_this_clients() -> None:
    """A disconnect raised where this connection's receive yielded websocket.disconnect: its client left."""

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.disconnect", "code": 1001}

    mine = FakeServerConnection(gone=False)
    exc = asyncio.run(raised(receive_text(receive)))
    assert client_left(exc, mine.send, Classifier())


def test_disconnect_raised_by_the_app_itself_is_no_evidence() -> None:
    """An endpoint raising WebSocketDisconnect with no disconnect message in hand: its client is still there."""

    async def endpoint() -> None:
        raise WebSocketDisconnect(1011)

    mine = FakeServerConnection(gone=False)
    exc = asyncio.run(raised(endpoint()))
    assert not client_left(exc, mine.send, Classifier())


@pytest.mark.parametrize("refusal", [RuntimeError, UnicodeEncodeError, Exception])
def test_non_oserror_refusal_of_own_send_is_no_departure(refusal: type[Exception]) -> None:
    """A refusal of this connection's own send other than an OSError (uvicorn refusing Starlette's HTTP answer
    after accept, an un-encodable frame, legacy uvicorn after a departure) is no evidence: the frame decides."""

    class Refusing(FakeServerConnection):
        async def send(self, message: Any) -> None:
            if refusal is UnicodeEncodeError:
                "\ud800".encode()
            raise refusal("refused")

    mine = Refusing(gone=False)
    exc = asyncio.run(raised(mine.send({})))
    assert isinstance(exc, refusal)
    assert not client_left(exc, mine.send, Classifier())


def test_oserror_refusal_of_own_send_means_gone() -> None:
    """An OSError from this connection's own send (wsproto's and sansio's ClientDisconnected, a reset): gone."""
    mine = FakeServerConnection(gone=True, refusal=BrokenPipeError)
    exc = asyncio.run(raised(mine.send({})))
    assert client_left(exc, mine.send, Classifier())


def test_unrelated_exception_is_not_a_departure() -> None:
    """An app bug with no disconnect and no send failure in its chain: the client is still there."""
    mine = FakeServerConnection(gone=False)
    assert not client_left(KeyError("x"), mine.send, Classifier())
