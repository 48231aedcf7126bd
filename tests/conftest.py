"""Shared fixtures: private PostgreSQL / Redis servers and a black-hole listener."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from services import MissingBinaryError, PostgresServer, RedisServer, SilentListener

_S = TypeVar("_S", PostgresServer, RedisServer)


def _create(factory: Callable[[], _S]) -> _S:
    """Build a service, failing (never skipping) the test when its binary is missing."""
    try:
        return factory()
    except MissingBinaryError as exc:
        message = str(exc)
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One private PostgreSQL for the session; tests should use ``postgres``, which heals it."""
    server = _create(PostgresServer)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    """The session PostgreSQL, running and thawed before the test and thawed after it."""
    postgres_server.ensure_running()
    yield postgres_server
    postgres_server.thaw()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private Redis for the session; tests should use ``redis``, which heals it."""
    server = _create(RedisServer)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def redis(redis_server: RedisServer) -> Iterator[RedisServer]:
    """The session Redis, running and thawed before the test and thawed after it."""
    redis_server.ensure_running()
    yield redis_server
    redis_server.thaw()


@pytest.fixture
def silent_listener() -> Iterator[SilentListener]:
    """A TCP listener that accepts connections and never answers."""
    with SilentListener() as listener:
        yield listener
