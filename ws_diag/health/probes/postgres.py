"""PostgreSQL probe (extra ``postgres``: asyncpg)."""

from __future__ import annotations

import contextlib
from typing import Any

from ..._optional import missing

try:
    import asyncpg
except ModuleNotFoundError as exc:
    missing(exc, "asyncpg", extra="postgres", feature=__name__)

from ...components import Component, ComponentLike
from .base import ProbeDetails

__all__ = ["PostgresProbe"]


class PostgresProbe:
    """A real round trip (``SELECT 1``) to PostgreSQL, every step bounded.

    With a ``pool`` it acquires a connection with a timeout (asyncpg's
    ``acquire()`` otherwise waits forever); with a ``dsn`` it opens a short-lived
    connection with a connect timeout and terminates it afterwards (``terminate``
    never waits on the network, ``close`` could).

    Args:
        dsn: a libpq-style URL; its password never appears in results.
        pool: an ``asyncpg.Pool`` to borrow a connection from.
        name: the report key.
        timeout: seconds for each step.
        required: whether a failure makes the service unhealthy.
    """

    async_libraries: tuple[str, ...] = ("asyncio",)  # asyncpg runs under asyncio only (not trio)

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: asyncpg.Pool | None = None,
        name: str = "database",
        timeout: float = 1.0,
        required: bool = True,
        component: ComponentLike = Component.DATABASE,
    ) -> None:
        if (dsn is None) == (pool is None):
            msg = "PostgresProbe needs exactly one of dsn= or pool="
            raise ValueError(msg)
        if timeout <= 0:
            msg = f"PostgresProbe timeout must be positive, got {timeout!r}"
            raise ValueError(msg)
        self._dsn = dsn
        self._pool = pool
        self.name = name
        self.timeout = timeout
        self.required = required
        self.component = component

    def __repr__(self) -> str:
        return f"PostgresProbe(name={self.name!r}, {'pool' if self._pool is not None else 'dsn'}=...)"

    async def check(self) -> ProbeDetails:
        """Run ``SELECT 1``; raise on any failure or timeout."""
        if self._pool is not None:
            conn = await self._pool.acquire(timeout=self.timeout)
            try:
                return await self._select_one(conn)
            finally:
                # release() with a timeout terminates a connection it cannot reset in
                # time; without one it waits on a hung server forever.
                with contextlib.suppress(Exception):
                    await self._pool.release(conn, timeout=self.timeout)
        conn = await asyncpg.connect(self._dsn, timeout=self.timeout, command_timeout=self.timeout)
        try:
            return await self._select_one(conn)
        finally:
            conn.terminate()

    async def _select_one(self, conn: Any) -> ProbeDetails:
        value = await conn.fetchval("SELECT 1", timeout=self.timeout)
        if value != 1:
            msg = f"SELECT 1 returned {value!r}"
            raise asyncpg.InterfaceError(msg)
        return None
