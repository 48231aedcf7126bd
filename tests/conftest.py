"""Shared fixtures: private PostgreSQL / Redis servers and a black-hole listener."""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import TypeVar

import pytest
import reliability
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


# -- Reliability report ----------------------------------------------------------

_AREA_OF_MODULE = {
    "test_fuzz": "fuzz",
    "test_load": "load",
    "test_faults": "faults",
    "test_hostile": "hostile",
    "test_e2e": "matrix",
    "test_examples": "matrix",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    """--reliability-report FILE: write what the reliability tests tried; --screenshots DIR: the demo page's states."""
    parser.addoption("--reliability-report", default=None, help="write the reliability table to this file")
    parser.addoption(
        "--screenshots",
        default=None,
        help="write a PNG of each demo page state the browser tests reach to this directory (docs/screenshots)",
    )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count reliability tests by area."""
    module = report.nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
    area = _AREA_OF_MODULE.get(module)
    if area is not None and (report.when == "call" or (report.when == "setup" and report.failed)):
        reliability.outcome(area, report.nodeid, report.passed)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the reliability table when asked to."""
    target = session.config.getoption("--reliability-report")
    fuzz = sys.modules.get("test_fuzz")
    if target and fuzz is not None:
        reliability.record("fuzz", **dict(fuzz.FUZZ_STATS))
    if target:
        packages = ("hypercorn", "uvicorn", "websockets", "daphne", "hypothesis")
        reliability.write_report(Path(target), platform.python_version(), {p: version(p) for p in packages})
