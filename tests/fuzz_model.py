"""The model behind tests/test_fuzz.py: scripted apps and clients, an in-memory server, and the oracle.

An app is a list of steps (receive, accept, send, close, HTTP denial, raise, return, and
``try: step except: close or raise``) run by :class:`ModelApp`, which logs what it tried,
what each call returned or raised, and what it was handling at each send. A client is a
list of messages plus the app step before which it leaves. :class:`MemoryServer` plays the
server: it records every ``send`` call with the app's send call in progress (or none:
ws_diag's own messages after the app ended), refuses sends after the client left the way
real servers do (``ConnectionResetError``, uvicorn's ``ClientDisconnected``,
uvicorn-websockets' ``RuntimeError`` once the app has received the disconnect, or
hypercorn's silent discard), optionally refuses protocol violations (``RuntimeError``, as
uvicorn does) and registered close codes (``Exception``, as daphne does), and keeps the
wire: what a client would see. A second ``MemoryServer`` whose client left plays another
connection of a broadcasting app: its refusals (and Starlette's ``WebSocketDisconnect``
made of them) are another connection's departure.

:class:`Oracle` walks the wrapped app's log next to the server's records and asserts that
every message is the app's own, unchanged, except for the documented rewrites, which it
checks in detail: departures decided from the connection's own evidence (:func:`departure`:
its own send's ``OSError`` refusals, a tracked disconnect, a disconnect type that did not
come through another connection's send), failure closes (:func:`is_failure_close`) diagnosed
by the exception the app was handling, repaired closes (every undeliverable code becomes
1011), the first refused message as a departure (an app close then handed over unchanged),
the private-range retry of a later close and of the app's own close, the closing 1000 of an
app that returned after accept without closing. It also predicts the ``ws_diag`` records
above DEBUG and the ``on_diagnosis`` events (the ``diagnosis:`` line after delivery, with the code sent). The
other checks (exception identity, app-level equivalence with the bare app, wire validity,
at most one close, nothing after a disconnect) are small functions after it.
``real_cases``/``run_real``/``check_real`` do the same through real servers and a real client.

What the model shares with ws_diag and what it keeps apart. The oracle is an independent model of
every decision it checks, written from the documentation, so a wrong rule in ws_diag cannot make its
own prediction: which close codes RFC 6455 lets a server send (:func:`sendable`, from the RFC), the
repair (:func:`repaired_code`), the private-range retry, what a failure close is, the classification
by dotted type name (``_NAMED``), whose departure it is (:func:`departure`, :func:`_foreign`), the
123-byte reason cut (:func:`check_cut_reason`) and the frame (:func:`check_frame_text`). It imports
only plumbing whose own behaviour is proven elsewhere and which decides nothing the oracle checks:
the exception-chain walk (``ws_diag.classify.exception_chain``: tests/test_classify.py), and
``redact``/``bound_text`` with ``MAX_MESSAGE_BYTES`` for the text a frame carries
(tests/test_redaction.py), so that the oracle predicts the same redacted, bounded message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import redis.exceptions
import starlette.websockets
from hypothesis import strategies as st
from uvicorn.protocols.utils import ClientDisconnected

from ws_diag import (
    Classifier,
    Component,
    CustomComponent,
    DiagnosisEvent,
    DiagnosticsMiddleware,
    DiagSettings,
    WebSocketComponentError,
)
from ws_diag.classify import exception_chain
from ws_diag.redaction import MAX_MESSAGE_BYTES, bound_text, redact

Message = dict[str, Any]

# -- What RFC 6455 allows on the wire (written from the RFC, not from ws_diag) --------------------

MAX_REASON_BYTES = 123
EDGE_CODES = (0, 1, 999, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1011, 1012, 1014, 1015, 1016)
EDGE_CODES += (2999, 3000, 3999, 4000, 4005, 4500, 4503, 4999, 5000, 65535)


def sendable(code: object) -> bool:
    """A close code a server may put in a close frame (RFC 6455 7.4 and IANA's 1012-1014)."""
    return isinstance(code, int) and (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999)


def strict_retry_code(code: object) -> int | None:
    """Documented: a registered code (not 1000) a server refuses is retried as code + 3000."""
    return code + 3000 if isinstance(code, int) and code != 1000 and code < 3000 and sendable(code) else None


def repaired_code(code: object) -> int:
    """The documented repair: deliverable codes stay, None (ASGI's default) is 1000, anything else becomes 1011."""
    if code is None:
        return 1000
    if not isinstance(code, int):
        return 1011
    return code if sendable(code) else 1011


# The seed's numbering: an app closing with one of these reports a failure, whatever rewrite_codes says;
# in the legacy scheme it names the component by itself.
SEED_FAILURE_CODES = {1004: Component.HANDLER, 1005: Component.DATABASE, 1006: Component.DEPENDENCY}


# The HTTP status + 4000 convention's generic "internal server error": a framework's error close (Litestar).
FRAMEWORK_ERROR_CLOSE = 4500


def is_failure_close(
    code: object, accepted: bool, settings: DiagSettings, handling: BaseException | None = None
) -> bool:
    """Documented: a "failure close" of the app, which ws_diag diagnoses.

    A code in rewrite_codes; 1004/1005/1006 always; 4500 while an exception is handled; after
    accept, a code whose repair is in rewrite_codes. Never before accept with preaccept="passthrough".
    """
    if not accepted and settings.preaccept == "passthrough":
        return False
    if isinstance(code, int) and (code in SEED_FAILURE_CODES or code in settings.rewrite_codes):
        return True
    if code == FRAMEWORK_ERROR_CLOSE and handling is not None:
        return True
    return accepted and repaired_code(code) in settings.rewrite_codes


def frame_message_reason(app_close: Message | None, handling: BaseException | None) -> object:
    """Documented: the app's close reason that becomes the frame's message (when non-blank), or None.

    A WebSocketComponentError being handled keeps its own message against a framework's 4500.
    """
    if app_close is None:
        return None
    if app_close.get("code") == FRAMEWORK_ERROR_CLOSE and isinstance(handling, WebSocketComponentError):
        return None
    return app_close.get("reason")


def reason_ok(reason: object) -> bool:
    """A close reason that can go on the wire as it is."""
    if not isinstance(reason, str):
        return False
    try:
        return len(reason.encode("utf-8")) <= MAX_REASON_BYTES
    except UnicodeEncodeError:
        return False


def valid_wire_reason(reason: object) -> bool:
    """Valid UTF-8 text of at most 123 bytes (an empty reason included)."""
    return reason is None or reason_ok(reason)


def check_cut_reason(original: object, cut: object) -> None:
    """The repaired reason: valid, at most 123 bytes, the longest fitting prefix of valid text."""
    assert valid_wire_reason(cut), (original, cut)
    if not isinstance(original, str):
        assert cut in (None, ""), (original, cut)
        return
    try:
        encoded = original.encode("utf-8")
    except UnicodeEncodeError:
        return  # lone surrogates: any valid, short text will do
    assert isinstance(cut, str)
    if len(encoded) <= MAX_REASON_BYTES:
        assert cut == original
    else:
        assert original.startswith(cut), (original, cut)
        assert len(original[: len(cut) + 1].encode("utf-8")) > MAX_REASON_BYTES, (original, cut)


# -- Exceptions an app may raise ----------------------------------------------------------------


class AppError(Exception):
    """An application's own exception type."""


class BadStr(Exception):
    """An exception whose text cannot be computed (ws_diag must cope: it needs no exception text)."""

    def __str__(self) -> str:
        raise ValueError("no text for you")


class AppBaseError(BaseException):
    """A BaseException that is not an Exception."""


BILLING = CustomComponent("billing", "Billing", 4100, description="Billing is down", http_status=503)


@dataclass(frozen=True)
class ExcSpec:
    """How to build a fresh exception, once per run (exceptions carry tracebacks)."""

    label: str
    build: Callable[[], BaseException] = field(repr=False, compare=False)

    def __repr__(self) -> str:
        return self.label

    def make(self) -> BaseException:
        return self.build()


def _spec(label: str, build: Callable[[], BaseException]) -> ExcSpec:
    return ExcSpec(label, build)


_short_text = st.text(max_size=12)

_BUILTIN = (
    ValueError,
    RuntimeError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    AssertionError,
    NotImplementedError,
    RecursionError,
    TimeoutError,
    OSError,
    ConnectionResetError,
    BrokenPipeError,
    AppError,
)


def builtin_error(cls: type[Exception], text: str) -> ExcSpec:
    """``cls(text)``."""
    return _spec(f"{cls.__name__}({text!r})", lambda: cls(text))


builtin_errors = st.builds(builtin_error, st.sampled_from(_BUILTIN), _short_text)

_FACTORIES = (
    "auth_failure",
    "factory_failure",
    "handler_failure",
    "database_failure",
    "dependency_failure",
    "redis_failure",
    "supervisor_failure",
    "bridge_failure",
    "integration_failure",
)


def component_error(factory: str | None, message: str | None, options: dict[str, Any]) -> ExcSpec:
    def build() -> BaseException:
        opts = dict(options)
        if opts.get("root_cause") == "bad-str":
            opts["root_cause"] = BadStr()
        if factory is None:
            return WebSocketComponentError(BILLING, message, **opts)
        return getattr(WebSocketComponentError, factory)(message, **opts)  # type: ignore[no-any-return]

    return _spec(f"WebSocketComponentError.{factory or 'BILLING'}({message!r}, **{options!r})", build)


component_errors = st.builds(
    component_error,
    st.one_of(st.sampled_from(_FACTORIES), st.none()),
    st.one_of(st.none(), _short_text, st.text(min_size=100, max_size=300)),
    st.fixed_dictionaries(
        {"user_id": st.one_of(st.none(), _short_text, _short_text)},
        optional={
            "details": st.dictionaries(_short_text, _short_text, max_size=3),
            "root_cause": st.one_of(_short_text, st.just("bad-str")),
            "retryable": st.booleans(),
        },
    ),
)

_DRIVER = (
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.RedisError,
)


def driver_error(cls: type[Exception], text: str) -> ExcSpec:
    """An asyncpg or redis-py exception."""
    return _spec(f"{cls.__module__}.{cls.__name__}({text!r})", lambda: cls(text))


driver_errors = st.builds(driver_error, st.sampled_from(_DRIVER), _short_text)

client_gone_errors = st.sampled_from(
    [
        _spec("WebSocketDisconnect(1001)", lambda: starlette.websockets.WebSocketDisconnect(1001)),
        _spec("WebSocketDisconnect(1011)", lambda: starlette.websockets.WebSocketDisconnect(1011, "x")),
        _spec("uvicorn ClientDisconnected()", ClientDisconnected),
    ]
)

bad_str_errors = st.just(_spec("BadStr()", BadStr))

# Another connection's departure (a chat app broadcasting): connection A's client left and this
# handler's send to A was refused. Its traceback shows the same server ``send`` bound to another
# connection, so it says nothing about this connection's client: ws_diag must diagnose.
PEER_MARK = "fuzz_peer_send"
# Set on an exception the app raised while it had a received websocket.disconnect in hand (a local
# of the raising frame): the evidence that its own receive yielded the disconnect.
IN_HAND_MARK = "_fuzz_disconnect_in_hand"


def _run_sync(coro: Any) -> BaseException | None:
    """Run a coroutine that only yields bare (``asyncio.sleep(0)``) to its end; its exception, if any."""
    try:
        while True:
            coro.send(None)
    except StopIteration:
        return None
    except BaseException as exc:  # the refusal is the point
        return exc


def peer_refusal() -> BaseException:
    """uvicorn's ClientDisconnected, raised by a second connection's send (its client left)."""
    peer = MemoryServer(Client((), 0, 1006), Flavour("client_disconnected", strict=False, denial=False), ModelApp([]))
    peer.leave()
    error = _run_sync(peer.send({"type": "websocket.send", "text": "broadcast"}))
    assert isinstance(error, ClientDisconnected), error
    setattr(error, PEER_MARK, True)  # provenance for the oracle: raised through another connection's send
    return error


def peer_disconnect() -> BaseException:
    """Starlette's WebSocketDisconnect(1006), raised while handling the peer's refusal."""
    refusal = peer_refusal()
    try:
        try:
            raise refusal
        except OSError:
            raise starlette.websockets.WebSocketDisconnect(1006)  # noqa: B904 - as Starlette does: implicit context
    except starlette.websockets.WebSocketDisconnect as exc:
        return exc


def peer_close_refused() -> BaseException:
    """The handler catches the peer's disconnect and closes the peer: the framework refuses (RuntimeError)."""
    disconnect = peer_disconnect()
    try:
        try:
            raise disconnect
        except starlette.websockets.WebSocketDisconnect:
            raise RuntimeError('Unexpected ASGI message "websocket.close"')  # noqa: B904
    except RuntimeError as exc:
        return exc


PEER_REFUSAL = _spec("peer ClientDisconnected()", peer_refusal)
PEER_DISCONNECT = _spec("peer WebSocketDisconnect(1006)", peer_disconnect)
PEER_CLOSE_REFUSED = _spec("RuntimeError(closing the peer)", peer_close_refused)
peer_errors = st.sampled_from([PEER_REFUSAL, PEER_DISCONNECT, PEER_CLOSE_REFUSED])

leaf_errors = st.one_of(
    builtin_errors, component_errors, driver_errors, client_gone_errors, bad_str_errors, peer_errors
)


def chained(outer: ExcSpec, inner: ExcSpec, how: str) -> ExcSpec:
    def build() -> BaseException:
        exc, cause = outer.make(), inner.make()
        if how == "cause":
            exc.__cause__ = cause
        elif how == "context":
            exc.__context__ = cause
        else:  # context, suppressed: the cause must be ignored
            exc.__context__ = cause
            exc.__suppress_context__ = True
        return exc

    return _spec(f"({outer!r} {how} {inner!r})", build)


def group(members: list[ExcSpec]) -> ExcSpec:
    return _spec(f"ExceptionGroup({members!r})", lambda: ExceptionGroup("several", [m.make() for m in members]))


exception_specs = st.recursive(
    leaf_errors,
    lambda inner: st.one_of(
        st.builds(chained, leaf_errors, inner, st.sampled_from(["cause", "context", "suppressed"])),
        st.builds(group, st.lists(inner, min_size=1, max_size=3)),
    ),
    max_leaves=4,
)

base_exception_specs = st.sampled_from(
    [
        _spec("asyncio.CancelledError()", asyncio.CancelledError),
        _spec("KeyboardInterrupt()", KeyboardInterrupt),
        _spec("SystemExit(3)", lambda: SystemExit(3)),
        _spec("AppBaseError()", AppBaseError),
        _spec("BaseExceptionGroup([KeyboardInterrupt()])", lambda: BaseExceptionGroup("b", [KeyboardInterrupt()])),
    ]
)


# -- Steps of a scripted app --------------------------------------------------------------------

ABSENT: Any = "<absent>"


@dataclass(frozen=True)
class Receive:
    """``await receive()``."""


@dataclass(frozen=True)
class Accept:
    """``websocket.accept``."""


@dataclass(frozen=True)
class SendData:
    """``websocket.send`` with text or bytes; ``swallow``: ignore an exception from send."""

    data: str | bytes
    swallow: bool = False


@dataclass(frozen=True)
class Close:
    """``websocket.close`` with any code and reason (``ABSENT`` leaves the key out)."""

    code: Any = ABSENT
    reason: Any = ABSENT
    swallow: bool = False


@dataclass(frozen=True)
class HttpStart:
    """``websocket.http.response.start`` (the denial extension)."""

    status: int


@dataclass(frozen=True)
class HttpBody:
    """``websocket.http.response.body``."""

    body: bytes
    more_body: bool = False


@dataclass(frozen=True)
class Raise:
    """Raise an exception; with ``if_disconnected`` only once the app has received a disconnect."""

    spec: ExcSpec
    if_disconnected: bool = False


@dataclass(frozen=True)
class Return:
    """Return normally."""


@dataclass(frozen=True)
class Guarded:
    """``try: <first> except Exception: <handler>``: the handler runs while the exception is handled.

    A Close handler is the common hand-written failure path (``except DbError: await
    ws.close(1011)``), whose close ws_diag diagnoses by the handled exception (``sys.exception()``).
    A Raise handler chains: ``raise X`` sets ``__context__``; with ``cause``, ``raise X from exc``.
    """

    first: Step
    handler: Close | Raise
    cause: bool = False


Step = Receive | Accept | SendData | Close | HttpStart | HttpBody | Raise | Return | Guarded

texts = st.one_of(st.text(max_size=20), st.text(min_size=50, max_size=200))
lone_surrogates = st.lists(st.integers(0xD800, 0xDFFF).map(chr), min_size=1, max_size=3).map("".join)
boundary_reasons = st.sampled_from(
    ["", "bye", "é" * 61, "é" * 62, "x" * 122, "x" * 123, "x" * 124, "x" * 130, "😀" * 30, "😀" * 31, "a" + "😀" * 31]
)
reasons = st.one_of(
    st.just(ABSENT),
    boundary_reasons,
    boundary_reasons,
    st.text(max_size=30),
    st.text(alphabet=st.characters(min_codepoint=0x80), min_size=30, max_size=150),  # long multi-byte
    st.builds(lambda a, s, b: a + s + b, st.text(max_size=10), lone_surrogates, st.text(max_size=10)),
    st.sampled_from([None, b"bytes reason", 42, ["x"]]),
)
codes = st.one_of(
    st.just(ABSENT),
    st.sampled_from([1000, 1005, 1006, 1011, 4000, 5000]),
    st.sampled_from(EDGE_CODES),
    st.integers(0, 65535),
    st.sampled_from([None, "1000", 1000.0, [1011]]),  # not an int: ASGI servers vary, ws_diag repairs
)
data = st.one_of(texts, st.binary(max_size=20))

close_steps = st.builds(Close, codes, reasons, st.booleans())
raise_steps = st.builds(Raise, st.one_of(exception_specs, exception_specs, base_exception_specs), st.booleans())
# What a handler guards: its own failure (raised), or a send the server may refuse.
guarded_firsts = st.one_of(
    st.builds(Raise, exception_specs),
    st.builds(Raise, exception_specs),
    st.builds(SendData, data),
    st.builds(Close, codes, reasons),
    st.just(Accept()),
)
# A handler's close: mostly a failure code (``except DbError: await ws.close(1011)``), sometimes anything.
handler_closes = st.builds(
    Close, st.one_of(st.sampled_from([1011, 1011, 1004, 1005, 1006, 1008, 1012, 4000]), codes), reasons
)
guarded_steps = st.builds(
    Guarded, guarded_firsts, st.one_of(handler_closes, handler_closes, st.builds(Raise, exception_specs)), st.booleans()
)
any_step = st.one_of(
    st.just(Receive()),
    st.just(Receive()),
    st.just(Accept()),
    st.builds(SendData, data, st.booleans()),
    close_steps,
    st.builds(HttpStart, st.sampled_from([400, 403, 404, 429, 500, 503])),
    st.builds(HttpBody, st.binary(max_size=10), st.booleans()),
    raise_steps,
    guarded_steps,
    st.just(Return()),
)


@st.composite
def app_scripts(draw: st.DrawFn) -> list[Step]:
    """Mostly plausible apps (connect, accept, talk, end), sometimes any steps in any order, and
    often a hand-written failure path (talk, then ``except ...: await ws.close(code)``)."""
    shape = draw(st.integers(0, 4))
    if shape == 0:
        return draw(st.lists(any_step, min_size=1, max_size=12))
    script: list[Step] = [Receive()]
    if shape == 1:
        if draw(st.integers(0, 4)):
            script.append(Accept())
        talk = st.one_of(st.just(Receive()), st.builds(SendData, data, st.just(True)))
        script += draw(st.lists(talk, max_size=3))
        first = st.one_of(st.builds(Raise, exception_specs), guarded_firsts)
        handler = st.one_of(handler_closes, handler_closes, handler_closes, st.builds(Raise, exception_specs))
        script.append(Guarded(draw(first), draw(handler), draw(st.booleans())))
        return script
    if draw(st.integers(0, 2)):  # two in three accept
        script.append(Accept())
    script += draw(st.lists(any_step, max_size=8))
    ending = draw(
        st.sampled_from(
            ["close", "close", "raise", "raise", "raise_if_disconnected", "handled", "handled", "return", "none"]
        )
    )
    if ending == "close":
        script.append(draw(close_steps))
    elif ending == "raise":
        script.append(Raise(draw(exception_specs)))
    elif ending == "handled":  # except SomeError: await websocket.close(code)
        script.append(Guarded(draw(guarded_firsts), draw(handler_closes)))
    elif ending == "raise_if_disconnected":
        script += [Receive(), Raise(draw(exception_specs), if_disconnected=True), Raise(draw(exception_specs))]
    elif ending == "return":
        script.append(Return())
    return script


# -- Clients and servers ------------------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    """An in-memory client: its messages, and the app step before which it leaves (None: when idle)."""

    messages: tuple[Message, ...]
    leave_at: int | None
    code: int


def _client_message(value: str | bytes) -> Message:
    if isinstance(value, str):
        return {"type": "websocket.receive", "text": value}
    return {"type": "websocket.receive", "bytes": value}


clients = st.builds(
    Client,
    st.lists(data.map(_client_message), max_size=5).map(tuple),
    st.one_of(st.none(), st.integers(0, 12), st.integers(0, 12)),
    st.sampled_from([1000, 1001, 1005, 1006, 1011, 4000]),
)


@dataclass(frozen=True)
class Flavour:
    """How the in-memory server treats sends after the client left, protocol violations and close codes."""

    after_leave: str  # "reset" | "client_disconnected" | "uvicorn_websockets" | "discard"
    strict: bool  # refuse protocol violations with RuntimeError, as uvicorn does
    denial: bool  # scope offers the websocket.http.response extension
    daphne_codes: bool = False  # refuse close codes but 1000 and 3000-4999 with Exception, as daphne does


flavours = st.builds(
    Flavour,
    st.sampled_from(["reset", "client_disconnected", "uvicorn_websockets", "discard"]),
    st.booleans(),
    st.booleans(),
    st.integers(0, 3).map(lambda n: n == 0),
)


def ws_scope(denial: bool) -> dict[str, Any]:
    """A websocket scope, offering the HTTP denial extension or not."""
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "headers": [],
        "scheme": "ws",
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "subprotocols": [],
        "extensions": {"websocket.http.response": {}} if denial else {},
    }


@dataclass
class AppEvent:
    """One thing the model app did: ``send`` (with the message object and outcome), ``receive``, ..."""

    kind: str
    message: Message | None = None
    snapshot: Message | None = None
    outcome: Any = None  # "ok" or the exception the call raised
    handling: BaseException | None = None  # sys.exception() during a send: what the app was handling

    def key(self) -> tuple[Any, ...]:
        """What must be equal between the bare and the wrapped run."""
        outcome = self.outcome if isinstance(self.outcome, str | type(None)) else type(self.outcome).__name__
        return (self.kind, repr(self.snapshot), outcome)


def outgoing(step: Accept | SendData | Close | HttpStart | HttpBody) -> Message:
    """The ASGI message a sending step sends."""
    if isinstance(step, Accept):
        return {"type": "websocket.accept"}
    if isinstance(step, SendData):
        return {"type": "websocket.send", "text" if isinstance(step.data, str) else "bytes": step.data}
    if isinstance(step, Close):
        message: Message = {"type": "websocket.close"}
        if step.code is not ABSENT:
            message["code"] = step.code
        if step.reason is not ABSENT:
            message["reason"] = step.reason
        return message
    if isinstance(step, HttpStart):
        headers = [(b"content-type", b"text/plain")]
        return {"type": "websocket.http.response.start", "status": step.status, "headers": headers}
    return {"type": "websocket.http.response.body", "body": step.body, "more_body": step.more_body}


class ModelApp:
    """Runs a script of steps as an ASGI app and logs everything it does."""

    def __init__(self, steps: list[Step], *, on_step: Callable[[int], None] | None = None) -> None:
        self.steps = steps
        self.on_step = on_step
        self.log: list[AppEvent] = []
        self.escaped: BaseException | None = None
        self.raised: list[BaseException] = []
        self.current: tuple[int, Message] | None = None  # the app's send call in progress
        self.ended = False
        self.done = asyncio.Event()
        self.saw_disconnect = False
        self.disconnect_message: Message | None = None
        self.sent_data = 0  # data messages sent successfully after an accept went through
        self.accepted = False
        self.closing = False  # a close or HTTP response was attempted

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            for index, step in enumerate(self.steps):
                if self.on_step is not None:
                    self.on_step(index)
                if isinstance(step, Return):
                    self.log.append(AppEvent("return"))
                    return
                await self.run_step(step, receive, send)
        except BaseException as exc:
            self.escaped = exc
            raise
        finally:
            self.ended = True
            self.done.set()

    def skip_receive(self) -> bool:
        """Whether to skip a Receive step (real servers: it could block forever)."""
        return False

    def hold_disconnect(self, exc: BaseException) -> Message | None:
        """The received websocket.disconnect, if any, for the raising frame to hold; marks ``exc`` with it."""
        if self.disconnect_message is not None:
            with contextlib.suppress(AttributeError):  # every spec'd exception takes attributes
                setattr(exc, IN_HAND_MARK, True)
        return self.disconnect_message

    async def run_step(self, step: Step, receive: Any, send: Any) -> None:
        if isinstance(step, Receive):
            if self.skip_receive():
                self.log.append(AppEvent("skip"))
                return
            message = await receive()
            self.log.append(AppEvent("receive", snapshot=dict(message)))
            if message["type"] == "websocket.disconnect":
                self.saw_disconnect = True
                self.disconnect_message = message
        elif isinstance(step, Accept | SendData | Close | HttpStart | HttpBody):
            await self.send(send, outgoing(step), swallow=getattr(step, "swallow", False))
        elif isinstance(step, Raise):
            if step.if_disconnected and not self.saw_disconnect:
                self.log.append(AppEvent("skip"))
                return
            exc = step.spec.make()
            _in_hand = self.hold_disconnect(exc)  # a local of the raising frame: the evidence
            self.raised.append(exc)
            self.log.append(AppEvent("raise", snapshot={"exception": step.spec.label}))
            raise exc
        elif isinstance(step, Guarded):
            try:
                await self.run_step(step.first, receive, send)
            except Exception as handled:
                self.log.append(AppEvent("catch", snapshot={"exception": type(handled).__name__}))
                if isinstance(step.handler, Close):
                    await self.run_step(step.handler, receive, send)
                    return
                exc = step.handler.spec.make()
                _in_hand = self.hold_disconnect(exc)  # a local of the raising frame: the evidence
                self.raised.append(exc)
                self.log.append(AppEvent("raise", snapshot={"exception": step.handler.spec.label}))
                if step.cause:
                    raise exc from handled
                raise exc  # noqa: B904 - the implicit context is the point

    async def send(self, send: Any, message: Message, *, swallow: bool = False) -> None:
        event = AppEvent("send", message, dict(message), handling=sys.exception())
        self.log.append(event)
        self.current = (len(self.log) - 1, message)
        kind = message["type"]
        if kind in ("websocket.close", "websocket.http.response.start"):
            self.closing = True
        try:
            await send(message)
        except Exception as exc:
            event.outcome = exc
            if not swallow:
                raise
        else:
            event.outcome = "ok"
            if kind == "websocket.accept":
                self.accepted = True
            elif kind == "websocket.send" and self.accepted:
                self.sent_data += 1
        finally:
            self.current = None


@dataclass
class Record:
    """One ``send`` call the server got."""

    message: Message
    snapshot: Message
    app_call: int | None  # index of the app's send event in progress, None once the app ended
    client_gone: bool  # the client had left
    disconnect_delivered: bool  # a websocket.disconnect had been returned by receive
    verdict: str = "ok"  # ok | ignored (permissive violation) | discarded (client gone) | refused
    error: BaseException | None = None
    refusal: str | None = None  # why it was refused: gone | state | code
    origin: str = "?"  # filled in by the oracle: app | repair | ws_diag
    retry: bool = False  # ws_diag's retry of a refused close in the private range


class MemoryServer:
    """An in-memory websocket server for one connection (see the module docstring)."""

    def __init__(self, client: Client, flavour: Flavour, app: ModelApp) -> None:
        self.client = client
        self.flavour = flavour
        self.app = app
        self.queue: list[Message] = [{"type": "websocket.connect"}, *client.messages]
        self.gone = False
        self.disconnect_delivered = False
        self.receives_after_disconnect = 0
        self.state = "connecting"
        self.records: list[Record] = []
        self.wire: list[tuple[Any, ...]] = []

    def tick(self, index: int) -> None:
        """The app is about to run step ``index``: the client may leave now."""
        if self.client.leave_at is not None and index >= self.client.leave_at:
            self.leave()

    def leave(self) -> None:
        if not self.gone:
            self.gone = True
            self.queue.append({"type": "websocket.disconnect", "code": self.client.code})

    async def receive(self) -> Message:
        if not self.queue:
            if self.gone:
                self.receives_after_disconnect += 1
                self.queue.append({"type": "websocket.disconnect", "code": 1006})
            else:
                self.leave()  # nothing more to say: the client leaves
        message = self.queue.pop(0)
        if message["type"] == "websocket.disconnect":
            self.disconnect_delivered = True
        return dict(message)

    async def send(self, message: Message) -> None:
        if self.app.ended and self.client.leave_at is not None:
            self.leave()  # the client's moment to leave came while the app was finishing
        current = self.app.current
        record = Record(
            message=message,
            snapshot=dict(message),
            app_call=None if self.app.ended else -1 if current is None else current[0],
            client_gone=self.gone,
            disconnect_delivered=self.disconnect_delivered,
        )
        self.records.append(record)
        await asyncio.sleep(0)
        if self.gone:
            error = self._refusal()
            if error is None:
                record.verdict = "discarded"
                return
            record.verdict, record.error, record.refusal = "refused", error, "gone"
            raise error
        if self.flavour.daphne_codes and self.state == "open" and message["type"] == "websocket.close":
            code = message.get("code", 1000)
            if not (code == 1000 or (isinstance(code, int) and 3000 <= code <= 4999)):
                error = Exception(f"invalid close code {code} (must be 1000 or from [3000, 4999])")
                record.verdict, record.error, record.refusal = "refused", error, "code"
                raise error
        if not self._transition(message, record):
            if self.flavour.strict:
                error = RuntimeError(f"Unexpected ASGI message {message['type']!r} in state {self.state}")
                record.verdict, record.error, record.refusal = "refused", error, "state"
                raise error
            record.verdict = "ignored"

    def _refusal(self) -> BaseException | None:
        after = self.flavour.after_leave
        if after == "reset":
            return ConnectionResetError("client disconnected")
        if after == "client_disconnected":
            return ClientDisconnected()
        if after == "uvicorn_websockets":
            if self.disconnect_delivered:
                return RuntimeError("Unexpected ASGI message after sending 'websocket.close'")
            return ClientDisconnected()
        return None

    def _transition(self, message: Message, record: Record) -> bool:
        kind, state = message["type"], self.state
        if state == "connecting" and kind == "websocket.accept":
            self.state = "open"
            self.wire.append(("accept",))
        elif state == "connecting" and kind == "websocket.close":
            self.state = "denied"
            self.wire.append(("http", 403))
        elif state == "connecting" and kind == "websocket.http.response.start":
            self.state = "response"
            self.wire.append(("http", message.get("status")))
        elif state == "open" and kind == "websocket.send":
            self.wire.append(("data", message.get("text", message.get("bytes"))))
        elif state == "open" and kind == "websocket.close":
            self.state = "closed"
            self.wire.append(("close", message.get("code", 1000), message.get("reason"), record))
        elif state == "response" and kind == "websocket.http.response.body":
            self.wire.append(("body", message.get("body")))
            if not message.get("more_body"):
                self.state = "done"
        else:
            return False
        return True


@dataclass
class LogEntry:
    """One record of the ``ws_diag`` logger: level, its ``ws_diag_event``, code, and how many
    server calls had been made when it was logged (to tell "logged after delivery")."""

    level: int
    event: str | None
    code: Any
    message: str
    server_calls: int


class LogTap(logging.Handler):
    """Collects the ``ws_diag`` logger's records (INFO and above) during one wrapped run."""

    def __init__(self, server: MemoryServer) -> None:
        super().__init__(logging.INFO)
        self.server = server
        self.entries: list[LogEntry] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.entries.append(
            LogEntry(
                record.levelno,
                getattr(record, "ws_diag_event", None),
                getattr(record, "code", None),
                record.getMessage(),
                len(self.server.records),
            )
        )


@dataclass
class Run:
    """One run of a scripted app against the in-memory server."""

    app: ModelApp
    server: MemoryServer
    error: BaseException | None
    leftover_tasks: int
    logs: list[LogEntry] = field(default_factory=list)
    events: list[DiagnosisEvent] = field(default_factory=list)  # what on_diagnosis hooks received


async def _drive(app: Any, model: ModelApp, server: MemoryServer, scope: dict[str, Any]) -> Run:
    error: BaseException | None = None
    try:
        await app(scope, server.receive, server.send)
    except BaseException as exc:  # the app's own KeyboardInterrupt and SystemExit too: recorded, not raised
        error = exc
    leftover = len(asyncio.all_tasks() - {asyncio.current_task()})
    return Run(model, server, error, leftover)


def run_in_memory(
    steps: list[Step], client: Client, flavour: Flavour, settings: DiagSettings | None, *, broken_rule: bool = False
) -> tuple[Run, DiagnosticsMiddleware | None]:
    """Run the script bare (``settings`` None) or wrapped, in a fresh event loop.

    Wrapped, the ``ws_diag`` logger's records (INFO and above) and the ``on_diagnosis``
    events are collected into the run.
    """
    model = ModelApp(steps)
    server = MemoryServer(client, flavour, model)
    model.on_step = server.tick
    if settings is None:
        return asyncio.run(_drive(model, model, server, ws_scope(flavour.denial))), None
    events: list[DiagnosisEvent] = []
    classifier = broken_classifier() if broken_rule else None
    middleware = DiagnosticsMiddleware(model, settings=settings, classifier=classifier, on_diagnosis=events.append)
    logger = logging.getLogger("ws_diag")
    tap = LogTap(server)
    level = logger.level
    logger.addHandler(tap)
    logger.setLevel(logging.INFO)
    try:
        run = asyncio.run(_drive(middleware, model, server, ws_scope(flavour.denial)))
    finally:
        logger.removeHandler(tap)
        logger.setLevel(level)
    run.logs, run.events = tap.entries, events
    return run, middleware


# -- The oracle ---------------------------------------------------------------------------------

GONE = "client-gone"
FALLBACK = "fallback"


# The documented classification: connection-class driver errors, and disconnects.
_NAMED = {
    "asyncpg.exceptions.PostgresConnectionError": Component.DATABASE,
    "asyncpg.exceptions.InsufficientResourcesError": Component.DATABASE,
    "asyncpg.exceptions.OperatorInterventionError": Component.DATABASE,
    "asyncpg.exceptions.InvalidAuthorizationSpecificationError": Component.DATABASE,
    "asyncpg.exceptions.ReadOnlySQLTransactionError": Component.DATABASE,
    "asyncpg.exceptions._base.InterfaceError": Component.DATABASE,
    "redis.exceptions.ConnectionError": Component.REDIS,
    "redis.exceptions.TimeoutError": Component.REDIS,
    "redis.exceptions.ReadOnlyError": Component.REDIS,
    "redis.exceptions.ClusterDownError": Component.REDIS,
    "redis.exceptions.TryAgainError": Component.REDIS,
    "starlette.websockets.WebSocketDisconnect": GONE,
    "uvicorn.protocols.utils.ClientDisconnected": GONE,
}


class _BrokenRule(Exception):
    pass


def broken_classifier() -> Classifier:
    """A classifier with a user rule whose predicate raises (for RuntimeError): diagnosis must fall back."""

    def predicate(exc: BaseException) -> bool:
        raise ZeroDivisionError("a buggy predicate")

    classifier = Classifier()
    classifier.register(RuntimeError, Component.SUPERVISOR, predicate=predicate)
    return classifier


def _lookup(exc: BaseException, broken: bool) -> Any:
    for cls in type(exc).__mro__:
        if broken and cls is RuntimeError:
            raise _BrokenRule
        outcome = _NAMED.get(f"{cls.__module__}.{cls.__qualname__}")
        if outcome is not None:
            return outcome
    return None


def _foreign(disconnect: BaseException, own: set[int], peers: bool) -> bool:
    """Documented: a disconnect that came through another connection's send (its own chain says so).

    ``peers``: the peer refusals were raised by the same send function as this connection's
    (the in-memory server's); through a real server they come from another function, which
    says nothing either way.
    """
    for linked in exception_chain(disconnect):
        if id(linked) in own:
            return False
        if peers and getattr(linked, PEER_MARK, False):
            return True
    return False


def departure(exc: BaseException, own: set[int], broken: bool = False, *, peers: bool = True) -> tuple[bool, bool]:
    """(client gone, a classifier rule raised on the way): rule 1, from this connection's own evidence.

    Walking the chain: an ``OSError`` raised through this connection's own ``send`` (``own``: the
    server's refusals; any other refusal, such as uvicorn-websockets' ``RuntimeError``, a strict
    server's protocol refusal or daphne's close-code ``Exception``, is no evidence: the
    intervention's first message decides), or a disconnect type
    that did not come through another connection's send (``peers``: see :func:`_foreign`) and was
    raised with the received ``websocket.disconnect`` in hand (``IN_HAND_MARK``). A rule that
    raises ends the walk: not gone.
    """
    for candidate in exception_chain(exc):
        if id(candidate) in own and isinstance(candidate, OSError):
            return True, False
        try:
            outcome = _lookup(candidate, broken)
        except _BrokenRule:
            return False, True
        if outcome is GONE and not _foreign(candidate, own, peers) and getattr(candidate, IN_HAND_MARK, False):
            return True, False
    return False, False


@dataclass(frozen=True)
class Expected:
    """The diagnosis the documentation predicts."""

    component: Any
    error: WebSocketComponentError | None
    source: str


def expected_diagnosis(
    exc: BaseException | None, broken: bool = False, app_close: Message | None = None, scheme: str = "private"
) -> Expected | str:
    """The expected diagnosis of a failure, or FALLBACK when a classifier rule raises.

    Documented order: in the legacy scheme an app's close 1004/1005/1006 names its component by
    itself; a WebSocketComponentError anywhere in the chain; the classification rules along the
    chain, passing over disconnect types (another connection's departure names no component);
    otherwise Generic (no probes here).
    """
    code = app_close.get("code") if app_close is not None else None
    if scheme == "legacy" and isinstance(code, int) and code in SEED_FAILURE_CODES:
        return Expected(SEED_FAILURE_CODES[code], None, "app")
    if exc is None:
        return Expected(Component.GENERIC, None, "default")
    chain = list(exception_chain(exc))
    for candidate in chain:
        if isinstance(candidate, WebSocketComponentError):
            return Expected(candidate.component, candidate, "app")
    try:
        for candidate in chain:
            outcome = _lookup(candidate, broken)
            if outcome is not None and outcome is not GONE:
                return Expected(outcome, None, "exception")
    except _BrokenRule:
        return FALLBACK
    return Expected(Component.GENERIC, None, "default")


@dataclass
class MwState:
    """What the documentation says the middleware knows about a connection."""

    accepted: bool = False
    finished: bool = False
    gone: bool = False


@dataclass
class Outcome:
    """What the oracle saw: counts for the statistics and facts for the other checks."""

    interventions: int = 0
    frames: int = 0
    fallbacks: int = 0
    repaired: int = 0
    client_gone_exceptions: int = 0
    denials: int = 0
    strict_retries: int = 0
    handled_closes: int = 0  # failure closes sent while the app handled an exception
    handled_departures: int = 0  # ... whose exception said the client left: passed through
    first_refused: int = 0  # ws_diag's first message refused: a departure
    app_close_retries: int = 0  # the app's own close retried in the private range
    peer_diagnosed: int = 0  # interventions for a chain holding another connection's departure
    diverged_at: int | None = None


@dataclass
class Diagnosed:
    """A diagnosis the oracle expects to be logged and handed to on_diagnosis hooks."""

    code: int | None
    status: int | None
    delivered: bool
    last_call: int  # index of the intervention's last server call: the log line comes after it
    exception: BaseException | None  # what the app raised or was handling


def _frame_and_close(expected: Expected, settings: DiagSettings, accepted: bool, reason: object) -> dict[str, Any]:
    component = expected.component
    legacy = settings.code_scheme == "legacy"
    frame_code = component.legacy_code if legacy else component.code
    wire = component.legacy_code if legacy and sendable(component.legacy_code) else component.code
    return {
        "frame_code": frame_code,
        "wire_code": wire,
        "component": component,
        "error": expected.error,
        "source": expected.source,
        "accepted": accepted,
        "reason": reason if isinstance(reason, str) and reason.strip() else None,
    }


def check_frame_text(text: str, expect: dict[str, Any], settings: DiagSettings) -> dict[str, Any]:
    """The JSON diagnostic frame: component, code, safe message, source, retry hint; returns its ``error``."""
    body = json.loads(text)
    assert body["type"] == "error", body
    error = body["error"]
    component = expect["component"]
    assert error["code"] == expect["frame_code"], (error, component)
    assert error["component"] == component.display_name
    assert isinstance(error["incident_id"], str)
    assert len(error["incident_id"]) == 16
    int(error["incident_id"], 16)
    assert error["source"] == expect["source"], (error, expect)
    app_error = expect["error"]
    if expect["reason"] is not None:
        # The app's own non-blank close reason, written for the client: the message (redacted, bounded).
        assert error["message"] == bound_text(redact(expect["reason"]), MAX_MESSAGE_BYTES), (error, expect)
    elif app_error is None:
        assert error["message"] == component.description  # never exception text
    else:
        assert isinstance(error["message"], str)
    if app_error is None:
        assert error["user_id"] is None
        retryable = component.retryable
    else:
        # Before accept the peer is not trusted yet: the frame names nobody.
        assert error["user_id"] == (app_error.user_id if expect["accepted"] else None), (error, expect)
        retryable = app_error.retryable
    assert error["retryable"] is retryable, (error, expect)
    wait = settings.retry_after_by_component.get(component.key, settings.retry_after)
    assert error["retry_after_ms"] == (round(wait * 1000) if retryable else None), (error, expect)
    if not settings.expose_details or not expect["accepted"]:
        assert error["details"] is None, error
        assert error["root_cause"] is None, error
    return error  # type: ignore[no-any-return]


class Oracle:
    """Walks a wrapped run and checks every server record against the documented behaviour."""

    def __init__(self, run: Run, settings: DiagSettings, *, broken_rule: bool = False) -> None:
        self.run = run
        self.settings = settings
        self.broken_rule = broken_rule
        self.denial = run.server.flavour.denial
        self.state = MwState()
        self.outcome = Outcome()
        # Provenance: what this connection's own server send raised.
        self.own = {id(r.error) for r in run.server.records if r.error is not None}
        self.logs: Counter[str] = Counter()  # expected ws_diag records above DEBUG, by ws_diag_event
        self.diagnosed: list[Diagnosed] = []

    def check(self) -> Outcome:
        by_call: dict[int | None, list[Record]] = defaultdict(list)
        for record in self.run.server.records:
            by_call[record.app_call].append(record)
        log = self.run.app.log
        for index, event in enumerate(log):
            if event.kind == "receive":
                assert event.snapshot is not None
                if (
                    self.settings.track_disconnect
                    and event.snapshot["type"] == "websocket.disconnect"
                    and not self.state.finished
                ):
                    self.state.gone = True  # rule 1: a tracked disconnect while the session is open
            elif event.kind == "send":
                self._app_send(event, by_call.pop(index, []))
        end = by_call.pop(None, [])
        assert not by_call, f"server calls during no app send: {by_call}"
        self._app_end(end)
        self._check_logs()
        self._check_events()
        return self.outcome

    def _index(self, record: Record) -> int:
        return next(i for i, r in enumerate(self.run.server.records) if r is record)

    def _departure(self, exc: BaseException) -> bool:
        gone, broke = departure(exc, self.own, self.broken_rule)
        if broke:
            self.logs["fallback"] += 1  # documented: ws_diag's own error, logged; not gone
        return gone

    def _passthrough(self, event: AppEvent, records: list[Record]) -> None:
        assert len(records) == 1, f"{event.snapshot} should pass through once, server got {records}"
        record = records[0]
        assert record.snapshot == event.snapshot, f"{event.snapshot} was replaced by {record.snapshot}"
        record.origin = "app"
        self._same_outcome(event, record)

    @staticmethod
    def _same_outcome(event: AppEvent, record: Record) -> None:
        if record.error is None:
            assert event.outcome == "ok", (event, record)
        else:
            assert event.outcome is record.error, (event, record)

    @staticmethod
    def _app_saw(event: AppEvent, seen: Any) -> None:
        if seen is None:
            assert event.outcome == "ok", f"the app's close raised {event.outcome!r}"
        else:
            assert event.outcome is seen, (event.outcome, seen)

    def _app_send(self, event: AppEvent, records: list[Record]) -> None:
        message = event.message
        assert message is not None
        kind = message["type"]
        if isinstance(event.outcome, BaseException):
            # What a send raises reaches the app as the server raised it: chained to what the app
            # was handling, never to a refusal of ws_diag's own messages.
            assert event.outcome.__context__ is event.handling, (event, event.outcome.__context__)
        if kind == "websocket.close" and not self.state.finished:
            self.state.finished = True
            pending = list(records)
            failure = is_failure_close(message.get("code", 1000), self.state.accepted, self.settings, event.handling)
            if failure and not self.state.gone:
                handled = event.handling
                if handled is not None:
                    self.outcome.handled_closes += 1
                if handled is not None and self._departure(handled):
                    # Rule 3: the handled exception says the client left: the app's close passes through.
                    self.outcome.handled_departures += 1
                    self.state.gone = True
                else:
                    gone, seen = self._intervention(pending, handled, message)
                    self.state.gone = self.state.gone or gone
                    self._app_saw(event, seen)
                    assert not pending, f"sent after the intervention: {records}"
                    return
            self._app_saw(event, self._own_close(pending, message))
            assert not pending, f"sent after the app's close: {records}"
            return
        self._passthrough(event, records)
        error = records[0].error
        if error is None:
            if kind == "websocket.accept":
                self.state.accepted = True
            elif kind == "websocket.http.response.start":
                self.state.finished = True
        elif isinstance(error, OSError) and kind != "websocket.send":
            self.state.gone = True  # documented: a failed send (other than the data path's) means the client left

    @staticmethod
    def _take(pending: list[Record], what: str) -> Record:
        assert pending, f"expected {what}, the server got nothing more"
        return pending.pop(0)

    def _own_close(self, pending: list[Record], message: Message) -> BaseException | None:
        """The app's own close, handed to the server; returns what the app's close call must raise.

        After accept it is repaired (rule 4) and, refused with a non-OSError for a code with a
        strict fallback while the client is not known gone, retried once as code + 3000 (rule 6):
        a refused retry raises the first refusal. Before accept it passes through untouched.
        """
        record = self._take(pending, "the app's close")
        if not self.state.accepted:
            assert record.snapshot == dict(message), (record.snapshot, message)
            record.origin = "app"
        else:
            code, reason = message.get("code", 1000), message.get("reason")
            got = record.snapshot
            assert got["type"] == "websocket.close", got
            assert {k: v for k, v in got.items() if k not in ("code", "reason")} == {
                k: v for k, v in message.items() if k not in ("code", "reason")
            }
            if repaired_code(code) == code and (reason is None or reason_ok(reason)):
                assert got == dict(message), (got, message)
                record.origin = "app"
            else:
                assert got["code"] == repaired_code(code), (message, got)
                check_cut_reason(reason, got.get("reason"))
                record.origin = "repair"
                self.outcome.repaired += 1
                self.logs["repaired"] += 1
        error = record.error
        if error is None:
            return None
        if isinstance(error, OSError):
            self.state.gone = True
            return error
        fallback = strict_retry_code(record.snapshot.get("code", 1000))
        if not self.state.accepted or self.state.gone or fallback is None:
            return error
        retry = self._take(pending, "the app's close retried in the private range")
        assert retry.snapshot == {**record.snapshot, "code": fallback}, (record, retry)
        retry.origin, retry.retry = "repair", True
        if retry.error is not None:
            return error  # documented: the first refusal reaches the app
        self.outcome.app_close_retries += 1
        self.logs["strict_fallback"] += 1
        return None

    def _expected_messages(self, expect: dict[str, Any]) -> list[tuple[str, Any]]:
        if not expect["accepted"] and self.settings.preaccept == "http_denial" and self.denial:
            self.outcome.denials += 1
            return [("http_start", expect["component"].http_status), ("http_body", expect)]
        steps: list[tuple[str, Any]] = [] if expect["accepted"] else [("accept", None)]
        return [*steps, ("frame", expect), ("diag_close", expect)]

    def _intervention(
        self, pending: list[Record], exc: BaseException | None, app_close: Message | None
    ) -> tuple[bool, BaseException | None]:
        """Check one intervention; returns (client gone, what the app's close call must raise)."""
        accepted = self.state.accepted
        expected = expected_diagnosis(exc, self.broken_rule, app_close, self.settings.code_scheme)
        self.outcome.interventions += 1
        if exc is not None and any(getattr(c, PEER_MARK, False) for c in exception_chain(exc)):
            self.outcome.peer_diagnosed += 1
        if expected == FALLBACK:
            # Diagnosing failed (logged): the app's own close goes out as if not a failure, or a plain 1011.
            self.outcome.fallbacks += 1
            self.logs["fallback"] += 1
            if app_close is not None:
                return False, self._own_close(pending, app_close)
            if not accepted:
                return False, None  # the exception goes on to the server (HTTP 500)
            record = self._take(pending, "the fallback close")
            record.origin = "ws_diag"
            assert record.snapshot == {"type": "websocket.close", "code": 1011, "reason": ""}, record
            return record.error is not None, None  # the first message refused: gone, no retry
        assert isinstance(expected, Expected)
        expect = _frame_and_close(expected, self.settings, accepted, frame_message_reason(app_close, exc))
        messages = self._expected_messages(expect)
        incident: str | None = None
        sent: Record | None = None
        last: Record | None = None
        for index, (what, arg) in enumerate(messages):
            record = last = self._take(pending, what)
            incident = self._match(record, what, arg, incident)
            if record.error is None:
                sent = record
                continue
            if index == 0:
                # Rule 5: the first message refused means the client left: DEBUG only, nothing more of
                # ws_diag's, no diagnosis; an app close being diagnosed is handed over unchanged
                # (not repaired, not retried): the server answers it as it would without ws_diag.
                self.outcome.first_refused += 1
                self.state.gone = True
                if app_close is None:
                    return True, None
                handed = self._take(pending, "the app's close, unchanged")
                assert handed.snapshot == dict(app_close), (handed.snapshot, app_close)
                handed.origin = "app"
                return True, handed.error
            retry_code = strict_retry_code(record.snapshot.get("code"))
            if record.snapshot["type"] == "websocket.close" and not isinstance(record.error, OSError) and retry_code:
                retry = last = self._take(pending, "the close retried in the private range")
                assert retry.snapshot == {**record.snapshot, "code": retry_code}, (record, retry)
                retry.origin, retry.retry = "ws_diag", True
                if retry.error is None:
                    self.outcome.strict_retries += 1
                    self.logs["strict_fallback"] += 1
                    sent = retry
                    continue
            # A later message refused: the client left (DEBUG); the diagnosis stands, undelivered.
            self._diagnosed(expect, sent, last, delivered=False, exc=exc)
            return True, None
        assert last is not None
        self._diagnosed(expect, sent, last, delivered=True, exc=exc)
        return False, None

    def _diagnosed(
        self, expect: dict[str, Any], sent: Record | None, last: Record, *, delivered: bool, exc: BaseException | None
    ) -> None:
        """Rule 8: one diagnosis line and one event, with the code actually sent."""
        if expect["accepted"] or self.settings.preaccept != "http_denial" or not self.denial:
            code = expect["wire_code"]
            if sent is not None and sent.snapshot["type"] == "websocket.close":
                code = sent.snapshot["code"]  # 4011 where a strict server refused 1011
            diagnosed = Diagnosed(code, None, delivered, self._index(last), exc)
        else:
            diagnosed = Diagnosed(None, expect["component"].http_status, delivered, self._index(last), exc)
        self.diagnosed.append(diagnosed)
        self.logs["diagnosis"] += 1

    def _match(self, record: Record, what: str, arg: Any, incident: str | None) -> str | None:
        got = record.snapshot
        record.origin = "ws_diag"
        if what == "accept":
            assert got == {"type": "websocket.accept"}, got
        elif what == "frame":
            assert got["type"] == "websocket.send", got
            self.outcome.frames += 1
            return check_frame_text(got["text"], arg, self.settings)["incident_id"]  # type: ignore[no-any-return]
        elif what == "diag_close":
            assert got["type"] == "websocket.close", got
            assert got["code"] == arg["wire_code"], got
            name = arg["component"].display_name
            assert got["reason"] == f"{name} failure (incident {incident})"[:MAX_REASON_BYTES], got
            assert reason_ok(got["reason"])
        elif what == "http_start":
            assert got["type"] == "websocket.http.response.start", got
            assert got["status"] == arg
            assert (b"content-type", b"application/json") in got["headers"]
        elif what == "http_body":
            assert got["type"] == "websocket.http.response.body", got
            self.outcome.frames += 1
            check_frame_text(got["body"].decode(), arg, self.settings)
        else:  # pragma: no cover
            raise AssertionError(what)
        return incident

    def _app_end(self, records: list[Record]) -> None:
        escaped = self.run.app.escaped
        state = self.state
        if isinstance(escaped, asyncio.CancelledError) and state.accepted and not (state.finished or state.gone):
            self._restart(list(records))  # the server cancelled an open session: it is shutting down
            return
        if escaped is None and state.accepted and not (state.finished or state.gone):
            pending = list(records)
            # Rule 9: returned after accept without closing: ws_diag closes with 1000, once; a
            # refusal is the client having left (DEBUG only).
            close = self._take(pending, "the closing 1000")
            close.origin = "ws_diag"
            assert close.snapshot == {"type": "websocket.close", "code": 1000, "reason": ""}, close
            assert not pending, f"sent after the closing 1000: {pending}"
            return
        if not isinstance(escaped, Exception):  # returned, or a BaseException: untouched
            assert records == [], f"sent after the app ended with {escaped!r}: {records}"
            return
        if state.finished or state.gone or (not state.accepted and self.settings.preaccept == "passthrough"):
            assert records == [], f"sent after a close, a response or a disconnect: {records}"
            return
        if self._departure(escaped):
            # Rule 1: this connection's own evidence says its client left: nothing is sent.
            self.outcome.client_gone_exceptions += 1
            assert records == [], f"nothing may be sent for a departed client, got {records}"
            return
        pending = list(records)
        self._intervention(pending, escaped, None)
        assert not pending, f"sent after the intervention: {records}"

    def _restart(self, pending: list[Record]) -> None:
        """A cancelled open session: a Service Restart frame and 1012 (4012 on a strict server), never a diagnosis.

        Delivered like an intervention: the first message refused means the client left (nothing more).
        """
        frame_record = self._take(pending, "the restart frame")
        frame_record.origin = "ws_diag"
        assert frame_record.snapshot["type"] == "websocket.send", frame_record
        frame = json.loads(frame_record.snapshot["text"])["error"]
        assert (frame["code"], frame["component"], frame["source"]) == (1012, "Service Restart", "shutdown"), frame
        assert frame["retryable"] is True, frame
        assert isinstance(frame["retry_after_ms"], int), frame
        if frame_record.error is not None:
            assert not pending, f"sent after a refused restart frame: {pending}"
            return
        close = self._take(pending, "the restart close")
        close.origin = "ws_diag"
        assert close.snapshot == {
            "type": "websocket.close",
            "code": 1012,
            "reason": f"Service Restart (incident {frame['incident_id']})",
        }, close
        if close.error is not None and not isinstance(close.error, OSError):
            retry = self._take(pending, "the restart close retried in the private range")
            assert retry.snapshot == {**close.snapshot, "code": 4012}, retry
            retry.origin, retry.retry = "ws_diag", True
            close = retry
            if retry.error is None:
                self.logs["strict_fallback"] += 1
        if close.error is None:
            self.logs["restart"] += 1
        assert not pending, f"sent after the restart: {pending}"

    def _check_logs(self) -> None:
        """Rules 7 and 8: above DEBUG only what is documented; the diagnosis line after delivery, with the code sent."""
        logs = [entry for entry in self.run.logs if entry.level > logging.DEBUG]
        assert Counter(entry.event for entry in logs) == self.logs, (logs, self.logs)
        lines = [entry for entry in logs if entry.event == "diagnosis"]
        for line, expected in zip(lines, self.diagnosed, strict=True):
            assert line.level == logging.WARNING, line
            assert line.code == (expected.code if expected.status is None else expected.status), (line, expected)
            assert line.server_calls > expected.last_call, f"diagnosis logged before delivery: {line}"
        for entry in logs:
            if entry.event == "fallback":
                assert entry.level == logging.ERROR, entry

    def _check_events(self) -> None:
        """One on_diagnosis event per diagnosis, none for a departure; its code is the code sent."""
        events = self.run.events
        assert len(events) == len(self.diagnosed), (events, self.diagnosed)
        for event, expected in zip(events, self.diagnosed, strict=True):
            assert (event.code, event.http_status, event.delivered) == (
                expected.code,
                expected.status,
                expected.delivered,
            ), (event, expected)
            assert event.exception is expected.exception, (event, expected)


def check_exception_identity(run: Run) -> None:
    """The exception that leaves the middleware is the very object the app raised (or let through)."""
    assert run.error is run.app.escaped, f"app raised {run.app.escaped!r}, server got {run.error!r}"


def compare_app_logs(bare: Run, wrapped: Run) -> int | None:
    """The app did the same things and saw the same answers, wrapped or not.

    The one documented exception: a close that ws_diag rewrote, repaired or retried may get
    another answer than the bare app's close (a diagnosed close returns once the frame went; a
    repaired or retried code is accepted where the app's own was refused); after that the app
    runs on. Returns the index of that divergence, if any.
    """
    for index, (b, w) in enumerate(zip(bare.app.log, wrapped.app.log, strict=False)):
        if b.key() == w.key():
            continue
        assert b.kind == w.kind == "send", (index, b, w)
        assert b.snapshot == w.snapshot, (index, b, w)
        assert b.snapshot is not None
        assert b.snapshot["type"] == "websocket.close", (index, b, w)
        records = [r for r in wrapped.server.records if r.app_call == index]
        assert records, (index, w)
        assert any(r.origin in ("ws_diag", "repair") for r in records), (index, b, w, records)
        return index
    assert len(bare.app.log) == len(wrapped.app.log), (bare.app.log, wrapped.app.log)
    assert type(bare.error) is type(wrapped.error), (bare.error, wrapped.error)
    return None


def check_wire(run: Run) -> None:
    """Every close ws_diag writes or repairs is RFC-valid; on a strict server, every close frame on the wire."""
    for record in run.server.records:
        if record.origin in ("repair", "ws_diag") and record.snapshot["type"] == "websocket.close":
            assert sendable(record.snapshot.get("code", 1000)), f"invalid close code from ws_diag: {record}"
            assert valid_wire_reason(record.snapshot.get("reason")), f"invalid close reason from ws_diag: {record}"
    if run.server.flavour.strict:  # a permissive server lets odd sequences put anything on its wire
        closes = [r for r in run.server.records if r.snapshot["type"] == "websocket.close"]
        for event in run.server.wire:
            # A second close passes through untouched (documented), even when the server refused the first.
            if event[0] == "close" and event[3] is closes[0]:
                assert sendable(event[1]), f"close frame with code {event[1]!r} on the wire"
                assert valid_wire_reason(event[2]), f"close frame with reason {event[2]!r} on the wire"
    assert len([e for e in run.server.wire if e[0] == "close"]) <= 1


def check_counts(run: Run) -> None:
    """At most one close taken by the server unless the app itself sent more; at most one frame of ws_diag's.

    Refused closes (a strict server refusing a code, a departed client) never reach the wire;
    sending nothing after a refusal is check_after_disconnect's business.
    """
    app_closes = sum(
        1 for e in run.app.log if e.kind == "send" and e.snapshot and e.snapshot["type"] == "websocket.close"
    )
    closes = [r for r in run.server.records if r.snapshot["type"] == "websocket.close" and r.verdict != "refused"]
    assert len(closes) <= max(app_closes, 1), (app_closes, run.server.records)
    ours = [r for r in closes if r.origin == "ws_diag"]
    assert len(ours) <= 1, ours
    frames = [r for r in run.server.records if r.origin == "ws_diag" and r.snapshot["type"] == "websocket.send"]
    assert len(frames) <= 1, frames


def check_after_disconnect(run: Run, strict: bool, tolerate: frozenset[str] = frozenset()) -> list[str]:
    """Nothing of ws_diag's after a disconnect the app received (strict), or after a refused message.

    ``strict`` (track_disconnect): not one message of ws_diag's own once the app has received
    ``websocket.disconnect``. Always: after one of ws_diag's messages is refused, ws_diag sends
    nothing more of its own; the only exception is a close refused with a non-OSError, retried
    once in the private range (rule 5: never for ws_diag's first message, which the oracle
    checks). The app's own close may follow a refused first message, during the app's close
    call. Known bugs named in ``tolerate`` are returned instead of failing.
    """
    seen: list[str] = []
    refused: Record | None = None
    for record in run.server.records:
        if record.origin == "ws_diag":
            if strict:
                assert not record.disconnect_delivered, f"ws_diag sent {record.snapshot} after a disconnect"
            if refused is not None:
                retry_allowed = (
                    record.retry
                    and refused.snapshot["type"] == "websocket.close"
                    and not isinstance(refused.error, OSError)
                )
                if not retry_allowed:
                    if "sent-after-refusal" in tolerate:
                        seen.append("sent-after-refusal")
                    else:
                        raise AssertionError(f"ws_diag sent {record.snapshot} after {refused.snapshot} was refused")
            refused = record if record.error is not None else None
        elif refused is not None and record.app_call is None:
            raise AssertionError(f"{record.snapshot} sent after a refused send once the app ended")
    return seen


async def run_with_timeout(coro: Awaitable[Any], seconds: float) -> Any:
    """Await ``coro`` but fail (not hang) after ``seconds``."""
    async with asyncio.timeout(seconds):
        return await coro


# -- Real servers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RealClient:
    """A real websockets client: what it sends after the handshake, and when it leaves.

    ``leave_after``: leave once this many messages were received (None: read until the
    server closes); ``how``: ``close`` (a close frame with ``code``) or ``abort`` (drop TCP).
    """

    texts: tuple[str | bytes, ...]
    leave_after: int | None
    how: str
    code: int


real_clients = st.builds(
    RealClient,
    st.lists(st.one_of(st.text(max_size=20), st.binary(max_size=10)), max_size=4).map(tuple),
    st.one_of(st.none(), st.integers(0, 3), st.integers(0, 1)),
    st.sampled_from(["close", "abort"]),
    st.sampled_from([1000, 1001, 3000, 4000]),
)

real_step = st.one_of(
    st.just(Receive()),
    st.just(Receive()),
    st.just(Accept()),
    st.builds(SendData, data, st.booleans()),
    st.builds(SendData, data, st.booleans()),
    close_steps,
    st.builds(HttpStart, st.sampled_from([400, 403, 404, 429, 500, 503])),
    st.builds(Raise, exception_specs, st.booleans()),
    guarded_steps,
    st.just(Return()),
)


@st.composite
def real_cases(draw: st.DrawFn) -> tuple[list[Step], RealClient]:
    """A client and an app for real servers: no BaseExceptions (they would stop the server),
    denials complete, and often an app that reads everything the client sends, its departure
    included, before it ends (the documented "app consumed the disconnect" case)."""
    client = draw(real_clients)
    script: list[Step] = [Receive()]
    if draw(st.integers(0, 5)):
        script.append(Accept())
    for step in draw(st.lists(real_step, max_size=6)):
        script.append(step)
        if isinstance(step, HttpStart):
            script.append(HttpBody(b"denied"))
    if draw(st.booleans()):  # read it all: the texts, then the disconnect if the client leaves
        for _ in client.texts:
            script.append(Receive())
            if draw(st.booleans()):
                script.append(draw(st.builds(SendData, data, st.booleans())))
        # Enough data for the client to leave, then wait for its departure.
        script += [SendData(draw(data), swallow=True) for _ in range(client.leave_after or 0)]
        script.append(Receive())
    ending = draw(st.sampled_from(["close", "close", "raise", "raise", "raise_if_disconnected", "handled", "return"]))
    if ending == "close":
        script.append(draw(close_steps))
    elif ending == "raise":
        script.append(Raise(draw(exception_specs)))
    elif ending == "handled":  # except SomeError: await websocket.close(code)
        script.append(Guarded(draw(guarded_firsts), draw(handler_closes)))
    elif ending == "raise_if_disconnected":
        script += [Receive(), Raise(draw(exception_specs), if_disconnected=True), Raise(draw(exception_specs))]
    else:
        script.append(Return())
    return script, client


class RealModelApp(ModelApp):
    """A ModelApp that never receives when that could block forever on a real server."""

    def __init__(self, steps: list[Step], client: RealClient) -> None:
        super().__init__(steps)
        self.client = client
        self.received = 0

    def skip_receive(self) -> bool:
        if not self.received:
            self.received += 1
            return False  # websocket.connect
        if not self.accepted or self.closing or self.saw_disconnect:
            return True
        if self.received - 1 < len(self.client.texts):
            self.received += 1
            return False
        leaves = self.client.leave_after is not None and self.sent_data >= self.client.leave_after
        if leaves:
            self.received += 1
        return not leaves


@dataclass
class ClientResult:
    """What the real client saw."""

    status: int | None = None  # the HTTP status of a refused handshake
    handshake_error: BaseException | None = None
    messages: list[str | bytes] = field(default_factory=list)
    code: int | None = None
    reason: str | None = None
    left_first: bool = False  # the client decided to leave before it saw the server's close


async def real_client(url: str, client: RealClient) -> ClientResult:
    """Connect, send, read, maybe leave; never raises for what the server does."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

    result = ClientResult()
    try:
        ws = await connect(url, open_timeout=15, close_timeout=5)
    except InvalidStatus as exc:
        result.status = exc.response.status_code
        return result
    except (InvalidHandshake, OSError, EOFError) as exc:
        result.handshake_error = exc
        return result
    try:
        for text in client.texts:
            await ws.send(text)
    except ConnectionClosed:
        pass  # the server closed first: what it sent before is still to be read
    try:
        leave_after = client.leave_after
        while True:
            if leave_after is not None and len(result.messages) >= leave_after:
                if ws.protocol.close_rcvd is not None:  # the server closed first: read what it sent
                    leave_after = None
                    continue
                result.left_first = True
                if client.how == "close":
                    await ws.close(client.code)
                else:
                    ws.transport.abort()
                break
            result.messages.append(await ws.recv())
    except ConnectionClosed:
        pass
    finally:
        await ws.close()
    result.code, result.reason = ws.close_code, ws.close_reason
    return result


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


@dataclass
class RealRun:
    """One session through a real server."""

    app: RealModelApp
    client: ClientResult
    server_saw: BaseException | None
    leftover_tasks: int


# Tasks a server itself leaves behind, measured with the app alone (no ws_diag): uvicorn's legacy
# websockets implementation leaves its WebSocketServerProtocol.handler running when the app raises
# before accept (uvicorn 0.54, websockets 17.4). They are the server's, not ws_diag's.
SERVER_LEFTOVERS = frozenset({"WebSocketServerProtocol.handler"})


async def run_real(kind: str, steps: list[Step], client: RealClient, settings: DiagSettings) -> RealRun:
    """Serve the scripted app (wrapped) with ``kind`` and talk to it with a real client."""
    from servers import run_server

    model = RealModelApp(steps, client)
    middleware = DiagnosticsMiddleware(model, settings=settings)
    seen: dict[str, BaseException | None] = {"error": None}

    async def outer(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        try:
            await middleware(scope, receive, send)
        except BaseException as exc:
            seen["error"] = exc
            raise

    async with run_server(outer, kind) as url:
        result = await run_with_timeout(real_client(url, client), 40)
        async with asyncio.timeout(20):  # the app finishes on its own: nothing blocks forever
            await model.done.wait()
    leftover = [
        task
        for task in asyncio.all_tasks() - {asyncio.current_task()}
        if getattr(task.get_coro(), "__qualname__", None) not in SERVER_LEFTOVERS
    ]
    return RealRun(model, result, seen["error"], len(leftover))


def _expected_end(run: RealRun, settings: DiagSettings) -> tuple[str, Any]:
    """What the client should see, from the app's log: (kind, detail).

    kinds: ``close`` (the app's own close, repaired: detail (code, reason)), ``diag`` (frame and
    component close: detail (expected wire code or None if unknown, the app's close reason or
    None)), ``server`` (the server decides: the app returned, or ws_diag found that the client
    left), ``handshake`` (no websocket).
    """
    accepted = gone = False
    own = {id(e.outcome) for e in run.app.log if e.kind == "send" and isinstance(e.outcome, BaseException)}
    for event in run.app.log:
        if event.kind != "send" or event.snapshot is None:
            continue
        kind = event.snapshot["type"]
        if kind == "websocket.accept" and event.outcome == "ok":
            accepted = True
        elif kind == "websocket.http.response.start" and event.outcome == "ok" and not accepted:
            return "handshake", event.snapshot["status"]
        elif kind == "websocket.close":
            return _close_end(event, accepted, gone, own, settings)
        elif isinstance(event.outcome, OSError) and kind != "websocket.send":
            gone = True  # documented: a failed accept or HTTP response means the client left
    escaped = run.app.escaped
    if escaped is None:
        return _returned_end(accepted, gone)
    if gone or departure(escaped, own, peers=False)[0]:
        # Nothing sent: the server decides (uvicorn drops the handshake of a ClientDisconnected).
        return ("server", None) if accepted else ("handshake", None)
    if expected_diagnosis(escaped) == FALLBACK:
        return ("close", (1011, "")) if accepted else ("handshake", 500)
    return _diagnosed_end(escaped, settings)


def _returned_end(accepted: bool, gone: bool) -> tuple[str, Any]:
    """The end of a run whose app returned without closing: rule 9, ws_diag closes with 1000 after accept."""
    if not accepted:
        return "handshake", 500
    return ("server", None) if gone else ("close", (1000, ""))


def _close_end(event: AppEvent, accepted: bool, gone: bool, own: set[int], settings: DiagSettings) -> tuple[str, Any]:
    """The end of a run whose app closed first: diagnosed (a failure close), else its own close or a denial."""
    assert event.snapshot is not None
    code = event.snapshot.get("code", 1000)
    handled = event.handling
    if (
        is_failure_close(code, accepted, settings, handled)
        and not gone
        and not (handled is not None and departure(handled, own, peers=False)[0])
    ):
        expected = expected_diagnosis(handled, app_close=event.snapshot, scheme=settings.code_scheme)
        assert isinstance(expected, Expected)
        wire = expected.component.code if settings.code_scheme == "private" else None
        reason = frame_message_reason(event.snapshot, handled)
        return "diag", (wire, reason if isinstance(reason, str) and reason.strip() else None)
    if not accepted:
        return "handshake", 403
    return "close", (repaired_code(code), event.snapshot.get("reason"))


def _diagnosed_end(exc: BaseException | None, settings: DiagSettings) -> tuple[str, Any]:
    """The end of a run diagnosed from ``exc``: frame and component close (its wire code in the private scheme)."""
    expected = expected_diagnosis(exc, scheme=settings.code_scheme)
    assert isinstance(expected, Expected)
    return "diag", (expected.component.code if settings.code_scheme == "private" else None, None)


def _app_data(run: RealRun) -> list[str | bytes]:
    """The data messages the app sent successfully while the connection was open."""
    sent: list[str | bytes] = []
    accepted = False
    for event in run.app.log:
        if event.kind != "send" or event.snapshot is None:
            continue
        kind = event.snapshot["type"]
        if kind == "websocket.accept" and event.outcome == "ok":
            accepted = True
        elif kind in ("websocket.close", "websocket.http.response.start"):
            break
        elif kind == "websocket.send" and accepted and event.outcome == "ok":
            sent.append(event.snapshot.get("text", event.snapshot.get("bytes")))
    return sent


def check_real(run: RealRun, settings: DiagSettings) -> str:
    """The properties a real client can check. Returns the expected-end kind (for statistics)."""
    assert run.leftover_tasks == 0, "a task was left running"
    assert run.server_saw is run.app.escaped, f"app raised {run.app.escaped!r}, server got {run.server_saw!r}"
    seen = run.client
    end, detail = _expected_end(run, settings)
    if seen.status is not None or seen.handshake_error is not None:
        # "server": ws_diag stands back and the server decides; uvicorn's legacy websockets drops
        # the connection before its handshake response when the app raises right after accept.
        if end == "server" and seen.status is None:
            return end
        assert end == "handshake", (end, detail, seen)
        if detail is not None:
            assert seen.status == detail, (detail, seen)
        return end
    assert end != "handshake", (end, detail, seen)
    frames = [m for m in seen.messages if isinstance(m, str) and m.startswith('{"type":"error"')]
    assert len(frames) <= 1, seen.messages
    if frames:
        assert seen.messages[-1] == frames[0], "the diagnostic frame is the last message"
    data = [m for m in seen.messages if m not in frames]
    expected_data = _app_data(run)
    assert data == expected_data[: len(data)], (data, expected_data)
    assert seen.reason is None or len(seen.reason.encode("utf-8")) <= MAX_REASON_BYTES, seen.reason
    if seen.left_first:
        return "client_left"
    assert data == expected_data, (data, expected_data)
    code = seen.code
    if end == "server":
        assert code is not None, seen
        assert sendable(code) or code == 1006, seen  # the server's own choice: 1011 (hypercorn) or 1006 (uvicorn)
        return end
    assert sendable(code), f"the client saw close code {code} ({end}, {detail})"
    if end == "close":
        want_code, want_reason = detail
        assert code == want_code, (code, detail)
        if isinstance(want_reason, str) and reason_ok(want_reason):
            assert seen.reason == want_reason, (seen.reason, want_reason)
        assert not frames, seen.messages
    elif end == "diag":
        assert len(frames) == 1, seen.messages
        frame = json.loads(frames[0])["error"]
        want_code, app_reason = detail
        if want_code is not None:
            assert code == want_code == frame["code"], (code, detail, frame)
        if app_reason is not None:  # the app's own close reason is the frame's message
            assert frame["message"] == bound_text(redact(app_reason), MAX_MESSAGE_BYTES), (frame, app_reason)
        assert seen.reason == f"{frame['component']} failure (incident {frame['incident_id']})", seen.reason
    return end
