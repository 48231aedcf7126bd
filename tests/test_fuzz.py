"""Protocol fuzzing with Hypothesis: scripted apps and clients, in-process and through real servers.

In-process, each example runs one scripted app twice against the in-memory server, bare and
wrapped, and checks: the wrapped app's messages equal the bare app's but for the documented
rewrites (the oracle in ``fuzz_model.py``), every close ws_diag writes is RFC-valid with a
reason of at most 123 bytes, at most one close and one diagnostic frame, nothing of ws_diag's
after a refused send or (with ``track_disconnect``) after a disconnect the app received, the
app's exception object is what leaves the middleware, ws_diag's records above DEBUG and its
``on_diagnosis`` events are exactly the documented ones, and no task is left running. Through
every server of ``SERVER_KINDS`` (hypercorn, uvicorn's default sansio, wsproto and legacy
websockets) a real client checks what reaches the wire.

``FUZZ_STATS`` counts what the fuzzers ran, for docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import pytest
from fuzz_model import (
    PEER_CLOSE_REFUSED,
    PEER_DISCONNECT,
    Accept,
    Client,
    Close,
    ExcSpec,
    Flavour,
    Guarded,
    Oracle,
    Raise,
    RealClient,
    Receive,
    Run,
    SendData,
    Step,
    app_scripts,
    broken_classifier,
    builtin_error,
    check_after_disconnect,
    check_counts,
    check_exception_identity,
    check_real,
    check_wire,
    clients,
    compare_app_logs,
    flavours,
    real_cases,
    run_in_memory,
    run_real,
    ws_scope,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st
from servers import SERVER_KINDS
from starlette.websockets import WebSocketDisconnect

from ws_diag import DiagnosticsMiddleware, DiagSettings

# What the fuzzers ran, summed over every example Hypothesis executed (shrinking included).
FUZZ_STATS: Counter[str] = Counter()

# Bugs the fuzzers found, each with a strict xfail regression test below. The fuzzers count
# them (FUZZ_STATS["known_bug_..."]) instead of failing; drop a name once its test passes.
KNOWN_BUGS: frozenset[str] = frozenset()


def diag_settings(
    scheme: str = "private",
    preaccept: str = "accept_close",
    codes: frozenset[int] | set[int] = frozenset({1011}),
    track: bool = False,
    expose: bool = False,
) -> DiagSettings:
    """Explicit settings (never the environment's WS_DIAG_* variables), no probes."""
    return DiagSettings(
        code_scheme=scheme,
        preaccept=preaccept,
        rewrite_codes=frozenset(codes),
        track_disconnect=track,
        expose_details=expose,
        postgres_dsn=None,
        redis_url=None,
        required_env=(),
        refresh_interval=None,
    )


DEFAULT = diag_settings()
TRACKING = diag_settings(track=True)

random_settings = st.builds(
    diag_settings,
    st.sampled_from(["private", "legacy"]),
    st.sampled_from(["accept_close", "http_denial", "passthrough"]),
    st.sets(
        st.one_of(st.sampled_from([1000, 1001, 1008, 1011, 3000, 4000, 4999]), st.integers(1000, 4999)), max_size=3
    ),
    st.booleans(),
    st.booleans(),
)


def _count(wrapped: Run, outcome: Any) -> None:
    stats = FUZZ_STATS
    records = wrapped.server.records
    stats["in_process_examples"] += 1
    stats["app_steps"] += len(wrapped.app.log)
    stats["closes_seen"] += sum(1 for r in records if r.snapshot["type"] == "websocket.close")
    stats["exceptions_raised"] += len(wrapped.app.raised)
    stats["base_exceptions_raised"] += sum(1 for e in wrapped.app.raised if not isinstance(e, Exception))
    stats["client_disconnects"] += wrapped.server.gone
    stats["disconnects_received_by_app"] += wrapped.app.saw_disconnect
    stats["receives_after_disconnect"] += wrapped.server.receives_after_disconnect
    stats["refused_sends"] += sum(1 for r in records if r.verdict == "refused")
    stats["interventions"] += outcome.interventions
    stats["diagnostic_frames"] += outcome.frames
    stats["fallback_closes"] += outcome.fallbacks
    stats["repaired_closes"] += outcome.repaired
    stats["client_gone_exceptions"] += outcome.client_gone_exceptions
    stats["strict_code_retries"] += outcome.strict_retries
    stats["app_close_strict_retries"] += outcome.app_close_retries
    stats["handled_failure_closes"] += outcome.handled_closes
    stats["handled_departures"] += outcome.handled_departures
    stats["first_message_refused"] += outcome.first_refused
    stats["peer_departures_diagnosed"] += outcome.peer_diagnosed
    stats["divergent_closes"] += outcome.diverged_at is not None


def fuzz_once(
    steps: list[Step], client: Client, flavour: Flavour, diag: DiagSettings, *, broken_rule: bool = False
) -> None:
    """Run a script bare and wrapped in fresh event loops; check every property."""
    bare, _ = run_in_memory(steps, client, flavour, None)
    wrapped, _ = run_in_memory(steps, client, flavour, diag, broken_rule=broken_rule)
    assert bare.leftover_tasks == wrapped.leftover_tasks == 0, "a task was left running"
    check_exception_identity(bare)
    check_exception_identity(wrapped)
    outcome = Oracle(wrapped, diag, broken_rule=broken_rule).check()
    outcome.diverged_at = compare_app_logs(bare, wrapped)
    check_wire(wrapped)
    check_counts(wrapped)
    for bug in check_after_disconnect(wrapped, strict=diag.track_disconnect, tolerate=KNOWN_BUGS):
        FUZZ_STATS[f"known_bug_{bug}"] += 1
    _count(wrapped, outcome)


# About 1,300 in-process examples take 5-10 s; mutation runs showed that 500 miss rare codes
# (an app's 1005 after accept) about half the time.
IN_PROCESS = settings(max_examples=700, deadline=None, database=None, print_blob=True)


# Explicit examples: the shapes issue 9 names, run on every test run whatever Hypothesis draws.
_QUIET = Client((), None, 1000)  # leaves only when the app waits for it
_LEAVES = Client((), 2, 1001)  # leaves before the app's third step
_PLAIN = Flavour("discard", strict=False, denial=False)
_RESET = Flavour("reset", strict=True, denial=False)
_DAPHNE = Flavour("discard", strict=False, denial=False, daphne_codes=True)
_STARLETTE_DISCONNECT = ExcSpec("WebSocketDisconnect(1006)", lambda: WebSocketDisconnect(1006))


@IN_PROCESS
@given(app_scripts(), clients, flavours)
# A peer's departure escaping this handler (broadcast): diagnosed, Generic 1011.
@example([Receive(), Accept(), Raise(PEER_DISCONNECT)], _QUIET, _RESET)
# except <closing the peer refused>: close(1011, reason): diagnosed, the reason is the frame's message.
@example([Receive(), Accept(), Guarded(Raise(PEER_CLOSE_REFUSED), Close(1011, "upstream gone"))], _QUIET, _RESET)
# This connection's own send refused, Starlette's WebSocketDisconnect(1006) raised from it: silent.
@example([Receive(), Accept(), Guarded(SendData("x"), Raise(_STARLETTE_DISCONNECT))], _LEAVES, _RESET)
# except <own send refused>: close(1011): the client left, the app's close passes through.
@example([Receive(), Accept(), Guarded(SendData("x"), Close(1011))], _LEAVES, _RESET)
# daphne refuses the app's own 1008: retried as 4008.
@example([Receive(), Accept(), Close(1008, "policy")], _QUIET, _DAPHNE)
# daphne refuses ws_diag's Generic 1011 after the frame went: retried as 4011, logged as 4011.
@example([Receive(), Accept(), Raise(builtin_error(ValueError, "bug"))], _QUIET, _DAPHNE)
# The seed's 1005 is a failure, never a normal closure.
@example([Receive(), Accept(), Close(1005)], _QUIET, _PLAIN)
def test_fuzz_in_process_default_settings(steps: list[Step], client: Client, flavour: Flavour) -> None:
    """Default settings: the wrapped app's messages are the bare app's but for the documented rewrites."""
    fuzz_once(steps, client, flavour, DEFAULT)


@settings(IN_PROCESS, max_examples=300)
@given(app_scripts(), clients, flavours)
# The app received the disconnect, then closes with a failure code: nothing of ws_diag's, the
# app's close passes through repaired (1005 -> 1011), before accept untouched.
@example([Receive(), Accept(), Receive(), Close(1005, "bye")], _QUIET, _PLAIN)
@example([Receive(), Receive(), Close(1011)], _QUIET, _RESET)
def test_fuzz_in_process_track_disconnect(steps: list[Step], client: Client, flavour: Flavour) -> None:
    """With track_disconnect nothing of ws_diag's is sent once the app has received a disconnect."""
    fuzz_once(steps, client, flavour, TRACKING)


@settings(IN_PROCESS, max_examples=300)
@given(app_scripts(), clients, flavours, random_settings, st.booleans())
# Diagnosis fails (a rule raises): the plain 1011 is ws_diag's first message, never retried.
@example([Receive(), Accept(), Raise(builtin_error(RuntimeError, "x"))], _QUIET, _DAPHNE, DEFAULT, True)
# Legacy scheme: the app's 1005 names Database by itself (frame 1005, wire 4005), its reason the message.
@example([Receive(), Accept(), Close(1005, "db down")], _QUIET, _PLAIN, diag_settings("legacy"), False)
# ... and before accept, with the HTTP denial: 1004 is Message Handler, HTTP 500.
@example(
    [Receive(), Close(1004)],
    _QUIET,
    Flavour("discard", strict=False, denial=True),
    diag_settings("legacy", "http_denial"),
    False,
)
def test_fuzz_in_process_any_settings(
    steps: list[Step], client: Client, flavour: Flavour, diag: DiagSettings, broken_rule: bool
) -> None:
    """Any scheme, pre-accept mode, rewrite codes, tracking, exposure, even a classifier rule that raises."""
    fuzz_once(steps, client, flavour, diag, broken_rule=broken_rule)


REAL_EXAMPLES_PER_KIND = 20


@pytest.mark.timeout(600)  # room for Hypothesis to shrink a failure, one server start per example
@pytest.mark.parametrize("kind", SERVER_KINDS)
@settings(max_examples=REAL_EXAMPLES_PER_KIND, deadline=None, database=None, print_blob=True)
@given(case=real_cases())
def test_fuzz_real_server(kind: str, case: tuple[list[Step], RealClient]) -> None:
    """Through a real server and client: valid close codes, short reasons, one frame, the app's data in order."""
    steps, client = case
    run = asyncio.run(run_real(kind, steps, client, DEFAULT))
    end = check_real(run, DEFAULT)
    FUZZ_STATS["real_server_examples"] += 1
    FUZZ_STATS[f"real_server_{kind}_examples"] += 1
    FUZZ_STATS[f"real_server_ends_{end}"] += 1
    FUZZ_STATS["real_server_exceptions_raised"] += len(run.app.raised)
    FUZZ_STATS["real_server_client_disconnects"] += run.client.left_first
    FUZZ_STATS["real_server_disconnects_received_by_app"] += run.app.saw_disconnect


# -- Regression tests for bugs the fuzzers found ---------------------------------------------------


def _after_disconnect_server(sent: list[dict[str, Any]]) -> tuple[Any, Any]:
    """receive/send of a uvicorn-websockets connection whose client closed: once the app has
    received the disconnect, every send is refused with RuntimeError (measured on uvicorn 0.54)."""
    incoming = [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}]
    delivered: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        delivered.append(incoming.pop(0))
        return delivered[-1]

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if len(delivered) == 2:
            raise RuntimeError(
                f"Unexpected ASGI message '{message['type']}', after sending 'websocket.close' "
                "or response already completed."
            )

    return receive, send


def _consume_disconnect_then_raise(exc: Exception) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await receive()  # websocket.disconnect: the client closed
        raise exc

    return app


def test_no_retry_after_the_server_refused_a_departed_client() -> None:
    """When the server refuses ws_diag's close because the client left, ws_diag sends nothing more."""
    sent: list[dict[str, Any]] = []
    receive, send = _after_disconnect_server(sent)
    exc = RuntimeError("the app's own bug")
    # A user rule whose predicate raises: diagnosis fails and ws_diag falls back to a plain 1011 close.
    middleware = DiagnosticsMiddleware(
        _consume_disconnect_then_raise(exc), settings=DEFAULT, classifier=broken_classifier()
    )
    with pytest.raises(RuntimeError) as info:
        asyncio.run(middleware(ws_scope(False), receive, send))
    assert info.value is exc
    # The refused close was ws_diag's first message: the client is gone, no retry in the private range.
    assert [(m["type"], m.get("code")) for m in sent] == [("websocket.accept", None), ("websocket.close", 1011)]


def test_refused_frame_is_logged_without_the_apps_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """A refused first frame is a departure (DEBUG), and no ws_diag record carries the app's traceback."""
    caplog.set_level(logging.DEBUG, logger="ws_diag")
    sent: list[dict[str, Any]] = []
    receive, send = _after_disconnect_server(sent)
    exc = ValueError("the app's own bug")
    middleware = DiagnosticsMiddleware(_consume_disconnect_then_raise(exc), settings=DEFAULT)
    with pytest.raises(ValueError, match="the app's own bug") as info:
        asyncio.run(middleware(ws_scope(False), receive, send))
    assert info.value is exc
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send"]  # the frame, refused
    formatter = logging.Formatter()
    assert [r.levelno for r in caplog.records if r.name.startswith("ws_diag") and r.levelno > logging.DEBUG] == []
    assert any(getattr(r, "ws_diag_event", None) == "client_gone" for r in caplog.records)
    for record in (r for r in caplog.records if r.name.startswith("ws_diag") and r.exc_info):
        assert "the app's own bug" not in formatter.formatException(record.exc_info), record.getMessage()


def test_failure_close_after_a_tracked_disconnect_sends_nothing_of_ws_diags() -> None:
    """With track_disconnect, an app's 1011 after it received the disconnect passes through: no accept, no frame."""
    sent: list[dict[str, Any]] = []
    incoming = [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1001}]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()  # websocket.connect
        await receive()  # websocket.disconnect: the client left before accept
        await send({"type": "websocket.close", "code": 1011})

    asyncio.run(DiagnosticsMiddleware(app, settings=TRACKING)(ws_scope(False), receive, send))
    assert sent == [{"type": "websocket.close", "code": 1011}]
