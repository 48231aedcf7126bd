"""The model behind tests/test_fuzz.py: scripted apps and clients, an in-memory server, and the oracle.

An app is a list of steps (receive, accept, send, close, HTTP denial, raise, return) run
by :class:`ModelApp`, which logs what it tried and what each call returned or raised. A
client is a list of messages plus the app step before which it leaves. :class:`MemoryServer`
plays the server: it records every ``send`` call with the app's send call in progress (or
none: ws_diag's own messages after the app ended), refuses sends after the client left the
way real servers do (``ConnectionResetError``, uvicorn's ``ClientDisconnected``,
uvicorn-websockets' ``RuntimeError`` once the app has received the disconnect, or
hypercorn's silent discard), optionally refuses protocol violations (``RuntimeError``, as
uvicorn does) and registered close codes (``Exception``, as daphne does), and keeps the
wire: what a client would see.

:class:`Oracle` walks the wrapped app's log next to the server's records and asserts that
every message is the app's own, unchanged, except for the documented rewrites (repaired
closes, diagnosed closes and exceptions, the private-range retry), which it checks in
detail. The other checks (exception identity, app-level equivalence with the bare app,
wire validity, at most one close, nothing after a disconnect) are small functions after it.
``real_cases``/``run_real``/``check_real`` do the same through real servers and a real client.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import redis.exceptions
import starlette.websockets
from hypothesis import strategies as st
from uvicorn.protocols.utils import ClientDisconnected

from ws_diag import Classifier, Component, CustomComponent, DiagnosticsMiddleware, DiagSettings, WebSocketComponentError

Message = dict[str, Any]

# -- What RFC 6455 allows on the wire (written from the RFC, not from ws_diag) --------------------

MAX_REASON_BYTES = 123
EDGE_CODES = (0, 1, 999, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1011, 1012, 1014, 1015, 1016)
EDGE_CODES += (2999, 3000, 3999, 4000, 4005, 4999, 5000, 65535)


def sendable(code: object) -> bool:
    """A close code a server may put in a close frame (RFC 6455 7.4 and IANA's 1012-1014)."""
    return isinstance(code, int) and (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999)


def strict_retry_code(code: object) -> int | None:
    """Documented: a registered code (not 1000) a server refuses is retried as code + 3000."""
    return code + 3000 if isinstance(code, int) and code != 1000 and code < 3000 and sendable(code) else None


def repaired_code(code: object) -> int:
    """The documented repair: deliverable codes stay, 1005 (and None, ASGI's default) become 1000, else 1011."""
    if code is None:
        return 1000
    if not isinstance(code, int):
        return 1011
    if sendable(code):
        return code
    return 1000 if code == 1005 else 1011


def rewrites(code: object, accepted: bool, rewrite_codes: frozenset[int]) -> bool:
    """Documented: a close code in rewrite_codes is diagnosed; after accept, also one repaired to such a code."""
    return (isinstance(code, int) and code in rewrite_codes) or (accepted and repaired_code(code) in rewrite_codes)


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

leaf_errors = st.one_of(builtin_errors, component_errors, driver_errors, client_gone_errors, bad_str_errors)


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


Step = Receive | Accept | SendData | Close | HttpStart | HttpBody | Raise | Return

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
any_step = st.one_of(
    st.just(Receive()),
    st.just(Receive()),
    st.just(Accept()),
    st.builds(SendData, data, st.booleans()),
    close_steps,
    st.builds(HttpStart, st.sampled_from([400, 403, 404, 429, 500, 503])),
    st.builds(HttpBody, st.binary(max_size=10), st.booleans()),
    raise_steps,
    st.just(Return()),
)


@st.composite
def app_scripts(draw: st.DrawFn) -> list[Step]:
    """Mostly plausible apps (connect, accept, talk, end), sometimes any steps in any order."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.lists(any_step, min_size=1, max_size=12))
    script: list[Step] = [Receive()]
    if draw(st.integers(0, 2)):  # two in three accept
        script.append(Accept())
    script += draw(st.lists(any_step, max_size=8))
    ending = draw(st.sampled_from(["close", "close", "raise", "raise", "raise_if_disconnected", "return", "none"]))
    if ending == "close":
        script.append(draw(close_steps))
    elif ending == "raise":
        script.append(Raise(draw(exception_specs)))
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

    async def run_step(self, step: Step, receive: Any, send: Any) -> None:
        if isinstance(step, Receive):
            if self.skip_receive():
                self.log.append(AppEvent("skip"))
                return
            message = await receive()
            self.log.append(AppEvent("receive", snapshot=dict(message)))
            if message["type"] == "websocket.disconnect":
                self.saw_disconnect = True
        elif isinstance(step, Accept | SendData | Close | HttpStart | HttpBody):
            await self.send(send, outgoing(step), swallow=getattr(step, "swallow", False))
        elif isinstance(step, Raise):
            if step.if_disconnected and not self.saw_disconnect:
                self.log.append(AppEvent("skip"))
                return
            exc = step.spec.make()
            self.raised.append(exc)
            self.log.append(AppEvent("raise", snapshot={"exception": step.spec.label}))
            raise exc

    async def send(self, send: Any, message: Message, *, swallow: bool = False) -> None:
        event = AppEvent("send", message, dict(message))
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
class Run:
    """One run of a scripted app against the in-memory server."""

    app: ModelApp
    server: MemoryServer
    error: BaseException | None
    leftover_tasks: int


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
    """Run the script bare (``settings`` None) or wrapped, in a fresh event loop."""
    model = ModelApp(steps)
    server = MemoryServer(client, flavour, model)
    model.on_step = server.tick
    middleware = None
    if settings is not None:
        classifier = broken_classifier() if broken_rule else None
        middleware = DiagnosticsMiddleware(model, settings=settings, classifier=classifier)
    app: Any = middleware if middleware is not None else model
    return asyncio.run(_drive(app, model, server, ws_scope(flavour.denial))), middleware


# -- The oracle ---------------------------------------------------------------------------------

GONE = "client-gone"
FALLBACK = "fallback"


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """The documented walk: the exception, group members, cause or (unsuppressed) context, each once."""
    seen: set[int] = set()
    pending = [exc]
    while pending and len(seen) < 16:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        linked = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
        if linked is not None:
            pending.append(linked)


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


def expected_diagnosis(exc: BaseException | None, broken: bool = False) -> tuple[Any, WebSocketComponentError | None]:
    """(component, the component error) for a failure; (GONE, None) or (FALLBACK, None) otherwise.

    Documented order: a disconnect at the top of the chain; a WebSocketComponentError anywhere
    in the chain; the classification rules along the chain (a disconnect among the causes
    too); otherwise Generic Internal (no probes here). A classifier rule that raises
    (``broken``) makes the diagnosis fail: a plain close instead.
    """
    if exc is None:
        return Component.GENERIC, None
    try:
        if _lookup(exc, broken) is GONE:
            return GONE, None
        chain = list(exception_chain(exc))
        for candidate in chain:
            if isinstance(candidate, WebSocketComponentError):
                return candidate.component, candidate
        for candidate in chain:
            outcome = _lookup(candidate, broken)
            if outcome is not None:
                return outcome, None
    except _BrokenRule:
        return FALLBACK, None
    return Component.GENERIC, None


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
    diverged_at: int | None = None


def _frame_and_close(
    component: Any, error: WebSocketComponentError | None, settings: DiagSettings, accepted: bool
) -> dict[str, Any]:
    legacy = settings.code_scheme == "legacy"
    frame_code = component.legacy_code if legacy else component.code
    wire = component.legacy_code if legacy and sendable(component.legacy_code) else component.code
    return {"frame_code": frame_code, "wire_code": wire, "component": component, "error": error, "accepted": accepted}


def check_frame_text(text: str, expect: dict[str, Any], settings: DiagSettings) -> dict[str, Any]:
    """The JSON diagnostic frame: component, code, safe message; returns its ``error`` object."""
    body = json.loads(text)
    assert body["type"] == "error", body
    error = body["error"]
    component = expect["component"]
    assert error["code"] == expect["frame_code"], (error, component)
    assert error["component"] == component.display_name
    assert isinstance(error["incident_id"], str)
    assert len(error["incident_id"]) == 16
    int(error["incident_id"], 16)
    app_error = expect["error"]
    if app_error is None:
        assert error["message"] == component.description  # never exception text
        assert error["user_id"] is None
    else:
        assert isinstance(error["message"], str)
        # Before accept the peer is not trusted yet: the frame names nobody.
        assert error["user_id"] == (app_error.user_id if expect["accepted"] else None), (error, expect)
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

    def check(self) -> Outcome:
        by_call: dict[int | None, list[Record]] = defaultdict(list)
        for record in self.run.server.records:
            by_call[record.app_call].append(record)
        log = self.run.app.log
        for index, event in enumerate(log):
            if event.kind == "receive":
                assert event.snapshot is not None
                if self.settings.track_disconnect and event.snapshot["type"] == "websocket.disconnect":
                    self.state.gone = True
            elif event.kind == "send":
                self._app_send(event, by_call.pop(index, []))
        end = by_call.pop(None, [])
        assert not by_call, f"server calls during no app send: {by_call}"
        self._app_end(end)
        return self.outcome

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

    def _should_rewrite(self, message: Message) -> bool:
        if not self.state.accepted and self.settings.preaccept == "passthrough":
            return False
        return rewrites(message.get("code", 1000), self.state.accepted, self.settings.rewrite_codes)

    def _app_send(self, event: AppEvent, records: list[Record]) -> None:
        message = event.message
        assert message is not None
        kind = message["type"]
        if kind == "websocket.close" and not self.state.finished:
            if self._should_rewrite(message) and not self.state.gone:
                self.state.finished = True
                gone, app_sees = self._intervention(records, None, message)
                self.state.gone = gone
                if app_sees is None:
                    assert event.outcome == "ok", f"the app's rewritten close raised {event.outcome!r}"
                else:
                    assert event.outcome is app_sees
                return
            self.state.finished = True
            if self.state.accepted:
                self._repaired_close(event, records)
            else:
                self._passthrough(event, records)
        else:
            self._passthrough(event, records)
        error = records[0].error
        if error is None:
            if kind == "websocket.accept":
                self.state.accepted = True
            elif kind == "websocket.http.response.start":
                self.state.finished = True
        elif isinstance(error, OSError) and kind != "websocket.send":
            self.state.gone = True  # documented: a failed send (other than the data path's) means the client left

    def _repaired_close(self, event: AppEvent, records: list[Record]) -> None:
        message = event.message
        assert message is not None
        code, reason = message.get("code", 1000), message.get("reason")
        if repaired_code(code) == code and (reason is None or reason_ok(reason)):
            self._passthrough(event, records)
            return
        assert len(records) == 1, records
        record = records[0]
        record.origin = "repair"
        self.outcome.repaired += 1
        got = record.snapshot
        assert got["type"] == "websocket.close"
        assert got["code"] == repaired_code(code), (message, got)
        check_cut_reason(reason, got.get("reason"))
        assert {k: v for k, v in got.items() if k not in ("code", "reason")} == {
            k: v for k, v in message.items() if k not in ("code", "reason")
        }
        self._same_outcome(event, record)

    def _expected_messages(self, exc: BaseException | None, app_close: Message | None) -> list[Any] | str:
        component, error = expected_diagnosis(exc, self.broken_rule)
        if component is GONE:
            self.outcome.client_gone_exceptions += 1
            return GONE
        accepted = self.state.accepted
        if component is FALLBACK:
            self.outcome.fallbacks += 1
            if app_close is not None:
                return [("app_close", app_close)]
            return [("close", {"code": 1011, "reason": ""})] if accepted else []
        expect = _frame_and_close(component, error, self.settings, accepted)
        if not accepted and self.settings.preaccept == "http_denial" and self.denial:
            self.outcome.denials += 1
            return [("http_start", component.http_status), ("http_body", expect)]
        steps: list[Any] = [] if accepted else [("accept", None)]
        return [*steps, ("frame", expect), ("diag_close", expect)]

    def _intervention(
        self, records: list[Record], exc: BaseException | None, app_close: Message | None
    ) -> tuple[bool, BaseException | None]:
        """Check one intervention; returns (client known gone, exception the app's close call sees)."""
        expected = self._expected_messages(exc, app_close)
        if expected == GONE:
            assert records == [], f"nothing may be sent for a departed client, got {records}"
            return True, None
        self.outcome.interventions += 1
        incident: str | None = None
        pending = list(records)

        def take(what: str) -> Record:
            assert pending, f"intervention stopped before {what}: {records} (expected {expected})"
            return pending.pop(0)

        for index, (what, arg) in enumerate(expected):
            record = take(what)
            incident = self._match(record, what, arg, incident, app_close)
            # Documented: no retry when the refused close was the intervention's first message.
            retry_code = strict_retry_code(record.snapshot.get("code")) if what != "accept" and index else None
            if (
                record.error is not None
                and not isinstance(record.error, OSError)
                and record.snapshot["type"] == "websocket.close"
                and retry_code is not None
            ):
                # Documented: a refused registered close code is retried once as code + 3000,
                # when an earlier message of the intervention went through.
                retry = take("the retry in the private range")
                assert retry.snapshot == {**record.snapshot, "code": retry_code}, (record, retry)
                retry.origin, retry.retry = record.origin, True
                self.outcome.strict_retries += 1
                record = retry
            if record.error is None:
                continue
            if isinstance(record.error, OSError):  # the client left: stop, say nothing more
                assert not pending, f"sent after a refused send: {records}"
                return True, None
            # Another refusal: the app's own close (if any) goes out, and its answer reaches the app.
            if app_close is not None:
                resend = take("the app's own close")
                self._match(resend, "app_close", app_close, incident, app_close)
                assert not pending, f"sent after a refused send: {records}"
                return False, resend.error
            assert not pending, f"sent after a refused send: {records}"
            return False, None
        assert not pending, f"extra messages: {records} (expected {expected})"
        return False, None

    def _match(
        self, record: Record, what: str, arg: Any, incident: str | None, app_close: Message | None
    ) -> str | None:
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
        elif what == "close":
            assert got == {"type": "websocket.close", **arg}, got
        elif what == "app_close":
            assert app_close is not None
            if self.state.accepted:
                assert got["code"] == repaired_code(app_close.get("code", 1000))
                check_cut_reason(app_close.get("reason"), got.get("reason"))
                record.origin = "repair"
            else:
                assert got == dict(app_close), (got, app_close)
                record.origin = "app"
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
        if not isinstance(escaped, Exception):  # returned, or a BaseException: untouched
            assert records == [], f"sent after the app ended with {escaped!r}: {records}"
            return
        if state.finished or state.gone or (not state.accepted and self.settings.preaccept == "passthrough"):
            assert records == [], f"sent after a close, a response or a disconnect: {records}"
            return
        self._intervention(records, escaped, None)


def check_exception_identity(run: Run) -> None:
    """The exception that leaves the middleware is the very object the app raised (or let through)."""
    assert run.error is run.app.escaped, f"app raised {run.app.escaped!r}, server got {run.error!r}"


def compare_app_logs(bare: Run, wrapped: Run) -> int | None:
    """The app did the same things and saw the same answers, wrapped or not.

    The one documented exception: a close that ws_diag rewrote or repaired may get another
    answer than the bare app's close (ws_diag absorbs the OSError of a departed client; a
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
        assert records[0].origin in ("ws_diag", "repair"), (index, b, w, records)
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
    """Nothing of ws_diag's after a disconnect the app received (strict), or at most one refused try.

    ``strict`` (track_disconnect): not one message of ws_diag's own once the app has received
    ``websocket.disconnect``. Always: after one of ws_diag's sends is refused, ws_diag sends
    nothing more of its own (the app's own close may follow a non-OSError refusal, and a close
    refused for its code is retried once in the private range, as documented). Known bugs named
    in ``tolerate`` are returned instead of failing.
    """
    seen: list[str] = []
    refused: Record | None = None
    for record in run.server.records:
        if record.origin == "ws_diag":
            if strict:
                assert not record.disconnect_delivered, f"ws_diag sent {record.snapshot} after a disconnect"
            if refused is not None:
                if record.retry and refused.refusal != "code" and "retry-after-refusal" in tolerate:
                    seen.append("retry-after-refusal")
                elif not (record.retry and refused.refusal == "code"):
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
    ending = draw(st.sampled_from(["close", "close", "raise", "raise", "raise_if_disconnected", "return"]))
    if ending == "close":
        script.append(draw(close_steps))
    elif ending == "raise":
        script.append(Raise(draw(exception_specs)))
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
    leftover = len(asyncio.all_tasks() - {asyncio.current_task()})
    return RealRun(model, result, seen["error"], leftover)


def _expected_end(run: RealRun, settings: DiagSettings) -> tuple[str, Any]:
    """What the client should see, from the app's log: (kind, detail).

    kinds: ``close`` (the app's own close, repaired: detail (code, reason)), ``diag`` (frame and
    component close: detail the expected wire code or None if unknown), ``server`` (the server
    decides: the app returned, or raised a client-gone exception), ``handshake`` (no websocket).
    """
    accepted = False
    for event in run.app.log:
        if event.kind != "send" or event.snapshot is None:
            continue
        kind = event.snapshot["type"]
        if kind == "websocket.accept" and event.outcome == "ok":
            accepted = True
        elif kind == "websocket.http.response.start" and event.outcome == "ok" and not accepted:
            return "handshake", event.snapshot["status"]
        elif kind == "websocket.close":
            code = event.snapshot.get("code", 1000)
            if rewrites(code, accepted, settings.rewrite_codes):
                return "diag", 1011
            if not accepted:
                return "handshake", 403
            return "close", (repaired_code(code), event.snapshot.get("reason"))
    escaped = run.app.escaped
    if escaped is None:
        return ("server", None) if accepted else ("handshake", 500)
    component, _ = expected_diagnosis(escaped)
    if component is GONE:  # nothing sent: the server decides (uvicorn drops the handshake of a ClientDisconnected)
        return ("server", None) if accepted else ("handshake", None)
    if component is FALLBACK:
        return ("close", (1011, "")) if accepted else ("handshake", 500)
    return "diag", component.code if settings.code_scheme == "private" else None


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
        if detail is not None:
            assert code == detail == frame["code"], (code, detail, frame)
        assert seen.reason == f"{frame['component']} failure (incident {frame['incident_id']})", seen.reason
    return end
