"""Concurrency on whichever event loop runs the app: asyncio, or trio through anyio.

ws_diag's waits, deadlines and background work go through these few functions. Under
asyncio they are asyncio's own primitives, exactly as before (same behaviour, same
costs); under any other library anyio supports (trio) they are anyio's, plus trio's
system tasks for the one thing anyio does not offer publicly: a task no caller owns
(the shared health-check run that one caller's deadline must not cancel, the
background refresher, a probe left running past its deadline). :func:`library` says
which applies: sniffio's answer for the running task (asyncio when sniffio is absent:
trio depends on it, anyio no longer does).

Nothing here runs per message: a deadline, a detached task or a thread costs per
failure, per health check or per refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import sys
import threading
from collections.abc import Callable, Coroutine, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import anyio

from .logs import LogEvent

try:
    import sniffio
except ImportError:  # anyio no longer needs it; trio does, so with trio installed it is there
    sniffio = None  # type: ignore[assignment]

_local = None if sniffio is None else sniffio.thread_local  # trio names itself here
_cvar = None if sniffio is None else sniffio.current_async_library_cvar  # trio-asyncio here

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager, AbstractContextManager

__all__ = [
    "SUPPORTED",
    "Detached",
    "RunCancelled",
    "UnsupportedLibrary",
    "call_in_thread",
    "current_loop",
    "is_cancellation",
    "join",
    "library",
    "shielded",
    "sleep",
    "spawn",
    "timeout",
    "wait_all",
]

logger = logging.getLogger("ws_diag")

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

ASYNCIO = "asyncio"
SUPPORTED: tuple[str, ...] = ("asyncio", "trio")
"""The async libraries ws_diag runs under (sniffio's names)."""


class UnsupportedLibrary(RuntimeError):
    """The running async library is neither asyncio nor trio (or none could be detected)."""


class RunCancelled(Exception):
    """:func:`join`: the detached task was cancelled, not the caller waiting for it."""


def library() -> str:
    """The async library running the current task: ``"asyncio"`` or ``"trio"``.

    sniffio's answer, read the way sniffio reads it (trio names itself in sniffio's
    thread-local, trio-asyncio in its context variable; else a running asyncio loop),
    without its per-call import: this runs on every failure and health check.

    Raises:
        UnsupportedLibrary: another library, or none detected.
    """
    name = _named_library()
    if name is None:
        try:
            asyncio.get_running_loop()
        except RuntimeError as exc:
            msg = "no async library detected (sniffio); ws_diag runs under asyncio or trio"
            raise UnsupportedLibrary(msg) from exc
        return ASYNCIO
    if name not in SUPPORTED:
        msg = f"ws_diag runs under asyncio or trio, not {name!r}"
        raise UnsupportedLibrary(msg)
    return str(name)


def current_loop() -> object:
    """The running event loop's identity: the asyncio loop, or trio's run token."""
    if library() == ASYNCIO:
        return asyncio.get_running_loop()
    import trio

    return trio.lowlevel.current_trio_token()


# Deadlines and cancellation ----------------------------------------------------------


class _FailAfter:
    """``anyio.fail_after`` as an async context manager (asyncio.timeout's shape)."""

    __slots__ = ("_cm",)

    def __init__(self, seconds: float | None) -> None:
        self._cm = anyio.fail_after(seconds)

    async def __aenter__(self) -> None:
        self._cm.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        return self._cm.__exit__(exc_type, exc, tb)


def _named_library() -> str | None:
    """The library sniffio's thread-local or context variable names (trio, trio-asyncio); ``None``: asyncio, or none."""
    return None if sniffio is None else (sniffio.thread_local.name or sniffio.current_async_library_cvar.get())


def timeout(seconds: float | None) -> AbstractAsyncContextManager[object]:
    """``async with timeout(s):`` raises ``TimeoutError`` when the block takes longer than ``s`` seconds.

    Under asyncio: ``asyncio.timeout`` itself, chosen in ~0.1 us (a session that returns
    without closing costs one: the closing 1000).
    """
    if _local is None or (_local.name is None and _cvar.get() is None):  # inlined _named_library(): ~60 ns less
        return asyncio.timeout(seconds)
    return asyncio.timeout(seconds) if _named_library() == ASYNCIO else _FailAfter(seconds)


def shielded() -> AbstractContextManager[object]:
    """A block the surrounding cancellation does not interrupt (bound its waits yourself).

    Under trio cancellation is level-triggered: once a task's scope is cancelled every
    await in it raises again, so a last bounded send after cancellation needs a shield;
    anyio's cancel scopes do the same on asyncio (Starlette's task groups). A plain
    ``task.cancel()`` of asyncio is delivered once; the shield changes nothing for it.
    """
    return anyio.CancelScope(shield=True)


def is_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` is the running library's cancellation (or a group of nothing else)."""
    if isinstance(exc, asyncio.CancelledError):
        return True
    if "trio" not in sys.modules:
        return False
    cancelled = sys.modules["trio"].Cancelled
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(cancelled)[1] is None
    return isinstance(exc, cancelled)


async def sleep(seconds: float) -> None:
    """Sleep under the running library."""
    if library() == ASYNCIO:
        await asyncio.sleep(seconds)
    else:
        await anyio.sleep(seconds)


# Detached tasks ------------------------------------------------------------------------


class Detached(Protocol[T_co]):
    """A task no caller owns: the subset of ``asyncio.Task`` ws_diag uses, under any library."""

    def done(self) -> bool: ...
    def cancelled(self) -> bool: ...
    def result(self) -> T_co: ...
    def exception(self) -> BaseException | None: ...
    def cancel(self) -> bool: ...
    def get_loop(self) -> Any: ...
    def add_done_callback(self, fn: Callable[[Any], object], /) -> None: ...


class _TrioTask(Generic[T]):
    """A trio system task with ``asyncio.Task``'s answers: done, cancelled, result, callbacks.

    System tasks belong to the run, not to a caller: cancelling a caller leaves them
    running; they are cancelled when the run ends. Whatever the coroutine raises is kept,
    never raised into trio (a system task's exception would crash the run).
    """

    __slots__ = ("_callbacks", "_cancelled", "_done", "_error", "_event", "_scope", "_token", "_value")

    def __init__(self) -> None:
        import trio

        self._token = trio.lowlevel.current_trio_token()
        self._scope = trio.CancelScope()
        self._event = trio.Event()
        self._callbacks: list[Callable[[Any], object]] = []
        self._done = self._cancelled = False
        self._value: T | None = None
        self._error: BaseException | None = None

    async def _main(self, fn: Callable[..., Coroutine[Any, Any, T]], args: tuple[Any, ...]) -> None:
        try:
            with self._scope:
                self._value = await fn(*args)
                self._done = True
        except Exception as exc:
            self._error, self._done = exc, True
        except BaseException as exc:
            # Kept like asyncio keeps it, but for the run's own cancellation and what asyncio re-raises too.
            if isinstance(exc, KeyboardInterrupt | SystemExit) or is_cancellation(exc):
                raise
            self._error, self._done = exc, True
        finally:
            if not self._done:  # cancelled: by cancel(), or the run is ending (then it propagates)
                self._done = self._cancelled = True
            self._finish()

    def _finish(self) -> None:
        self._event.set()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                logger.exception(
                    "ws_diag: a detached task's callback failed", extra={"ws_diag_event": LogEvent.HOOK_FAILED}
                )

    def done(self) -> bool:
        return self._done

    def cancelled(self) -> bool:
        return self._cancelled

    def result(self) -> T:
        if not self._done or self._cancelled:
            msg = "the task is not finished" if not self._done else "the task was cancelled"
            raise asyncio.InvalidStateError(msg)
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def exception(self) -> BaseException | None:
        if not self._done or self._cancelled:
            msg = "the task is not finished" if not self._done else "the task was cancelled"
            raise asyncio.InvalidStateError(msg)
        return self._error

    def cancel(self) -> bool:
        if self._done:
            return False
        self._scope.cancel()
        return True

    def get_loop(self) -> Any:
        return self._token

    def add_done_callback(self, fn: Callable[[Any], object], /) -> None:
        if self._done:
            fn(self)
        else:
            self._callbacks.append(fn)


def spawn(
    fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, name: str, inherit_context: bool = False
) -> Detached[T]:
    """Start ``fn(*args)`` as a task no caller owns, in the running loop.

    Args:
        name: the task's name (debuggers, trio's task tree).
        inherit_context: run in a copy of the caller's context variables; by default
            in an empty context, so a shared task does not carry the first caller's
            request ids or tracing spans into everyone's result.
    """
    context = contextvars.copy_context() if inherit_context else contextvars.Context()
    if library() == ASYNCIO:
        return asyncio.get_running_loop().create_task(fn(*args), name=name, context=context)
    import trio

    task: _TrioTask[T] = _TrioTask()
    trio.lowlevel.spawn_system_task(task._main, fn, args, name=name, context=context)
    return task


async def join(task: Detached[T]) -> T:
    """The task's result, waited for without owning it: the caller's cancellation leaves it running.

    Raises:
        RunCancelled: the task was cancelled while the caller was not.
        BaseException: what the task raised; the caller's own cancellation.
    """
    if isinstance(task, _TrioTask):
        await task._event.wait()
        if task.cancelled():
            raise RunCancelled
        result: T = task.result()
        return result
    future: asyncio.Task[T] = task  # type: ignore[assignment]
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if future.cancelled() and current is not None and current.cancelling() == 0:
            raise RunCancelled from None
        raise


async def wait_all(tasks: Iterable[Detached[Any]], seconds: float | None) -> None:
    """Wait until every task is done or ``seconds`` passed, whichever comes first; never raises on time."""
    tasks = list(tasks)
    if not tasks:
        return
    if library() == ASYNCIO:
        await asyncio.wait(tasks, timeout=seconds)  # type: ignore[type-var]
        return
    with anyio.move_on_after(seconds):
        for task in tasks:
            if isinstance(task, _TrioTask):
                await task._event.wait()


# Threads ---------------------------------------------------------------------------


async def call_in_thread(fn: Callable[[], T], *, name: str, finally_: Callable[[], None]) -> T:
    """``fn()`` in a daemon thread of its own, its result handed back to the running loop.

    Not a pool: a call that blocks for good is abandoned when the caller gives up
    (cancellation, a deadline) and holds no worker the app or name resolution needs.
    ``finally_`` runs in the thread when ``fn`` returns or raises (even if nobody waits).
    """
    if library() == ASYNCIO:
        return await _asyncio_thread(fn, name, finally_)
    return await _trio_thread(fn, name, finally_)


async def _asyncio_thread(fn: Callable[[], T], name: str, finally_: Callable[[], None]) -> T:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def work() -> None:
        value: Any
        try:
            ok, value = True, fn()
        except Exception as exc:
            ok, value = False, exc
        finally:
            finally_()
        with contextlib.suppress(RuntimeError):  # the loop closed while we ran
            loop.call_soon_threadsafe(settle, ok, value)

    threading.Thread(target=work, name=name, daemon=True).start()
    return await future


async def _trio_thread(fn: Callable[[], T], name: str, finally_: Callable[[], None]) -> T:
    import trio

    token = trio.lowlevel.current_trio_token()
    event = trio.Event()
    outcome: list[tuple[bool, Any]] = []

    def settle(ok: bool, value: Any) -> None:
        outcome.append((ok, value))
        event.set()

    def work() -> None:
        value: Any
        try:
            ok, value = True, fn()
        except Exception as exc:
            ok, value = False, exc
        finally:
            finally_()
        with contextlib.suppress(trio.RunFinishedError):  # the run ended while we ran
            token.run_sync_soon(settle, ok, value)

    threading.Thread(target=work, name=name, daemon=True).start()
    await event.wait()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]
