"""The concurrency layer (ws_diag._concurrency) behaves the same under asyncio and trio."""

from __future__ import annotations

import contextvars
import threading
from typing import Any

import anyio
import pytest

from ws_diag import _concurrency as cc

pytestmark = pytest.mark.anyio

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every test runs under asyncio and under trio."""
    return str(request.param)


async def test_library_names_the_running_loop(anyio_backend: str) -> None:
    """library() is sniffio's name of the library running the test."""
    assert cc.library() == anyio_backend


def test_library_outside_a_loop_is_unsupported() -> None:
    """Outside any event loop library() raises UnsupportedLibrary (a RuntimeError)."""
    with pytest.raises(cc.UnsupportedLibrary):
        cc.library()


async def test_current_loop_is_stable_within_a_run(anyio_backend: str) -> None:
    """current_loop() gives the same identity every time within one run, from a detached task too."""

    async def loop_of_task() -> object:
        return cc.current_loop()

    task = cc.spawn(loop_of_task, name="loop")
    assert await cc.join(task) is cc.current_loop()
    assert task.get_loop() is cc.current_loop()


async def test_timeout_raises_timeout_error(anyio_backend: str) -> None:
    """A block longer than its deadline raises the builtin TimeoutError under both libraries."""
    with pytest.raises(TimeoutError):
        async with cc.timeout(0.01):
            await anyio.sleep(5)


async def test_timeout_lets_a_quick_block_finish(anyio_backend: str) -> None:
    """A block within its deadline finishes normally."""
    async with cc.timeout(5):
        await cc.sleep(0)


async def test_join_returns_the_result(anyio_backend: str) -> None:
    """join() returns what the detached task returned; done callbacks get the task."""
    seen: list[Any] = []

    async def answer(value: int) -> int:
        await cc.sleep(0)
        return value

    task = cc.spawn(answer, 42, name="answer")
    task.add_done_callback(seen.append)
    assert await cc.join(task) == 42
    await cc.sleep(0)  # asyncio runs done callbacks one step later
    assert seen == [task]
    assert task.done()
    assert not task.cancelled()
    assert task.exception() is None
    assert task.result() == 42


async def test_a_callers_deadline_does_not_cancel_the_shared_task(anyio_backend: str) -> None:
    """A caller giving up on join() leaves the task running; a later join gets its result."""
    release = anyio.Event()

    async def slow() -> str:
        await release.wait()
        return "done"

    task = cc.spawn(slow, name="slow")
    with anyio.move_on_after(0.02) as scope:
        await cc.join(task)
    assert scope.cancelled_caught
    assert not task.done()
    release.set()
    assert await cc.join(task) == "done"


async def test_join_raises_run_cancelled_when_the_task_was_cancelled(anyio_backend: str) -> None:
    """A cancelled task makes join() raise RunCancelled, not the caller's cancellation."""

    async def forever() -> None:
        await anyio.sleep_forever()

    task = cc.spawn(forever, name="forever")
    await cc.sleep(0)
    assert task.cancel()

    with pytest.raises(cc.RunCancelled):
        await cc.join(task)
    assert task.cancelled()
    assert not task.cancel()


async def test_join_raises_what_the_task_raised(anyio_backend: str) -> None:
    """An exception of the task reaches join() and task.exception(); it never crashes the run."""

    async def broken() -> None:
        raise LookupError("no such thing")

    task = cc.spawn(broken, name="broken")
    with pytest.raises(LookupError):
        await cc.join(task)
    assert isinstance(task.exception(), LookupError)


async def test_a_detached_task_starts_with_an_empty_context(anyio_backend: str) -> None:
    """The caller's context variables stay out of a detached task, unless it inherits them."""

    async def read() -> str | None:
        return request_id.get()

    token = request_id.set("caller")
    try:
        assert await cc.join(cc.spawn(read, name="empty")) is None
        assert await cc.join(cc.spawn(read, name="copied", inherit_context=True)) == "caller"
    finally:
        request_id.reset(token)


async def test_wait_all_stops_at_its_deadline(anyio_backend: str) -> None:
    """wait_all returns at the deadline with the slow task still running, the quick one done."""

    async def quick() -> None:
        await cc.sleep(0)

    async def stuck() -> None:
        await anyio.sleep_forever()

    fast, slow = cc.spawn(quick, name="quick"), cc.spawn(stuck, name="stuck")
    await cc.wait_all([fast, slow], 0.05)
    assert fast.done()
    assert not slow.done()
    slow.cancel()
    await cc.wait_all([slow], 5)
    assert slow.cancelled()


async def test_is_cancellation_knows_the_librarys_cancellation(anyio_backend: str) -> None:
    """The exception a cancelled scope raises is recognised; an ordinary one is not."""
    caught: list[BaseException] = []
    with anyio.CancelScope() as scope:
        scope.cancel()
        try:
            await anyio.sleep(5)
        except BaseException as exc:
            caught.append(exc)
            raise
    assert len(caught) == 1
    assert cc.is_cancellation(caught[0])
    assert not cc.is_cancellation(ValueError())
    assert not cc.is_cancellation(KeyboardInterrupt())


async def test_shielded_lets_a_cancelled_task_finish_a_bounded_step(anyio_backend: str) -> None:
    """After cancellation, a shielded block can still await (a last send) within its own deadline."""
    finished = False
    with anyio.CancelScope() as scope:
        scope.cancel()
        try:
            await anyio.sleep(5)
        except BaseException as exc:
            caught = exc
            with cc.shielded():
                async with cc.timeout(5):
                    await cc.sleep(0.001)
                    finished = True
            raise
    assert finished
    assert cc.is_cancellation(caught)


async def test_call_in_thread_returns_and_raises(anyio_backend: str) -> None:
    """A sync function's value (or exception) comes back from its own thread; finally_ runs in it."""
    finals: list[str] = []

    def fail() -> None:
        raise OSError("refused")

    assert await cc.call_in_thread(lambda: 7, name="seven", finally_=lambda: finals.append("seven")) == 7
    with pytest.raises(OSError, match="refused"):
        await cc.call_in_thread(fail, name="fail", finally_=lambda: finals.append("fail"))
    assert finals == ["seven", "fail"]


async def test_call_in_thread_is_abandoned_at_the_callers_deadline(anyio_backend: str) -> None:
    """A blocked call does not hold its caller past the deadline; its thread finishes on its own later."""
    release = threading.Event()
    finished = threading.Event()
    with anyio.move_on_after(0.05) as scope:
        await cc.call_in_thread(lambda: release.wait(30), name="blocked", finally_=finished.set)
    assert scope.cancelled_caught
    assert not finished.is_set()
    release.set()
    assert finished.wait(5)
