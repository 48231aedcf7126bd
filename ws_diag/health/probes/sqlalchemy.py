"""SQLAlchemy probe (extra ``sqlalchemy``): ``SELECT 1`` through the app's own engine."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ..._optional import missing

try:
    import sqlalchemy
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
    from sqlalchemy.pool import NullPool
except ModuleNotFoundError as exc:
    missing(exc, "sqlalchemy", extra="sqlalchemy", feature=__name__)

from ..._concurrency import timeout
from ...components import Component, ComponentLike
from .base import CallableProbe, ProbeDetails, ProbeFailed

__all__ = ["SQLAlchemyProbe"]


class SQLAlchemyProbe:
    """A real round trip (``SELECT 1``) through a SQLAlchemy engine, bounded by ``timeout``.

    With an ``AsyncEngine`` every step (pool checkout, connect, query, release)
    runs under one deadline of ``timeout`` seconds: an exhausted pool fails the
    probe at the deadline (SQLAlchemy's own ``pool_timeout`` defaults to 30 s),
    and a connection whose query did not finish in time is invalidated (closed
    without waiting on the server), so the pool never loses a connection to the
    probe. A connection SQLAlchemy finds dead (the server restarted since it was
    pooled) is retried once within the same deadline, as the pool has then
    discarded its stale connections.

    A sync ``Engine`` is checked in a daemon thread of the probe's own (never
    the loop's shared executor); the probe answers at the deadline, and no
    second check starts while a stuck one has not returned. Its connection goes
    back to the pool when the driver call returns: set the driver's own
    connect and statement timeouts to bound that.

    Args:
        engine: an ``AsyncEngine`` or a sync ``Engine``.
        name: the report key.
        timeout: seconds for the whole check.
        required: whether a failure makes the service unhealthy.
        component: the component a failure points at.

    Raises:
        TypeError: ``engine`` is neither engine type.
        ValueError: ``timeout`` is not positive.
    """

    def __init__(
        self,
        engine: AsyncEngine | sqlalchemy.Engine,
        *,
        name: str = "database",
        timeout: float = 1.0,
        required: bool = True,
        component: ComponentLike = Component.DATABASE,
    ) -> None:
        if not isinstance(engine, AsyncEngine | sqlalchemy.Engine):
            msg = f"SQLAlchemyProbe engine must be an AsyncEngine or an Engine, got {type(engine).__name__}"
            raise TypeError(msg)
        if not timeout > 0:
            msg = f"SQLAlchemyProbe timeout must be positive, got {timeout!r}"
            raise ValueError(msg)
        self.engine = engine
        self.name = name
        self.timeout = timeout
        self.required = required
        self.component = component
        self._sync = (
            CallableProbe(name, component, self._check_sync, required=required)
            if isinstance(engine, sqlalchemy.Engine)
            else None
        )
        # SQLAlchemy's asyncio extension runs under asyncio only; a sync engine runs in a thread anywhere.
        self.async_libraries: tuple[str, ...] | None = ("asyncio",) if self._sync is None else None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLAlchemyProbe:
        """A probe with an engine of its own for ``url`` (no pooling: one connection per check).

        A driver with asyncio support (``postgresql+asyncpg://``,
        ``postgresql+psycopg://``, ...) gets an ``AsyncEngine``, a sync-only one
        (``sqlite://``) an ``Engine``. ``options`` are the constructor's keyword
        arguments.

        Raises:
            sqlalchemy.exc.ArgumentError: ``url`` is not a database URL.
            ImportError: the URL's driver is not installed.
        """
        parsed = sqlalchemy.make_url(url)
        try:
            engine: AsyncEngine | sqlalchemy.Engine = create_async_engine(parsed, poolclass=NullPool)
        except sqlalchemy.exc.InvalidRequestError:  # "The asyncio extension requires an async driver"
            engine = sqlalchemy.create_engine(parsed, poolclass=NullPool)
        return cls(engine, **options)

    def __repr__(self) -> str:
        return f"SQLAlchemyProbe(name={self.name!r}, url={self.engine.url.render_as_string(hide_password=True)!r})"

    async def check(self) -> ProbeDetails:
        """Run ``SELECT 1``; raise on any failure, or ``TimeoutError`` at the deadline."""
        if self._sync is not None:
            async with timeout(self.timeout):
                await self._sync.check()
        else:
            assert isinstance(self.engine, AsyncEngine)
            deadline = asyncio.get_running_loop().time() + self.timeout
            try:
                await self._select_one(self.engine, deadline)
            except sqlalchemy.exc.DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                await self._select_one(self.engine, deadline)
        return _pool_details(self.engine)

    @staticmethod
    async def _select_one(engine: AsyncEngine, deadline: float) -> None:
        async with asyncio.timeout_at(deadline):
            conn: AsyncConnection = await engine.connect()
        try:
            async with asyncio.timeout_at(deadline):
                value = (await conn.exec_driver_sql("SELECT 1")).scalar()
                await conn.close()
        except BaseException:
            # invalidate() closes the DBAPI connection without a rollback round trip
            # and takes it out of the pool's count; close() then only releases the
            # wrapper. Neither waits on a hung server.
            with contextlib.suppress(Exception):
                await conn.invalidate()
            with contextlib.suppress(Exception):
                await conn.close()
            raise
        _expect_one(value)

    def _check_sync(self) -> None:
        assert isinstance(self.engine, sqlalchemy.Engine)
        with self.engine.connect() as conn:
            _expect_one(conn.exec_driver_sql("SELECT 1").scalar())


def _expect_one(value: object) -> None:
    if value != 1:
        msg = f"SELECT 1 returned {value!r}"
        raise ProbeFailed(msg)


def _pool_details(engine: AsyncEngine | sqlalchemy.Engine) -> ProbeDetails:
    pool = engine.pool
    checked_out = getattr(pool, "checkedout", None)
    size = getattr(pool, "size", None)
    if callable(checked_out) and callable(size):
        return {"pool_checked_out": checked_out(), "pool_size": size()}
    return None
