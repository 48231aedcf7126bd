"""The recipes in examples/ under real servers: what a real client sees for each documented case.

Raw ASGI, Starlette, FastAPI and Quart run in-process under hypercorn and both uvicorn
implementations; the Django Channels project runs under daphne, in a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from servers import SERVER_KINDS, run_server
from websockets.exceptions import InvalidStatus

from clients import CLIENT_TIMEOUT, Session, talk
from ws_diag.testing.servers import DaphneServer as Daphne

ROOT = Path(__file__).resolve().parents[1]
# examples/ is not part of the installed package: import it from the checkout.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples import fastapi_app, quart_app, raw_asgi, starlette_app  # noqa: E402

SECRET = "hunter2"  # planted in the examples' exception text; must never reach a client
ASGI_EXAMPLES = {"raw": raw_asgi, "starlette": starlette_app, "fastapi": fastapi_app, "quart": quart_app}


def assert_database_failure(session: Session) -> None:
    """The database_failure the examples raise after accept, as the client sees it."""
    assert session.code == 4005
    assert session.frame["component"] == "Database"
    assert session.frame["message"] == "Database session factory unavailable"
    assert session.frame["user_id"] == "user123"


def assert_generic_failure(session: Session) -> None:
    """An unexpected exception: 1011 and a generic frame without the exception's text."""
    assert session.code == 1011
    assert session.frame["component"] == "Generic Internal"
    assert SECRET not in json.dumps(session.messages) + (session.reason or "")


# -- raw ASGI, Starlette, FastAPI, Quart under hypercorn and uvicorn ---------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", SERVER_KINDS)
@pytest.mark.parametrize("example", ASGI_EXAMPLES.values(), ids=ASGI_EXAMPLES.keys())
async def test_database_failure_after_accept(example: ModuleType, kind: str) -> None:
    """database_failure raised after accept: the client gets the frame, then 4005 with the incident id."""
    async with run_server(example.app, kind) as url:
        session = await talk(url + "/ws/database")
    assert_database_failure(session)
    assert session.reason == f"Database failure (incident {session.frame['incident_id']})"


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", SERVER_KINDS)
@pytest.mark.parametrize("example", ASGI_EXAMPLES.values(), ids=ASGI_EXAMPLES.keys())
async def test_unexpected_exception(example: ModuleType, kind: str) -> None:
    """An unexpected exception after accept: 1011 with a generic frame, never the exception's text."""
    async with run_server(example.app, kind) as url:
        session = await talk(url + "/ws/crash")
    assert_generic_failure(session)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", SERVER_KINDS)
@pytest.mark.parametrize("example", ASGI_EXAMPLES.values(), ids=ASGI_EXAMPLES.keys())
async def test_auth_failure_before_accept(example: ModuleType, kind: str) -> None:
    """auth_failure before accept (FastAPI: in a dependency): accepted, frame, then 4002."""
    async with run_server(example.app, kind) as url:
        session = await talk(url + "/ws/auth", ())
    assert session.code == 4002
    assert session.frame["component"] == "Authentication"
    assert session.frame["retryable"] is False


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", SERVER_KINDS)
@pytest.mark.parametrize("example", [starlette_app, fastapi_app], ids=["starlette", "fastapi"])
async def test_websocket_exception_after_accept_passes_through(example: ModuleType, kind: str) -> None:
    """WebSocketException(1008) after accept is a deliberate close: 1008 and its reason, no frame."""
    async with run_server(example.app, kind) as url:
        session = await talk(url + "/ws/policy")
    assert (session.code, session.reason) == (1008, "Message not allowed")
    assert session.messages == []


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", SERVER_KINDS)
@pytest.mark.parametrize(
    ("example", "path"),
    [(starlette_app, "/ws/policy-before-accept"), (fastapi_app, "/ws/policy?user=mallory")],
    ids=["starlette", "fastapi-dependency"],
)
async def test_websocket_exception_before_accept_is_403(example: ModuleType, path: str, kind: str) -> None:
    """WebSocketException(1008) before accept stays the server's HTTP 403: ws_diag does not touch it."""
    async with run_server(example.app, kind) as url:
        with pytest.raises(InvalidStatus) as info:
            await talk(url + path, ())
    assert info.value.response.status_code == 403


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_fastapi_dependency_success_untouched(kind: str) -> None:
    """With a valid token the FastAPI dependency passes and the session ends normally, with no frame."""
    async with run_server(fastapi_app.app, kind) as url:
        session = await talk(url + "/ws/auth?token=valid", ())
    assert session.messages == ["hello alice"]
    assert session.code == 1000


@pytest.mark.asyncio
async def test_quart_without_propagate_exceptions_hides_the_failure() -> None:
    """Why the Quart recipe sets PROPAGATE_EXCEPTIONS: otherwise Quart closes a failed session with 1000."""
    app = quart_app.create_app()
    app.config["PROPAGATE_EXCEPTIONS"] = False
    async with run_server(app, "hypercorn") as url:
        session = await talk(url + "/ws/database")
    assert session.code == 1000
    assert session.messages == []


# -- Django Channels under daphne -------------------------------------------------------------------

DAPHNE_START_S = 30  # Django and Twisted imports on a cold, busy machine
DAPHNE_STOP_S = 10
CHANNELS_APP = "examples.django_channels.asgi:application"


def daphne_env(**ws_diag: str) -> dict[str, str]:
    """The environment for daphne: the checkout importable, no stray WS_DIAG_* settings."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("WS_DIAG_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["DJANGO_SETTINGS_MODULE"] = "examples.django_channels.settings"
    env.update({f"WS_DIAG_{name.upper()}": value for name, value in ws_diag.items()})
    return env


async def http_get(url: str, path: str) -> int:
    """The status of a minimal HTTP/1.1 GET to the server behind ``url``."""
    host, port = url.removeprefix("ws://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    response = await asyncio.wait_for(reader.read(), CLIENT_TIMEOUT)
    writer.close()
    await writer.wait_closed()
    return int(response.split()[1])


@pytest.fixture(scope="module")
def daphnes() -> Iterator[dict[str, Daphne]]:
    """Two daphne servers, started together: default settings, and http_denial with a health path."""
    servers: dict[str, Daphne] = {}
    try:
        servers["default"] = Daphne(CHANNELS_APP, env=daphne_env(), cwd=ROOT)
        servers["http_denial"] = Daphne(
            CHANNELS_APP, env=daphne_env(preaccept="http_denial", health_path="/healthz"), cwd=ROOT
        )
        for server in servers.values():
            server.start(DAPHNE_START_S)
        yield servers
    finally:
        for server in servers.values():
            server.stop(DAPHNE_STOP_S)


@pytest.fixture
def daphne(daphnes: dict[str, Daphne]) -> Daphne:
    """The daphne server with ws_diag's default settings."""
    return daphnes["default"]


@pytest.mark.asyncio
async def test_daphne_database_failure(daphne: Daphne) -> None:
    """Under daphne a component error after accept arrives as the frame and 4005, but the close reason is dropped."""
    session = await talk(daphne.url + "/ws/database")
    assert_database_failure(session)
    assert session.reason == ""  # daphne's serverClose() passes the code only


@pytest.mark.asyncio
async def test_daphne_unexpected_exception(daphne: Daphne) -> None:
    """Under daphne, which refuses 1011 from an app, the generic frame arrives and the close is 4011, at once."""
    session = await talk(daphne.url + "/ws/crash")
    assert session.code == 4011  # 1011 + 3000: autobahn's sendClose() accepts only 1000 and 3000-4999
    assert session.frame["component"] == "Generic Internal"
    assert SECRET not in json.dumps(session.messages)
    assert session.reason == ""
    incident = session.frame["incident_id"]
    await asyncio.to_thread(
        daphne.wait_for, rf"diagnosis: component=Generic Internal code=4011 .*incident_id={incident}"
    )  # the log line names the code the client actually received
    await asyncio.to_thread(daphne.wait_for, r"server refused close code 1011; closed with 4011 instead")


@pytest.mark.asyncio
async def test_daphne_auth_failure_before_accept(daphne: Daphne) -> None:
    """Under daphne a failure in connect() still reaches the client: accepted, frame, then 4002 (no reason)."""
    session = await talk(daphne.url + "/ws/auth", ())
    assert session.code == 4002
    assert session.frame["component"] == "Authentication"
    assert session.reason == ""


@pytest.mark.asyncio
async def test_daphne_has_no_http_denial(daphnes: dict[str, Daphne]) -> None:
    """daphne offers no websocket.http.response extension: preaccept=http_denial falls back to accept, frame, 4002."""
    url = daphnes["http_denial"].url
    # The WS_DIAG_* settings of this process are live: its health endpoint answers (Django would 404).
    assert await http_get(url, "/healthz") == 200
    assert await http_get(url, "/elsewhere") == 404
    session = await talk(url + "/ws/auth", ())
    assert session.code == 4002
    assert session.frame["component"] == "Authentication"


@pytest.mark.asyncio
async def test_daphne_deliberate_close_before_accept_is_403(daphne: Daphne) -> None:
    """A consumer that closes in connect() without accepting gets daphne's HTTP 403, untouched."""
    with pytest.raises(InvalidStatus) as info:
        await talk(daphne.url + "/ws/policy?user=mallory", ())
    assert info.value.response.status_code == 403


@pytest.mark.asyncio
async def test_daphne_deliberate_close_after_accept(daphne: Daphne) -> None:
    """A consumer's own close(4403, reason) passes through ws_diag: 4403 arrives, its reason does not."""
    session = await talk(daphne.url + "/ws/policy")
    assert (session.code, session.reason) == (4403, "")
    assert session.messages == []
