"""Facts about real servers that ws_diag relies on (``SERVER-BEHAVIOUR.md``, "Added later"), re-checked.

Raw ASGI apps (and a plain Starlette app) without ws_diag, real servers, the real
``websockets`` client. When a server upgrade changes one of these, this file says
which fact moved before ws_diag's own tests fail in a less obvious way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import multiworker
import pytest
import uvicorn
from hypercorn.utils import UnexpectedMessageError
from litestar import Litestar, websocket
from litestar import WebSocket as LitestarSocket  # Litestar resolves handler annotations at run time
from litestar.exceptions import WebSocketException
from servers import SERVER_KINDS, run_daphne, run_server
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

WAIT_S = 10  # every wait below is bounded by this

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def closed_code(url: str, outgoing: tuple[str, ...] = ()) -> int | None:
    """Connect, send ``outgoing``, read until the server closes; the close code the client saw."""
    async with asyncio.timeout(WAIT_S), connect(url) as ws:
        for text in outgoing:
            await ws.send(text)
        try:
            while True:
                await ws.recv()
        except ConnectionClosed:
            return ws.close_code


# -- uvicorn's default websocket implementation -------------------------------------------------


def test_uvicorn_auto_config_loads_sansio() -> None:
    """Fact: uvicorn's ``--ws auto`` (its default) loads the websockets-sansio implementation."""
    config = uvicorn.Config(lambda *a: None, ws="auto")
    assert config.ws == "auto"  # the default when nothing is said
    config.load()
    assert config.ws_protocol_class is WebSocketsSansIOProtocol


@pytest.mark.asyncio
async def test_uvicorn_default_kind_serves_with_sansio() -> None:
    """Fact: the matrix's ``uvicorn`` row (ws="auto") really serves sessions with websockets-sansio."""
    seen: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        seen.set_result(type(getattr(send, "__self__", None)).__name__)
        await send({"type": "websocket.close", "code": 1000})

    async with run_server(app, "uvicorn") as url:
        with pytest.raises(InvalidStatus):  # closed before accept: HTTP 403
            await closed_code(url)
        assert await asyncio.wait_for(seen, WAIT_S) == "WebSocketsSansIOProtocol"


# -- what an app's close codes become on the wire ------------------------------------------------

DROPPED = 1006  # the client saw no close frame: the server dropped the TCP connection
# App close (code, or a 4005 with a 140-byte reason) -> (code the client sees, reason bytes it gets).
# Measured: websockets-sansio behaves like the legacy implementation here, not like wsproto.
ON_THE_WIRE: dict[str, dict[str, tuple[int, int]]] = {
    "hypercorn": {"1005": (1000, 1), "1006": (1000, 1), "1004": (DROPPED, 0), "long": (4005, 122)},
    "uvicorn": {"1005": (DROPPED, 0), "1006": (DROPPED, 0), "1004": (DROPPED, 0), "long": (DROPPED, 0)},
    "uvicorn-wsproto": {"1005": (1000, 1), "1006": (1000, 1), "1004": (DROPPED, 0), "long": (4005, 122)},
    "uvicorn-websockets": {"1005": (DROPPED, 0), "1006": (DROPPED, 0), "1004": (DROPPED, 0), "long": (DROPPED, 0)},
}


async def closing_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Accept, then close with the code the path names (``/long``: 4005 with a 140-byte reason)."""
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    name = scope["path"].strip("/")
    if name == "long":
        await send({"type": "websocket.close", "code": 4005, "reason": "\u00e9" * 70})
    else:
        await send({"type": "websocket.close", "code": int(name), "reason": "x"})


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_app_close_codes_on_the_wire(kind: str) -> None:
    """Fact: an app's 1005/1006 arrive as 1000 on hypercorn and wsproto but drop the connection on uvicorn's
    default (sansio) and legacy implementations; 1004 is dropped everywhere; a reason over 123 bytes is cut
    to 122 by hypercorn and wsproto and drops the connection on sansio and legacy."""
    seen: dict[str, tuple[int, int]] = {}
    async with run_server(closing_app, kind) as url:
        for name in ON_THE_WIRE[kind]:
            async with asyncio.timeout(WAIT_S), connect(f"{url}/{name}") as ws:
                with contextlib.suppress(ConnectionClosed):
                    await ws.recv()
                assert ws.close_code is not None
                seen[name] = (int(ws.close_code), len((ws.close_reason or "").encode()))
    assert seen == ON_THE_WIRE[kind]


# -- after the client left --------------------------------------------------------------------

# What a send, and a close, after the client's own websocket.disconnect meet, per server kind.
# Measured: websockets-sansio refuses the send but accepts the close (wsproto refuses both).
REFUSAL: dict[str, tuple[type[BaseException] | None, type[BaseException] | None]] = {
    "hypercorn": (None, None),  # discarded silently
    "uvicorn": (ClientDisconnected, None),  # websockets-sansio
    "uvicorn-websockets-sansio": (ClientDisconnected, None),
    "uvicorn-wsproto": (ClientDisconnected, ClientDisconnected),
    "uvicorn-websockets": (RuntimeError, RuntimeError),  # "Unexpected ASGI message ..."
    "granian": (None, None),
}


async def attempt(send: Send, message: dict[str, Any]) -> type[BaseException] | None:
    """The type of what ``send(message)`` raised, or None."""
    try:
        await send(message)
    except Exception as exc:
        return type(exc)
    return None


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", [*SERVER_KINDS, "uvicorn-websockets-sansio", "granian"])
async def test_send_or_close_after_client_left(kind: str) -> None:
    """Fact: after the client left, uvicorn legacy refuses a send or a close with RuntimeError, wsproto with
    OSError (ClientDisconnected), sansio refuses a send with ClientDisconnected (a close passes), hypercorn
    discards both."""
    outcomes: dict[str, type[BaseException] | None] = {}
    done = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        assert (await receive())["type"] == "websocket.disconnect"
        if scope["path"] == "/send":
            outcomes["send"] = await attempt(send, {"type": "websocket.send", "text": "too late"})
        else:
            outcomes["close"] = await attempt(send, {"type": "websocket.close", "code": 1011})
        if len(outcomes) == 2:
            done.set()

    async with run_server(app, kind) as url:
        for path in ("/send", "/close"):
            async with asyncio.timeout(WAIT_S), connect(url + path):
                pass  # the client closes (1000) and leaves
        await asyncio.wait_for(done.wait(), WAIT_S)
    assert (outcomes["send"], outcomes["close"]) == REFUSAL[kind]
    assert issubclass(ClientDisconnected, OSError)


# -- daphne refuses an app's registered close codes ---------------------------------------------


async def daphne_close_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Served by daphne: accept, close with the code the path names, report what send raised, re-raise."""
    await receive()
    await send({"type": "websocket.accept"})
    code = int(scope["path"].strip("/"))
    try:
        await send({"type": "websocket.close", "code": code})
    except Exception as exc:
        print(f"FACT close {code} raised {type(exc).__name__}", file=sys.stderr, flush=True)
        raise
    print(f"FACT close {code} accepted", file=sys.stderr, flush=True)


# The code in the app's websocket.disconnect when the client closes cleanly with 1000.
CLIENT_1000_AS_SEEN_BY_APP = {"hypercorn": 1006, "uvicorn": 1000, "uvicorn-wsproto": 1000, "uvicorn-websockets": 1000}


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_client_clean_close_code_reaches_the_app(kind: str) -> None:
    """Fact: uvicorn hands the app the client's 1000; hypercorn reports 1006 even after a clean closing handshake."""
    departed: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "hi"})
        while (event := await receive())["type"] != "websocket.disconnect":
            pass
        departed.put_nowait(event)

    async with run_server(app, kind) as url, asyncio.timeout(WAIT_S):
        async with connect(url + "/ws") as ws:
            assert await ws.recv() == "hi"
        assert ws.close_code == 1000  # the handshake completed: the server echoed our 1000
        event = await departed.get()
    assert event["code"] == CLIENT_1000_AS_SEEN_BY_APP[kind]


@pytest.mark.asyncio
async def test_daphne_refuses_app_close_1008_and_1012() -> None:
    """Fact: daphne (autobahn) raises a bare Exception from send when the app closes with 1008 or 1012; once it
    escapes the app, the client sees 1011."""
    async with run_daphne("test_server_facts:daphne_close_app") as daphne:
        for code in (1008, 1012):
            assert await closed_code(f"{daphne.url}/{code}") == 1011
            await daphne.await_line(rf"FACT close {code} raised Exception$", WAIT_S)  # a bare Exception
        assert await closed_code(f"{daphne.url}/4008") == 4008  # a private-range code passes
        await daphne.await_line(r"FACT close 4008 accepted", WAIT_S)


# -- graceful stop ------------------------------------------------------------------------------

STOP_CODE = {"hypercorn": 1011, "uvicorn": 1012, "uvicorn-wsproto": 1012, "uvicorn-websockets": 1012}


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_graceful_stop_with_session_open(kind: str) -> None:
    """Fact: a graceful stop with a session open closes it with 1012 on uvicorn and 1011 on hypercorn."""
    accepted = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        accepted.set()
        while (await receive())["type"] != "websocket.disconnect":
            pass

    async with run_server(app, kind) as url:
        ws = await asyncio.wait_for(connect(url), WAIT_S)
        await asyncio.wait_for(accepted.wait(), WAIT_S)
    try:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), WAIT_S)
        assert ws.close_code == STOP_CODE[kind]
    finally:
        await ws.close()


# -- Starlette: a refused send to a peer's socket -----------------------------------------------

# What Starlette raises in B's handler when B sends to A after A's client left, per server kind.
PEER_SEND = {
    "hypercorn": None,  # the server discards the message
    "uvicorn": WebSocketDisconnect,  # ClientDisconnected (an OSError) -> WebSocketDisconnect(1006)
    "uvicorn-wsproto": WebSocketDisconnect,
    "uvicorn-websockets": RuntimeError,  # not an OSError: Starlette lets it through
}


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_starlette_refused_peer_send(kind: str) -> None:
    """Fact: Starlette turns a refused send to a peer's socket (its client left) into WebSocketDisconnect(1006),
    raised in the handler that was sending (uvicorn wsproto and sansio)."""
    peers: dict[str, WebSocket] = {}
    a_gone = asyncio.Event()
    b_done = asyncio.Event()
    raised: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    async def endpoint(websocket: WebSocket) -> None:
        name = websocket.path_params["name"]
        await websocket.accept()
        if name == "a":  # only listens
            peers["a"] = websocket
            assert (await websocket.receive())["type"] == "websocket.disconnect"
            a_gone.set()
            await asyncio.wait_for(b_done.wait(), WAIT_S)  # A's handler is still running when B sends
            return
        await asyncio.wait_for(a_gone.wait(), WAIT_S)
        try:
            await peers["a"].send_text("broadcast")
        except Exception as exc:
            raised.set_result(exc)
        else:
            raised.set_result(None)
        finally:
            b_done.set()
        await websocket.close()

    app = Starlette(routes=[WebSocketRoute("/{name}", endpoint)])
    async with run_server(app, kind) as url, asyncio.timeout(WAIT_S), connect(f"{url}/b") as b:
        async with connect(f"{url}/a"):
            pass  # A's client leaves
        error = await asyncio.wait_for(raised, WAIT_S)
        with pytest.raises(ConnectionClosed):
            await b.recv()
    expected = PEER_SEND[kind]
    assert type(error) is expected if expected else error is None
    if isinstance(error, WebSocketDisconnect):
        assert error.code == 1006
        assert isinstance(error.__context__, ClientDisconnected)


# -- uvicorn lifespan "auto" and Starlette's lazily built middleware ----------------------------


class BrokenMiddleware:
    """Middleware whose construction fails, as one with an invalid setting would."""

    built = 0

    def __init__(self, app: Any) -> None:
        BrokenMiddleware.built += 1
        msg = "invalid setting"
        raise ValueError(msg)


async def http_status(url: str, path: str = "/") -> int:
    """The status of a minimal HTTP/1.1 GET to the server behind ``url``."""
    host, port = url.removeprefix("ws://").split(":")
    async with asyncio.timeout(WAIT_S):
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            response = await reader.read()
        finally:
            writer.close()
            await writer.wait_closed()
    return int(response.split()[1])


@pytest.mark.asyncio
async def test_uvicorn_lifespan_auto_swallows_middleware_build_error(caplog: pytest.LogCaptureFixture) -> None:
    """Fact: uvicorn's lifespan "auto" swallows an exception raised while Starlette builds its add_middleware
    stack on the first lifespan event, starts anyway, and every request then fails with 500."""
    BrokenMiddleware.built = 0
    app = Starlette(middleware=[Middleware(BrokenMiddleware)])
    caplog.set_level("INFO", logger="uvicorn.error")
    async with run_server(app, "uvicorn", options={"lifespan": "auto", "log_level": "info"}) as url:
        assert BrokenMiddleware.built == 1  # built (and failed) on the lifespan startup event
        messages = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "uvicorn.error"]
        assert ("INFO", "ASGI 'lifespan' protocol appears unsupported.") in messages
        assert not [m for level, m in messages if level == "ERROR"]
        assert await http_status(url) == 500
        with pytest.raises(InvalidStatus) as info:
            await closed_code(url + "/ws")
        assert info.value.response.status_code == 500
    assert BrokenMiddleware.built == 3  # tried again on each request


# -- several worker processes and prometheus_client's multi-process files -----------------------

# Each worker sets a livemin gauge at startup; /metrics merges the directory's files.
LIVEMIN_APP = """
from prometheus_client import CollectorRegistry, Gauge, make_asgi_app, multiprocess

up = Gauge("fact_up", "set at startup", multiprocess_mode="livemin")
registry = CollectorRegistry()
multiprocess.MultiProcessCollector(registry)
exporter = make_asgi_app(registry)


async def app(scope, receive, send):
    if scope["type"] != "lifespan":
        return await exporter(scope, receive, send)
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            up.set(0)
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return
"""


@pytest.mark.parametrize("kind", multiworker.KINDS)
def test_killed_worker_respawned_and_its_gauge_file_kept(kind: str, tmp_path: Path) -> None:
    """Fact: uvicorn --workers and gunicorn respawn a SIGKILLed worker; its livemin gauge file stays in
    PROMETHEUS_MULTIPROC_DIR unless gunicorn's child_exit hook calls mark_process_dead (uvicorn has no hook)."""
    (tmp_path / "livemin_app.py").write_text(LIVEMIN_APP)
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    log = tmp_path / "server.log"

    def gauge_file(pid: int) -> Path:
        return metrics_dir / f"gauge_livemin_{pid}.db"

    with multiworker.serving(kind, "livemin_app:app", app_dir=tmp_path, env=env, log=log) as (parent, _):

        def started() -> set[int]:
            workers = multiworker.workers_of(parent)
            return workers if len(workers) == 2 and all(gauge_file(pid).exists() for pid in workers) else set()

        workers = multiworker.poll("two workers with their gauge files", started, log)
        killed = min(workers)
        os.kill(killed, signal.SIGKILL)
        respawned = multiworker.poll("a respawned worker", lambda: killed not in (w := started()) and w, log)
        assert len(respawned - workers) == 1
        if kind == "gunicorn-child_exit":
            multiworker.poll("the hook removing the killed worker's file", lambda: not gauge_file(killed).exists(), log)
        else:
            assert gauge_file(killed).exists()


# -- python-socketio ---------------------------------------------------------------------------


def socketio_recorded(escaped: list[BaseException], sent: list[dict[str, Any]]) -> Any:
    """python-socketio's ASGIApp whose handlers fail, behind a recorder of what crosses the ASGI layer."""
    import socketio

    sio = socketio.AsyncServer(async_mode="asgi", logger=False, engineio_logger=False)

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        if auth:
            raise socketio.exceptions.ConnectionRefusedError("nope")

    @sio.on("boom")
    async def boom(sid: str, data: Any) -> None:
        msg = "event handler failed"
        raise RuntimeError(msg)

    @sio.on("echo")
    async def echo(sid: str, data: Any) -> Any:
        return data

    inner = socketio.ASGIApp(sio)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        async def recording_send(message: dict[str, Any]) -> None:
            sent.append(message)
            await send(message)

        try:
            await inner(scope, receive, recording_send)
        except BaseException as exc:
            escaped.append(exc)
            raise

    return app


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["hypercorn", "uvicorn"])
async def test_socketio_handles_handler_errors_inside_its_protocol(kind: str) -> None:
    """Fact: python-socketio answers handler failures with its own packets; no exception reaches the ASGI layer."""
    escaped: list[BaseException] = []
    sent: list[dict[str, Any]] = []
    async with run_server(socketio_recorded(escaped, sent), kind) as url:
        eio = url + "/socket.io/?EIO=4&transport=websocket"
        async with asyncio.timeout(WAIT_S):
            async with connect(eio) as ws:
                await ws.recv()  # Engine.IO OPEN
                await ws.send('40{"token":"bad"}')
                refused = await ws.recv()
            async with connect(eio) as ws:
                await ws.recv()
                await ws.send("40")
                await ws.recv()
                await ws.send('42["boom",1]')
                await ws.send('421["echo","still here"]')
                acknowledged = await ws.recv()
    assert refused == '44{"message":"nope"}'  # CONNECT_ERROR, inside Engine.IO's websocket
    assert acknowledged == '431["still here"]'  # the session outlived its handler's exception
    assert escaped == []
    closes = [m.get("code", 1000) for m in sent if m["type"] == "websocket.close"]
    assert all(code == 1000 for code in closes)
    assert all(m["text"][:1].isdigit() for m in sent if m["type"] == "websocket.send")


# -- refusals while the client is still there; an app that returns without closing -------------


def recording(app: Callable[..., Awaitable[None]], refused: list[BaseException]) -> Callable[..., Awaitable[None]]:
    """``app`` with every exception its server ``send`` raised appended to ``refused``."""

    async def wrapper(scope: Scope, receive: Receive, send: Send) -> None:
        async def recording_send(message: dict[str, Any]) -> None:
            try:
                await send(message)
            except Exception as exc:
                refused.append(exc)
                raise

        await app(scope, receive, recording_send)

    return wrapper


# What the server's send does with Starlette's HTTP answer to an HTTPException raised after accept,
# and the close code the client then sees (nothing catches what escapes the app).
HTTP_AFTER_ACCEPT: dict[str, tuple[type[BaseException] | None, int]] = {
    "hypercorn": (UnexpectedMessageError, 1011),  # not discarded (0.18): refused, then hypercorn's INTERNAL_ERROR
    "uvicorn": (RuntimeError, DROPPED),  # "Expected ASGI message 'websocket.send' or 'websocket.close', ..."
    "uvicorn-wsproto": (RuntimeError, DROPPED),
    "uvicorn-websockets": (RuntimeError, DROPPED),
    "granian": (RuntimeError, 1005),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", [*SERVER_KINDS, "granian"])
async def test_starlette_http_exception_after_accept(kind: str) -> None:
    """Fact: Starlette answers an HTTPException raised after accept with websocket.http.response.start, which
    uvicorn refuses with RuntimeError (client 1006) and hypercorn with its UnexpectedMessageError, a plain
    Exception (client 1011), while the client is there."""
    from starlette.exceptions import HTTPException

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        raise HTTPException(status_code=503)

    refused: list[BaseException] = []
    app = recording(Starlette(routes=[WebSocketRoute("/", endpoint)]), refused)
    async with run_server(app, kind) as url:
        code = await closed_code(url)
    expected, expected_code = HTTP_AFTER_ACCEPT[kind]
    assert [type(exc) for exc in refused] == ([expected] if expected else [])
    assert code == expected_code


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", [*SERVER_KINDS, "granian"])
async def test_unencodable_text_frame_is_refused_while_connected(kind: str) -> None:
    """Fact: a text frame holding a lone surrogate makes the server's send raise UnicodeEncodeError while the
    client is connected (granian instead sends an empty text frame); the connection stays usable (the app's
    close 4000 that follows arrives)."""
    raised: list[type[BaseException] | None] = []
    received: list[str | bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        raised.append(await attempt(send, {"type": "websocket.send", "text": "model output \ud800"}))
        await send({"type": "websocket.close", "code": 4000})

    async with run_server(app, kind) as url, asyncio.timeout(WAIT_S), connect(url) as ws:
        with contextlib.suppress(ConnectionClosed):
            while True:
                received.append(await ws.recv())
        assert ws.close_code == 4000
    if kind == "granian":
        assert (raised, received) == ([None], [""])
    else:
        assert (raised, received) == ([UnicodeEncodeError], [])


RETURNED_WITHOUT_CLOSE = {
    "hypercorn": 1011,
    "uvicorn": DROPPED,
    "uvicorn-wsproto": DROPPED,
    "uvicorn-websockets": DROPPED,
    "granian": 1005,
}


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", [*SERVER_KINDS, "granian"])
async def test_app_returning_after_accept_without_close(kind: str) -> None:
    """Fact: an app that returns after accept without closing leaves the client a dropped connection (1006) on
    uvicorn and a bare 1011 on hypercorn (its app_send(None) while CONNECTED sends INTERNAL_ERROR)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})

    async with run_server(app, kind) as url:
        assert await closed_code(url) == RETURNED_WITHOUT_CLOSE[kind]


# -- granian: what a send meets once the session ended, a stop by signal -------------------------


@pytest.mark.asyncio
async def test_granian_accepts_sends_after_the_session_ended() -> None:
    """Fact (granian 2.8): a send or close after the app's own close, after its client left, and from another
    task after the handler returned is accepted silently: granian never refuses one as a departure (the only
    refusal seen is its RuntimeError for an HTTP response after accept, above)."""
    outcomes: dict[str, tuple[type[BaseException] | None, type[BaseException] | None]] = {}
    sends: dict[str, Send] = {}
    ended = asyncio.Queue[str]()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        await receive()
        await send({"type": "websocket.accept"})
        if path == "/own-close":
            await send({"type": "websocket.close", "code": 1000})
        elif path == "/heard":
            assert (await receive())["type"] == "websocket.disconnect"
        if path == "/returned":
            sends[path] = send
        else:
            frame = await attempt(send, {"type": "websocket.send", "text": "too late"})
            outcomes[path] = (frame, await attempt(send, {"type": "websocket.close", "code": 1011}))
        ended.put_nowait(path)

    async with run_server(app, "granian") as url, asyncio.timeout(WAIT_S):
        assert await closed_code(url + "/own-close") == 1000
        for path in ("/heard", "/returned"):
            async with connect(url + path):
                pass  # the client leaves (1000)
        while len(outcomes) < 2 or "/returned" not in sends:
            await ended.get()
        returned = sends["/returned"]
        outcomes["/returned"] = (
            await attempt(returned, {"type": "websocket.send", "text": "too late"}),
            await attempt(returned, {"type": "websocket.close", "code": 1011}),
        )
    assert outcomes == dict.fromkeys(("/own-close", "/heard", "/returned"), (None, None))


# Served by `python -m granian` (tests/granian_cli.py): sessions report what they hear; a lifespan shutdown
# that waits (bounded) for them keeps the worker's event loop running until they have heard it.
_granian_sessions: set[int] = set()
_granian_idle = asyncio.Event()  # set when the last session ended


def _say(*words: object) -> None:
    print("FACT", *words, file=sys.stderr, flush=True)


async def granian_stop_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Accept and listen; on websocket.disconnect report its code, then try a frame and a close (1 s each)."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        if _granian_sessions:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_granian_idle.wait(), 5)  # the sessions' own tasks end them
        await send({"type": "lifespan.shutdown.complete"})
        return
    await receive()
    await send({"type": "websocket.accept"})
    _granian_sessions.add(id(scope))
    try:
        while (message := await receive())["type"] != "websocket.disconnect":
            _say("received", message.get("text"))
        _say("disconnect", message.get("code"))
        for message in ({"type": "websocket.send", "text": '{"type":"error"}'}, {"type": "websocket.close"}):
            try:
                async with asyncio.timeout(1):
                    refused = await attempt(send, message)
            except TimeoutError:
                _say("then", message["type"], "pending after 1 s")
            else:
                _say("then", message["type"], refused.__name__ if refused else "accepted")
    finally:
        _granian_sessions.discard(id(scope))
        if not _granian_sessions:
            _granian_idle.set()


@pytest.mark.asyncio
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_granian_stop_drops_sessions_before_the_app_hears(sig: signal.Signals) -> None:
    """Fact (granian 2.8, its command line): on SIGINT or SIGTERM it drops open sessions (client 1006, no close
    frame; about one run in eight a 1000 of its own) and only then hands the app websocket.disconnect (1005); a
    frame the app sends then is accepted and goes nowhere, a close mostly never returns: no Service Restart frame
    can reach a client."""
    from granian_cli import run_granian

    async with run_granian("test_server_facts:granian_stop_app") as server, asyncio.timeout(WAIT_S):
        clients = [await connect(server.url) for _ in range(2)]
        for number, ws in enumerate(clients):
            await ws.send(f"hi {number}")
            await server.await_line(f"FACT received hi {number}")
        server.send_signal(sig)
        received = []
        for ws in clients:
            with pytest.raises(ConnectionClosed):
                received.append(await ws.recv())
        # Dropped (1006, no close frame); about one run in eight granian closes them itself with 1000 instead.
        assert {ws.close_code for ws in clients} <= {DROPPED, 1000}, server.log
        assert received == []
        assert await server.wait_exit() == 0
    heard = server.matching("FACT disconnect")
    assert heard, server.log  # the app's own tasks keep the worker's loop alive: it hears (rarely one does not)
    assert set(heard) == {"FACT disconnect 1005"}
    then = server.matching("FACT then")
    assert [line for line in then if "websocket.send" in line] == ["FACT then websocket.send accepted"] * len(heard)
    closes = {line for line in then if "websocket.close" in line}  # mostly it never returns
    assert len(then) == 2 * len(heard)
    assert closes <= {"FACT then websocket.close pending after 1 s", "FACT then websocket.close accepted"}


RAISED_BEFORE_ACCEPT = {"granian": 403}  # every other server: HTTP 500


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", [*SERVER_KINDS, "granian"])
async def test_app_raising_before_accept(kind: str) -> None:
    """Fact: an app that raises before accept fails the handshake with HTTP 500, on granian with 403."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        msg = "before accept"
        raise RuntimeError(msg)

    async with run_server(app, kind) as url:
        with pytest.raises(InvalidStatus) as info:
            await closed_code(url)
    assert info.value.response.status_code == RAISED_BEFORE_ACCEPT.get(kind, 500)


# -- Litestar: its own error close --------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["uvicorn", "hypercorn"])
async def test_litestar_closes_failures_with_its_own_4500(kind: str) -> None:
    """Fact (litestar 2.25): Litestar catches what a websocket handler raises and closes with 4500 "Internal Server
    Error" (HTTP 500 + 4000) while handling it, or with a WebSocketException's code and detail; nothing reaches the
    server; before accept that close is the server's HTTP 403."""
    handled: list[BaseException | None] = []

    @websocket(["/after", "/detail", "/before"])
    async def handler(socket: LitestarSocket[Any, Any, Any]) -> None:
        name = socket.scope["path"]
        if name == "/before":
            raise LookupError(name)
        await socket.accept()
        if name == "/detail":
            raise WebSocketException(detail="maintenance", code=4503)
        raise LookupError(name)

    inner = Litestar([handler])

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        async def watching_send(message: dict[str, Any]) -> None:
            if message["type"] == "websocket.close":
                handled.append(sys.exception())
            await send(message)

        await inner(scope, receive, watching_send)  # an escaping exception would fail the session differently

    async with run_server(app, kind) as url, asyncio.timeout(WAIT_S):
        async with connect(url + "/after") as ws:
            with pytest.raises(ConnectionClosed):
                await ws.recv()
        assert (ws.close_code, ws.close_reason) == (4500, "Internal Server Error")
        async with connect(url + "/detail") as ws:
            with pytest.raises(ConnectionClosed):
                await ws.recv()
        assert (ws.close_code, ws.close_reason) == (4503, "maintenance")
        with pytest.raises(InvalidStatus) as info:
            await closed_code(url + "/before")
        assert info.value.response.status_code == 403
    assert [type(exc) for exc in handled] == [LookupError, WebSocketException, LookupError]


# -- Starlette's TestClient ---------------------------------------------------------------------


def test_testclient_loses_what_the_app_sent_before_raising() -> None:
    """Fact (starlette 1.x): when the app raises after accept, TestClient closes its message stream (a frame and a
    close the app sent just before are lost: the next receive raises) and re-raises the exception as
    websocket_connect exits."""
    import threading

    import anyio
    from starlette.testclient import TestClient

    ended = threading.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await receive()
            await send({"type": "websocket.accept"})
            await receive()  # the test's message: the block below has been entered
            await send({"type": "websocket.send", "text": '{"type":"error"}'})
            await send({"type": "websocket.close", "code": 4007})
            msg = "Redis is down"
            raise LookupError(msg)
        finally:
            ended.set()

    def receive_once_the_app_ended(ws: Any) -> None:
        ws.send_text("hi")
        assert ended.wait(WAIT_S)
        # The portal's event loop closes the streams as the exception leaves the app, before it runs this call.
        with pytest.raises(anyio.ClosedResourceError):
            ws.receive()

    with pytest.raises(LookupError), TestClient(app).websocket_connect("/ws") as ws:
        receive_once_the_app_ended(ws)
