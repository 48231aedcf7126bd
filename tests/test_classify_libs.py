"""Classification proven against the real libraries raising for real failures.

SQLAlchemy (asyncpg and psycopg 3 drivers) and psycopg against the suite's own
PostgreSQL, stopped mid-session; httpx and aiohttp against a closed port, a
black hole, a server that answers garbage and a server that answers 4xx/5xx;
the OpenAI and Anthropic SDKs against a local fake server that refuses, hangs,
answers 429, 500 and 400. Every client has retries off and short timeouts.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import anthropic
import asyncpg
import httpx
import openai
import psycopg
import pytest
import pytest_asyncio
import sqlalchemy
from fake_http import fake_http, garbage_http
from services import PostgresServer, SilentListener, free_port
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ws_diag import Component, CustomComponent
from ws_diag.classify import Classifier, Outcome

pytestmark = pytest.mark.asyncio

TIMEOUT = 0.3
# "It did not hang": far above the client timeouts, far below any library default.
NO_HANG = 10.0
DRIVERS = ("asyncpg", "psycopg")


async def raised(call: Callable[[], Awaitable[Any]]) -> BaseException:
    """Run ``call``, bounded, and return what it raised (failing if it returned)."""
    try:
        await asyncio.wait_for(call(), NO_HANG)
    except Exception as exc:
        return exc
    pytest.fail("the call did not fail")


def outcome(exc: BaseException, classifier: Classifier | None = None) -> Outcome | None:
    """The built-in (or given) classifier's verdict."""
    return (classifier or Classifier()).classify(exc)


@pytest_asyncio.fixture
async def http_server() -> AsyncIterator[str]:
    """A real HTTP server on loopback answering ``/status/N``; yields ``http://host:port``."""
    async with fake_http() as server:
        yield server.url


@pytest_asyncio.fixture
async def garbage_server() -> AsyncIterator[str]:
    """A TCP server that answers with bytes that are not HTTP."""
    async with garbage_http() as url:
        yield url


def closed_port_url() -> str:
    """An HTTP URL on a loopback port nobody listens on (connections are refused)."""
    return f"http://127.0.0.1:{free_port()}"


# -- SQLAlchemy and psycopg against the suite's PostgreSQL


def engine(postgres: PostgresServer, driver: str, **options: Any) -> AsyncEngine:
    """An async engine over ``driver`` with a small pool that times out quickly."""
    url = postgres.dsn.replace("postgresql://", f"postgresql+{driver}://")
    return create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=TIMEOUT, **options)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_sqlalchemy_stopped_mid_session_is_database(postgres: PostgresServer, driver: str) -> None:
    """PostgreSQL stopped under an open SQLAlchemy connection: the next query's error is DATABASE."""
    eng = engine(postgres, driver)
    try:
        async with eng.connect() as conn:
            await conn.execute(sqlalchemy.text("SELECT 1"))
            await postgres.astop()
            exc = await raised(lambda: conn.execute(sqlalchemy.text("SELECT 1")))
        assert isinstance(exc, sqlalchemy.exc.DBAPIError)
        assert outcome(exc) is Component.DATABASE
        # The SQLAlchemy error itself is recognised, not only the driver's error under it.
        assert Classifier().classify_one(exc) is Component.DATABASE
    finally:
        await postgres.astart()
        await asyncio.wait_for(eng.dispose(), NO_HANG)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_sqlalchemy_pool_timeout_is_database(postgres: PostgresServer, driver: str) -> None:
    """The pool's checkout timeout (every connection in use) is DATABASE."""
    eng = engine(postgres, driver)
    try:
        async with eng.connect():
            exc = await raised(eng.connect().__aenter__)
        assert isinstance(exc, sqlalchemy.exc.TimeoutError)
        assert outcome(exc) is Component.DATABASE
    finally:
        await asyncio.wait_for(eng.dispose(), NO_HANG)


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    "statement",
    ["SELECT no_such_column", "SELECT 1/0", "CREATE TEMP TABLE t (id int primary key); INSERT INTO t VALUES (1), (1)"],
)
async def test_sqlalchemy_query_errors_stay_unclassified(postgres: PostgresServer, driver: str, statement: str) -> None:
    """Syntax, data and integrity errors through SQLAlchemy are the app's bugs: unclassified."""
    eng = engine(postgres, driver)
    try:
        async with eng.connect() as conn:
            for part in statement.split("; ")[:-1]:
                await conn.execute(sqlalchemy.text(part))
            exc = await raised(lambda: conn.execute(sqlalchemy.text(statement.split("; ")[-1])))
        assert isinstance(exc, sqlalchemy.exc.DBAPIError)
        assert outcome(exc) is None
    finally:
        await asyncio.wait_for(eng.dispose(), NO_HANG)


async def test_sqlalchemy_psycopg_refused_is_database(postgres: PostgresServer) -> None:
    """A new connection refused through SQLAlchemy over psycopg is DATABASE."""
    eng = engine(postgres, "psycopg", connect_args={"connect_timeout": 2})
    await postgres.astop()
    try:
        exc = await raised(eng.connect().__aenter__)
        assert isinstance(exc, sqlalchemy.exc.OperationalError)
        assert outcome(exc) is Component.DATABASE
    finally:
        await postgres.astart()
        await asyncio.wait_for(eng.dispose(), NO_HANG)


async def test_sqlalchemy_asyncpg_refused_is_database_by_origin(postgres: PostgresServer) -> None:
    """Over asyncpg, a refused new connection is a plain OSError raised inside asyncpg: DATABASE, by origin."""
    eng = engine(postgres, "asyncpg")
    await postgres.astop()
    try:
        exc = await raised(eng.connect().__aenter__)
        assert type(exc) is ConnectionRefusedError
        assert outcome(exc) is Component.DATABASE
        assert Classifier().classify_one(exc) is None  # no type rule: the origin decided
    finally:
        await postgres.astart()
        await asyncio.wait_for(eng.dispose(), NO_HANG)


@pytest.mark.parametrize("via", ["asyncpg", "sqlalchemy"])
async def test_asyncpg_closed_port_is_database_by_origin(via: str) -> None:
    """asyncpg, alone or under SQLAlchemy, refused on a closed port: a plain OSError, DATABASE by origin."""
    dsn = f"postgresql://user@127.0.0.1:{free_port()}/db"
    if via == "asyncpg":
        exc = await raised(lambda: asyncpg.connect(dsn, timeout=NO_HANG))
    else:
        eng = create_async_engine(dsn.replace("postgresql://", "postgresql+asyncpg://"))
        try:
            exc = await raised(eng.connect().__aenter__)
        finally:
            await asyncio.wait_for(eng.dispose(), NO_HANG)
    assert isinstance(exc, OSError)
    assert Classifier().classify_one(exc) is None
    assert outcome(exc) is Component.DATABASE


async def test_sqlalchemy_sync_engine_stopped_mid_session_is_database(postgres: PostgresServer) -> None:
    """The same holds for a sync engine (psycopg): a query after the server stopped is DATABASE."""
    await asyncio.wait_for(asyncio.to_thread(_sync_engine_stopped, postgres), NO_HANG)


def _sync_engine_stopped(postgres: PostgresServer) -> None:
    url = postgres.dsn.replace("postgresql://", "postgresql+psycopg://")
    eng = sqlalchemy.create_engine(url, pool_size=1, max_overflow=0)
    try:
        with eng.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
            postgres.stop()
            with pytest.raises(sqlalchemy.exc.OperationalError) as info:
                conn.execute(sqlalchemy.text("SELECT 1"))
        assert outcome(info.value) is Component.DATABASE
    finally:
        postgres.start()
        eng.dispose()


async def test_psycopg_refused_and_stopped_are_database(postgres: PostgresServer) -> None:
    """psycopg 3 without SQLAlchemy: an admin shutdown mid-session and a refused connect are DATABASE."""
    conn = await psycopg.AsyncConnection.connect(postgres.dsn, connect_timeout=2)
    try:
        await postgres.astop()
        shutdown = await raised(lambda: conn.execute("SELECT 1"))
        refused = await raised(lambda: psycopg.AsyncConnection.connect(postgres.dsn, connect_timeout=2))
    finally:
        await conn.close()
        await postgres.astart()
    assert isinstance(shutdown, psycopg.OperationalError)
    assert outcome(shutdown) is Component.DATABASE
    assert isinstance(refused, psycopg.OperationalError)
    assert refused.sqlstate is None
    assert outcome(refused) is Component.DATABASE


@pytest.mark.parametrize(
    ("sqlstate", "expected"),
    [("40001", None), ("40P01", None), ("53300", Component.DATABASE), ("57014", Component.DATABASE)],
)
async def test_psycopg_sqlstates(postgres: PostgresServer, sqlstate: str, expected: Outcome | None) -> None:
    """Serialization failures and deadlocks (class 40) stay the app's; resource and cancel errors are DATABASE."""
    async with await psycopg.AsyncConnection.connect(postgres.dsn, connect_timeout=2) as conn:
        exc = await raised(
            lambda: conn.execute(f"DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '{sqlstate}'; END $$")
        )
    assert isinstance(exc, psycopg.Error)
    assert exc.sqlstate == sqlstate
    assert outcome(exc) is expected


# -- httpx and aiohttp


async def httpx_get(url: str) -> None:
    """One GET with short timeouts; raise_for_status."""
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        (await client.get(url)).raise_for_status()


async def test_httpx_closed_port_black_hole_and_garbage(silent_listener: SilentListener, garbage_server: str) -> None:
    """httpx: refused, timed out (black hole) and a broken response are INTEGRATION."""
    refused = await raised(lambda: httpx_get(closed_port_url()))
    hung = await raised(lambda: httpx_get(silent_listener.url("http", "/")))
    garbage = await raised(lambda: httpx_get(garbage_server + "/"))
    assert isinstance(refused, httpx.ConnectError)
    assert isinstance(hung, httpx.ReadTimeout)
    assert isinstance(garbage, httpx.RemoteProtocolError)
    for exc in (refused, hung, garbage):
        assert outcome(exc) is Component.INTEGRATION


INTEGRATION = Component.INTEGRATION


@pytest.mark.parametrize(("status", "expected"), [(500, INTEGRATION), (503, INTEGRATION), (404, None)])
async def test_httpx_status_errors(http_server: str, status: int, expected: Outcome | None) -> None:
    """raise_for_status: a dependency's 5xx is INTEGRATION, a 4xx (our request's fault) is unclassified."""
    exc = await raised(lambda: httpx_get(f"{http_server}/status/{status}"))
    assert isinstance(exc, httpx.HTTPStatusError)
    assert outcome(exc) is expected


async def aiohttp_get(url: str, limits: aiohttp.ClientTimeout | None = None) -> None:
    """One GET with short timeouts; raise_for_status."""
    limits = limits or aiohttp.ClientTimeout(sock_connect=TIMEOUT, sock_read=TIMEOUT)
    async with aiohttp.ClientSession(timeout=limits) as session, session.get(url) as response:
        response.raise_for_status()
        await response.read()


async def test_aiohttp_closed_port_and_black_hole(silent_listener: SilentListener) -> None:
    """aiohttp: refused and a socket-read timeout (black hole) are INTEGRATION."""
    refused = await raised(lambda: aiohttp_get(closed_port_url()))
    hung = await raised(lambda: aiohttp_get(silent_listener.url("http", "/")))
    assert isinstance(refused, aiohttp.ClientConnectorError)
    assert isinstance(hung, aiohttp.SocketTimeoutError)
    assert outcome(refused) is Component.INTEGRATION
    assert outcome(hung) is Component.INTEGRATION


async def test_aiohttp_total_timeout_is_integration_by_origin(silent_listener: SilentListener) -> None:
    """aiohttp's total timeout raises a plain TimeoutError inside aiohttp: INTEGRATION, by where it was raised."""
    exc = await raised(lambda: aiohttp_get(silent_listener.url("http", "/"), aiohttp.ClientTimeout(total=TIMEOUT)))
    assert type(exc) is TimeoutError
    assert outcome(exc) is Component.INTEGRATION
    assert Classifier().classify_one(exc) is None  # no type rule: the origin decided


@pytest.mark.parametrize(("status", "expected"), [(500, INTEGRATION), (502, INTEGRATION), (400, None)])
async def test_aiohttp_status_errors(http_server: str, status: int, expected: Outcome | None) -> None:
    """raise_for_status: a 5xx is INTEGRATION, a 4xx is unclassified."""
    exc = await raised(lambda: aiohttp_get(f"{http_server}/status/{status}"))
    assert isinstance(exc, aiohttp.ClientResponseError)
    assert outcome(exc) is expected


# -- the OpenAI and Anthropic SDKs against the fake server


def openai_call(base_url: str) -> Callable[[], Awaitable[Any]]:
    """A bounded, retry-free OpenAI call against ``base_url``."""

    async def call() -> None:
        async with openai.AsyncOpenAI(
            api_key="sk-test", base_url=f"{base_url}/v1", max_retries=0, timeout=TIMEOUT
        ) as client:
            await client.models.list()

    return call


def anthropic_call(base_url: str) -> Callable[[], Awaitable[Any]]:
    """A bounded, retry-free Anthropic call against ``base_url``."""

    async def call() -> None:
        async with anthropic.AsyncAnthropic(
            api_key="sk-ant-test", base_url=base_url, max_retries=0, timeout=TIMEOUT
        ) as client:
            await client.messages.create(
                model="claude-test", max_tokens=1, messages=[{"role": "user", "content": "hi"}]
            )

    return call


SDKS = {"openai": (openai, openai_call), "anthropic": (anthropic, anthropic_call)}


@pytest.mark.parametrize("sdk", SDKS)
async def test_llm_sdk_failures(sdk: str, http_server: str, silent_listener: SilentListener) -> None:
    """Refused, timed out, 429 and 500 from an LLM SDK are INTEGRATION; a 400 (our request) is unclassified."""
    module, call = SDKS[sdk]
    cases = {
        closed_port_url(): (module.APIConnectionError, Component.INTEGRATION),
        silent_listener.url("http"): (module.APITimeoutError, Component.INTEGRATION),
        f"{http_server}/status/429": (module.RateLimitError, Component.INTEGRATION),
        f"{http_server}/status/500": (module.InternalServerError, Component.INTEGRATION),
        f"{http_server}/status/400": (module.BadRequestError, None),
    }
    for base_url, (error_type, expected) in cases.items():
        exc = await raised(call(base_url))
        assert type(exc) is error_type, (base_url, exc)
        assert outcome(exc) is expected, (base_url, exc)


@pytest.mark.parametrize("sdk", SDKS)
async def test_llm_component_is_configurable(sdk: str, http_server: str) -> None:
    """Classifier(llm_component=...) points the SDK rules at the user's own component, and nothing else moves."""
    llm = CustomComponent("llm", "LLM Provider", 4100)
    classifier = Classifier(llm_component=llm)
    _, call = SDKS[sdk]
    assert outcome(await raised(call(f"{http_server}/status/429")), classifier) is llm
    assert outcome(await raised(call(closed_port_url())), classifier) is llm
    assert outcome(await raised(lambda: httpx_get(closed_port_url())), classifier) is Component.INTEGRATION


async def test_rules_and_probes_import_none_of_the_libraries() -> None:
    """Importing ws_diag, its probes package and classifying imports none of the optional libraries."""
    code = (
        "import sys, ws_diag, ws_diag.health.probes\n"
        "from ws_diag.classify import Classifier\n"
        "from ws_diag import DiagSettings\n"
        "Classifier().classify(ValueError())\n"
        "ws_diag.health.probes.probes_from_settings(DiagSettings())\n"
        "libs = ('sqlalchemy', 'psycopg', 'httpx', 'aiohttp', 'openai', 'anthropic', 'asyncpg', 'redis')\n"
        "print(sorted(name for name in libs if name in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WS_DIAG_")}
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, check=True
    )
    assert result.stdout.strip() == "[]"
