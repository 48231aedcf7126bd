"""The probe protocol and the dependency-free probes."""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from ..._concurrency import call_in_thread
from ...components import Component, ComponentLike
from ...logs import LogEvent

__all__ = ["CallableProbe", "EnvProbe", "MissingEnvironment", "Probe", "ProbeFailed", "runnable_under"]

logger = logging.getLogger("ws_diag.health")

ProbeDetails = Mapping[str, Any] | None


@runtime_checkable
class Probe(Protocol):
    """A health check of one component.

    ``check`` returns (``None`` or a mapping of details) when the component is
    healthy and raises when it is not. It should bound its own I/O; the checker
    also cuts it off at the deadline whatever it does.
    """

    @property
    def name(self) -> str:
        """The key in the health report (``"database"``)."""
        ...

    @property
    def component(self) -> ComponentLike:
        """The component a failure of this probe points at."""
        ...

    @property
    def required(self) -> bool:
        """A failed required probe makes the service unhealthy; others only degrade it."""
        ...

    async def check(self) -> ProbeDetails:
        """Return when healthy; raise when not."""
        ...


def runnable_under(probes: Iterable[Probe], library: str) -> tuple[Probe, ...]:
    """The probes that can run under the async ``library`` (sniffio's name: asyncpg cannot under trio).

    A probe may say which libraries its driver runs under, as ``async_libraries =
    ("asyncio",)``; without it, it runs under any. One left out here is left out of
    every report (the checker asks once per library), with one ERROR line: it is not
    checked, and no failure is blamed on it.
    """
    kept = []
    for probe in probes:
        libraries = getattr(probe, "async_libraries", None)
        if libraries is None or library in libraries:
            kept.append(probe)
            continue
        logger.error(
            "probe %r (%s) needs %s; this app runs under %s: the probe is not run, "
            "its component is not checked and no failure is blamed on it",
            probe.name,
            type(probe).__name__,
            " or ".join(libraries),
            library,
            extra={"ws_diag_event": LogEvent.PROBE_UNSUPPORTED, "probe": probe.name},
        )
    return tuple(kept)


class ProbeFailed(Exception):
    """A probe's own verdict that its component is unhealthy."""


class MissingEnvironment(ProbeFailed):
    """Required environment variables are missing; carries their names, never values."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = tuple(names)
        super().__init__(f"missing environment variables: {', '.join(self.names)}")


class EnvProbe:
    """Checks that required environment variables are set and not empty.

    Args:
        required: variable names.
        name: the report key.
        environ: the mapping to look in (``os.environ`` when omitted).
    """

    component: ComponentLike = Component.DEPENDENCY

    def __init__(
        self,
        required: Iterable[str],
        *,
        name: str = "environment",
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.names = tuple(required)
        self.name = name
        self.required = True
        self._environ = environ

    async def check(self) -> ProbeDetails:
        """Raise :class:`MissingEnvironment` naming the absent variables."""
        environ = os.environ if self._environ is None else self._environ
        missing = [name for name in self.names if not environ.get(name)]
        if missing:
            raise MissingEnvironment(missing)
        return {"checked": len(self.names)}


class CallableProbe:
    """Wraps a user's sync or async check.

    The function returns ``None``, ``True`` or a mapping of details when healthy,
    and ``False`` or raises when not. A sync function runs in a daemon thread of
    its own, never in the event loop's shared executor: a call that blocks for
    good is abandoned at the checker's deadline without starving the executor
    that name resolution uses, and no second call starts while it is stuck.

    Args:
        name: the report key.
        component: the component a failure points at.
        fn: the check.
        required: whether a failure makes the service unhealthy.
        async_libraries: the async libraries an async ``fn`` runs under (``("asyncio",)`` for
            one that awaits an asyncio-only driver): under any other it is not run (see
            :func:`runnable_under`). ``None`` (default): any.
    """

    def __init__(
        self,
        name: str,
        component: ComponentLike,
        fn: Callable[[], Any],
        *,
        required: bool = True,
        async_libraries: tuple[str, ...] | None = None,
    ) -> None:
        self.name = name
        self.component = component
        self.required = required
        self.async_libraries = async_libraries
        self._fn = fn
        self._is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - an instance with an async __call__
        )
        self._thread_busy = False

    async def check(self) -> ProbeDetails:
        """Run the function; ``False`` counts as a failure."""
        result = await self._fn() if self._is_async else await self._in_thread()
        if inspect.isawaitable(result):
            result = await result
        if result is False:
            raise ProbeFailed(f"{self.name} check returned False")
        if result is None or result is True:
            return None
        if isinstance(result, Mapping):
            return result
        msg = f"{self.name} check returned {type(result).__name__}, expected None, a bool or a mapping"
        raise TypeError(msg)

    async def _in_thread(self) -> Any:
        if self._thread_busy:
            raise ProbeFailed(f"{self.name}: the previous call has not returned yet")
        self._thread_busy = True

        def idle() -> None:
            self._thread_busy = False

        return await call_in_thread(self._fn, name=f"ws_diag-probe-{self.name}", finally_=idle)
