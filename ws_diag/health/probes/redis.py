"""Redis probe (extra ``redis``: redis-py's asyncio client)."""

from __future__ import annotations

import asyncio
import contextlib

from ..._optional import missing

try:
    import redis.asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
except ModuleNotFoundError as exc:
    missing(exc, "redis", extra="redis", feature=__name__)

from ...components import Component, ComponentLike
from .base import ProbeDetails

__all__ = ["RedisProbe"]


class RedisProbe:
    """``PING`` with explicit connect and socket timeouts and no library retries.

    redis-py's defaults retry and wait far longer than a probe may (measured:
    58.7 s to fail a PING against a silent listener). With a ``url`` each check
    uses a fresh single connection, closed within the timeout; with a ``client``
    the user's client is used as it is, under the timeout.

    Args:
        url: ``redis://`` or ``rediss://`` URL; its password never appears in results.
        client: a ``redis.asyncio.Redis`` to ping.
        name: the report key.
        timeout: seconds for connect and for the reply.
        required: whether a failure makes the service unhealthy (default ``False``:
            Redis is often a cache).
    """

    async_libraries: tuple[str, ...] = ("asyncio",)  # redis-py's asyncio client runs under asyncio only (not trio)

    def __init__(
        self,
        url: str | None = None,
        *,
        client: redis.asyncio.Redis | None = None,
        name: str = "redis",
        timeout: float = 1.0,
        required: bool = False,
        component: ComponentLike = Component.REDIS,
    ) -> None:
        if (url is None) == (client is None):
            msg = "RedisProbe needs exactly one of url= or client="
            raise ValueError(msg)
        if timeout <= 0:
            msg = f"RedisProbe timeout must be positive, got {timeout!r}"
            raise ValueError(msg)
        self._url = url
        self._client = client
        self.name = name
        self.timeout = timeout
        self.required = required
        self.component = component

    def __repr__(self) -> str:
        return f"RedisProbe(name={self.name!r}, {'client' if self._client is not None else 'url'}=...)"

    async def check(self) -> ProbeDetails:
        """``PING``; raise on any failure or timeout."""
        if self._client is not None:
            async with asyncio.timeout(self.timeout):
                await self._client.ping()
            return None
        bounded = {
            "socket_connect_timeout": self.timeout,
            "socket_timeout": self.timeout,
            "retry": Retry(NoBackoff(), 0),
            "retry_on_timeout": False,
            "health_check_interval": 0,
        }
        client = redis.asyncio.Redis.from_url(self._url, single_connection_client=True, **bounded)  # type: ignore[arg-type]
        # Options in the URL's query string win over from_url's arguments: put ours back.
        client.connection_pool.connection_kwargs.update(bounded)
        try:
            async with asyncio.timeout(self.timeout):
                await client.ping()
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeout):
                    await client.aclose()
        return None
