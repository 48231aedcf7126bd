"""Reconnect the way the server suggests: :func:`reconnecting` (built on the ``websockets``
library's own reconnecting ``connect()``) comes back after each failure, following
:func:`ws_diag.retry.retry_action`::

    async for ws in reconnecting(url, on_event=print):
        try:
            async for message in ws:
                ...
        except websockets.ConnectionClosed:
            continue  # the helper decides: wait and reconnect, or end the loop
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Literal

from .._optional import require
from ..retry import MAX_RETRY_AFTER_MS, RetryAction, retry_action
from ..wire.schemes import CodeScheme
from .explain import Explanation, explain, parse_frame

__all__ = [
    "Connections",
    "EventHook",
    "EventKind",
    "ReconnectEvent",
    "Reconnecting",
    "RetryPolicy",
    "reconnecting",
    "retry_delay_ms",
]

logger = logging.getLogger("ws_diag.client")


def retry_delay_ms(action: RetryAction, attempt: int, rand: float, min_delay_ms: float, max_delay_ms: float) -> int:
    """How long to wait before reconnect number ``attempt`` (0-based), in whole milliseconds.

    The server's ``retry_after_ms`` is a floor and the client's jitter is added on top, so
    clients told the same hint still come back spread out (taking the larger of the two
    would put every client's first reconnect at exactly the hint: benchmarks/README.md,
    "The herd after an outage").

    ``retry``: ``retry_after_ms + backoff`` where backoff is full jitter between
    ``min_delay_ms`` and ``min(max_delay_ms, min_delay_ms * 2 ** (attempt + 1))``.
    ``retry_now``: ``retry_after_ms + rand * min_delay_ms`` (a restart: promptly, but not
    every client in the same millisecond). ``rand`` is in [0, 1). The hint is clamped to
    0..``MAX_RETRY_AFTER_MS`` first (one hour; the sum is not clamped, which would cancel
    the jitter again at the cap), so every wait is bounded: below
    ``MAX_RETRY_AFTER_MS + max(min_delay_ms, max_delay_ms)``. The
    browser helper's ``retryDelayMs`` computes the same numbers (tests/retry_cases.json).

    Raises:
        ValueError: ``action`` is ``stop``.
    """
    hint = max(0, min(action.retry_after_ms or 0, MAX_RETRY_AFTER_MS))
    if action.kind == "stop":
        msg = "a stop action has no delay"
        raise ValueError(msg)
    if action.kind == "retry_now":
        return math.floor(hint + rand * min_delay_ms)
    ceiling = max(min_delay_ms, min(max_delay_ms, min_delay_ms * (1 << min(attempt + 1, 40))))
    return math.floor(hint + min_delay_ms + rand * (ceiling - min_delay_ms))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff settings of :func:`reconnecting`, in seconds.

    Args:
        min_delay: the first backoff, and the jitter window after a 1012 restart.
        max_delay: the backoff's cap; the backoff is added to a server's ``retry_after_ms`` (up to one hour).
        max_attempts: reconnects in a row before giving up; ``None`` for no limit.
        reset_after: a connection that stayed open this long resets the attempt count.

    Raises:
        ValueError: a delay that is not finite and positive, ``max_delay < min_delay``, or
            ``max_attempts < 1``.
    """

    min_delay: float = 0.5
    max_delay: float = 30.0
    max_attempts: int | None = 10
    reset_after: float = 5.0

    def __post_init__(self) -> None:
        for name in ("min_delay", "max_delay", "reset_after"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                msg = f"RetryPolicy.{name} must be a positive number of seconds, got {value!r}"
                raise ValueError(msg)
        if self.max_delay < self.min_delay:
            msg = f"RetryPolicy.max_delay ({self.max_delay}) is below min_delay ({self.min_delay})"
            raise ValueError(msg)
        if self.max_attempts is not None and self.max_attempts < 1:
            msg = f"RetryPolicy.max_attempts must be at least 1 or None, got {self.max_attempts!r}"
            raise ValueError(msg)

    def delay(self, action: RetryAction, attempt: int, rand: float) -> float:
        """Seconds to wait before reconnect number ``attempt`` (see :func:`retry_delay_ms`)."""
        return retry_delay_ms(action, attempt, rand, self.min_delay * 1000, self.max_delay * 1000) / 1000


EventKind = Literal["open", "close", "diagnosis", "reconnecting", "giveup"]


@dataclass(frozen=True, slots=True)
class ReconnectEvent:
    """One decision of :class:`Reconnecting`, handed to ``on_event``.

    ``open``: a connection opened. ``close``: it closed (``explanation``). ``diagnosis``: the
    close (or an HTTP denial) carried a ws_diag frame. ``reconnecting``: waiting ``delay``
    seconds before reconnect number ``attempt``. ``giveup``: not reconnecting (``action.why``;
    ``error`` when a handshake failed). ``reconnecting`` and ``giveup`` carry the
    ``explanation`` of the close or failed handshake they answer.
    """

    kind: EventKind
    attempt: int
    explanation: Explanation | None = None
    action: RetryAction | None = None
    delay: float | None = None
    error: Exception | None = None


EventHook = Callable[[ReconnectEvent], object]


@functools.cache
def _tracking_connection() -> type[Any]:
    from websockets.asyncio.client import ClientConnection

    class TrackingConnection(ClientConnection):
        """Keeps a reference to the last message received (one assignment per message).

        Leaving the ``async for`` closes normally: ``websockets``' reconnecting generator
        yields inside ``async with connection``, so after a ``break`` its closing reaches
        ``__aexit__`` as ``GeneratorExit`` (or, when ``asyncio.run`` ends first and cancels
        the closing task, ``CancelledError``), which ``websockets`` would answer with 1011
        (internal error). Nothing else is raised at that ``yield``.
        """

        last_message: Any = None

        async def recv(self, decode: bool | None = None) -> Any:
            message = await super().recv(decode)
            self.last_message = message
            return message

        async def __aexit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
            if exc_type is GeneratorExit or exc_type is asyncio.CancelledError:
                exc_type = exc_value = traceback = None  # the consumer left the loop: not an error
            await super().__aexit__(exc_type, exc_value, traceback)

    return TrackingConnection


class Reconnecting:
    """Connections to ``uri``, one after another, as the shared retry table says.

    Needs the ``client`` extra (``websockets`` 17 or later, for its ``reconnect_delays`` hook).

    Iterate it with ``async for``: each iteration yields an open
    ``websockets.asyncio.client.ClientConnection``. When the body is done with it (after a
    close, usually by catching ``websockets.ConnectionClosed``), the helper reads the close
    code and ws_diag's frame (the last message), decides with
    :func:`ws_diag.retry.retry_action`, waits ``retry_after_ms + backoff`` and yields the
    next connection; or it ends the loop (``gave_up`` says why: Authentication, for one,
    hands control back so the app can sign in again). A body that returns with the
    connection still open closes it normally (1000), which ends the loop too.

    Handshake failures go through the ``websockets`` library's own reconnection
    (``process_exception`` and ``reconnect_delays``). An HTTP denial that carries a ws_diag
    frame (``preaccept="http_denial"``) is a diagnosis like a close with a frame, and ends the
    same way: it follows the table, and a stop (or ``policy.max_attempts`` reconnects in a
    row) ends the loop quietly with ``gave_up`` set (``gave_up.error`` is the
    ``InvalidStatus``), exactly as under ``accept_close``. A failure without a frame
    (refused connection, timeout, an HTTP status ws_diag did not answer) is retried with the
    same backoff when ``websockets`` would retry it (refused connections, timeouts, 5xx);
    otherwise, or past ``policy.max_attempts``, it is raised out of the loop.

    State, and when it changes:

    - ``last``: the :class:`Explanation` of the latest close or failed handshake (a handshake
      failure without a frame is explained as ``code=None``, ``component=None``); ``None``
      while a connection is open (set back to ``None`` on each ``open``, so after a
      successful reconnect it no longer holds the old failure) and at the start of each
      ``async for``.
    - ``gave_up``: the ``giveup`` event that ended the loop; ``None`` until then (and at the
      start of each ``async for``).
    - ``attempt``: reconnects in a row; back to 0 when a connection that stayed open
      ``policy.reset_after`` closes, and at the start of each ``async for``.

    Leaving the loop with ``break`` (or an exception) is silent: the open connection is
    closed with 1000 by ``websockets``' own generator as the event loop finalizes it (or at
    once, by ``await`` ing ``aclose()`` on the iterator).

    Args:
        uri: the websocket URL.
        policy: backoff settings (seconds).
        scheme: the server's code scheme, to read closes without a frame.
        on_event: callables given each :class:`ReconnectEvent`; one that raises is logged and ignored.
        rand: the jitter's random source, returning [0, 1) (tests inject their own).
        connect_kwargs: passed to ``websockets.asyncio.client.connect`` (``open_timeout``,
            ``additional_headers``, ...).
    """

    def __init__(
        self,
        uri: str,
        *,
        policy: RetryPolicy | None = None,
        scheme: CodeScheme = "private",
        on_event: EventHook | tuple[EventHook, ...] = (),
        rand: Callable[[], float] = random.random,
        **connect_kwargs: Any,
    ) -> None:
        for reserved in ("process_exception", "reconnect_delays", "create_connection"):
            if reserved in connect_kwargs:
                msg = f"{reserved} is set by Reconnecting; it cannot be passed"
                raise TypeError(msg)
        self.uri = uri
        self.policy = policy if policy is not None else RetryPolicy()
        self.scheme: CodeScheme = scheme
        self.on_event = on_event if isinstance(on_event, tuple) else (on_event,)
        self.rand = rand
        self.connect_kwargs = connect_kwargs
        self.attempt = 0  # reconnects in a row without a connection that stayed open
        self.last: Explanation | None = None  # the latest close or failed handshake; None while open
        self.gave_up: ReconnectEvent | None = None
        self._handshake_delay = 0.0

    def _emit(self, event: ReconnectEvent) -> None:
        for hook in self.on_event:
            try:
                hook(event)
            except Exception:
                logger.exception("on_event hook %r failed", hook)

    def _decide(self, action: RetryAction, explanation: Explanation | None, error: Exception | None) -> float | None:
        """Seconds to wait before the next connection, or ``None`` to stop (events emitted)."""
        limit = self.policy.max_attempts
        if action.kind != "stop" and limit is not None and self.attempt >= limit:
            action = RetryAction("stop", None, f"gave up after {self.attempt} reconnects in a row")
        if action.kind == "stop":
            self.gave_up = ReconnectEvent("giveup", self.attempt, explanation, action, error=error)
            self._emit(self.gave_up)
            return None
        delay = self.policy.delay(action, self.attempt, self.rand())
        self.attempt += 1
        self._emit(ReconnectEvent("reconnecting", self.attempt, explanation, action, delay, error))
        return delay

    def _process_exception(self, exc: Exception) -> Exception | None:
        from websockets.client import process_exception
        from websockets.exceptions import InvalidStatus

        status = exc.response.status_code if isinstance(exc, InvalidStatus) else None
        body = exc.response.body if isinstance(exc, InvalidStatus) else None
        frame = parse_frame(body) if body else None
        if frame is not None:
            explanation = explain(None, None, {"type": "error", "error": frame}, scheme=self.scheme)
            self.last = explanation
            self._emit(ReconnectEvent("diagnosis", self.attempt, explanation))
            action = retry_action(None, frame, self.scheme)
        else:
            failure = f"HTTP {status}" if status is not None else type(exc).__name__
            if process_exception(exc) is None:
                action = RetryAction("retry", 0, f"connection failed ({failure}): back off")
            else:
                action = RetryAction("stop", None, f"connection failed ({failure}), not retryable")
            message = f"Connection failed ({failure})"
            explanation = Explanation(None, None, message, (), action.kind != "stop", None, None)
            self.last = explanation
        delay = self._decide(action, explanation, exc)
        if delay is None:
            return exc
        self._handshake_delay = delay
        return None

    def _reconnect_delays(self) -> Generator[float]:
        while True:
            yield self._handshake_delay

    async def _closed(self, ws: Any, opened_at: float) -> float | None:
        """After the body: wait for the close, find the frame, decide. Seconds to wait, or ``None``."""
        from websockets.exceptions import ConnectionClosed

        await ws.close()  # a no-op when already closed; bounded by close_timeout
        frame = parse_frame(ws.last_message)
        if frame is None:
            # The frame may still be queued, unread: the connection is closed, so this never blocks.
            try:
                while frame is None:
                    frame = parse_frame(await ws.recv())
            except ConnectionClosed:
                pass
        code = ws.close_code
        message = {"type": "error", "error": frame} if frame is not None else None
        explanation = explain(code, ws.close_reason, message, scheme=self.scheme)
        self.last = explanation
        self._emit(ReconnectEvent("close", self.attempt, explanation))
        if frame is not None:
            self._emit(ReconnectEvent("diagnosis", self.attempt, explanation))
        if time.monotonic() - opened_at >= self.policy.reset_after:
            self.attempt = 0
        return self._decide(retry_action(code, frame, self.scheme), explanation, None)

    def __aiter__(self) -> Connections:
        require("websockets", extra="client", feature="ws_diag.client.Reconnecting")
        from websockets.asyncio.client import connect

        self.gave_up = None
        self.last = None
        self.attempt = 0
        connector = connect(
            self.uri,
            process_exception=self._process_exception,
            reconnect_delays=self._reconnect_delays,
            create_connection=_tracking_connection(),
            **self.connect_kwargs,
        )
        return Connections(self, connector.__aiter__())


class Connections:
    """One ``async for`` over :class:`Reconnecting`: a plain async iterator, not an async generator.

    ``websockets``' reconnecting ``connect()`` is an async generator. Wrapping it in a second
    one made the event loop track two generators for one loop: after a ``break``, the loop
    finalized the outer one in a task whose ``finally`` closed the inner one, while
    ``shutdown_asyncgens()`` (at the end of ``asyncio.run``) closed the inner one too; the
    second ``aclose()`` failed with "asynchronous generator is already running", printed as
    "Task exception was never retrieved". Here ``websockets``' generator is the only one, so
    one ``aclose()`` closes it (and the open connection, with 1000): the event loop's after a
    ``break``, or :meth:`aclose` called at once.
    """

    __slots__ = ("_client", "_connections", "_opened_at", "_ws")

    def __init__(self, client: Reconnecting, connections: Any) -> None:
        self._client = client
        self._connections = connections
        self._ws: Any = None
        self._opened_at = 0.0

    def __aiter__(self) -> Connections:
        return self

    async def __anext__(self) -> Any:
        client = self._client
        ws, self._ws = self._ws, None
        if ws is not None:
            delay = await client._closed(ws, self._opened_at)
            if delay is None:
                await self.aclose()
                raise StopAsyncIteration
            await asyncio.sleep(delay)  # bounded: at most max(max_delay, one hour)
        try:
            ws = await anext(self._connections)
        except StopAsyncIteration:
            raise
        except Exception as exc:
            if _gave_up_on_a_frame(client.gave_up, exc):
                # A denial with a frame: the server's diagnosis decided, as after a close.
                raise StopAsyncIteration from None
            raise
        self._ws = ws
        self._opened_at = time.monotonic()
        client.last = None
        client._emit(ReconnectEvent("open", client.attempt))
        return ws

    async def aclose(self) -> None:
        """Close the open connection (1000) and end the iteration now; idempotent."""
        self._ws = None
        await self._connections.aclose()


def _gave_up_on_a_frame(event: ReconnectEvent | None, exc: Exception) -> bool:
    """Whether the handshake error ``exc`` ended the loop by a decision on a ws_diag frame."""
    if event is None or event.error is not exc or event.explanation is None:
        return False
    return event.explanation.frame_code is not None


def reconnecting(uri: str, **options: Any) -> Reconnecting:
    """``async for ws in reconnecting(url): ...``: see :class:`Reconnecting` for the options."""
    return Reconnecting(uri, **options)
