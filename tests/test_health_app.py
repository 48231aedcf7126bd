"""HealthApp: the health endpoints as their own ASGI app, mounted in Starlette and FastAPI under real servers."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from harness import bearer, http_request
from servers import run_server
from starlette.applications import Starlette
from starlette.routing import Mount, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ws_diag import Component, DiagnosticsMiddleware, DiagSettings
from ws_diag.health import HealthApp, HealthChecker
from ws_diag.health.formats import HEALTH_JSON
from ws_diag.health.probes import CallableProbe, ProbeFailed

TOKEN = "t0ken-for-health"


class Database:
    """A required probe the test switches off."""

    def __init__(self) -> None:
        self.up = True

    async def check(self) -> None:
        if not self.up:
            raise ProbeFailed("database down")

    def probe(self) -> CallableProbe:
        return CallableProbe("database", Component.DATABASE, self.check)


async def chat(websocket: WebSocket) -> None:
    """Accepts, then fails without naming a component: the shared checker decides."""
    await websocket.accept()
    await websocket.receive_text()
    raise RuntimeError("something broke")


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["hypercorn", "uvicorn"])
async def test_mounted_in_starlette_sharing_the_middlewares_checker(kind: str) -> None:
    """Mount("/health", HealthApp(checker)) serves report, liveness, readiness; diagnoses use the same checker."""
    database = Database()
    settings = DiagSettings(cache_ttl=0)
    checker = HealthChecker.from_settings(settings, [database.probe()])
    routes = [WebSocketRoute("/ws", chat), Mount("/health", HealthApp(checker, settings=settings))]
    app = DiagnosticsMiddleware(Starlette(routes=routes), settings=settings, checker=checker)
    async with run_server(app, kind) as url:
        base = url.replace("ws://", "http://", 1)
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            report = await http.get("/health/")
            assert report.status_code == 200
            assert report.json()["healthy"] is True
            live = await http.get("/health/livez")
            assert (live.status_code, live.json()) == (200, {"status": "pass"})
            database.up = False
            ready = await http.get("/health/readyz")
            assert (ready.status_code, ready.json()) == (503, {"status": "fail"})
            assert ready.headers["content-type"] == HEALTH_JSON
            assert (await http.get("/health/nothing-here")).status_code == 404
            assert (await http.post("/health/readyz")).status_code == 405
        async with connect(f"{url}/ws") as ws:
            await ws.send("hi")
            frame = json.loads(await ws.recv())
            with pytest.raises(ConnectionClosed):
                await ws.recv()
        assert frame["error"]["component"] == "Database"
        assert ws.close_code == 4005


@pytest.mark.asyncio
async def test_mounted_in_fastapi_with_a_token_and_its_own_paths() -> None:
    """app.mount("/ops", HealthApp(...)) serves the chosen paths; verbose readiness needs the token."""
    database = Database()
    settings = DiagSettings(health_token=TOKEN, cache_ttl=0)
    api = FastAPI()
    api.mount(
        "/ops",
        HealthApp(
            settings=settings,
            probes=[database.probe()],
            health_path=None,
            liveness_path="/live",
            readiness_path="/ready",
        ),
    )
    async with run_server(api, "uvicorn") as url:
        base = url.replace("ws://", "http://", 1)
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            assert (await http.get("/ops/live")).json() == {"status": "pass"}
            assert (await http.get("/ops/ready")).status_code == 200
            assert (await http.get("/ops/ready?verbose")).status_code == 401
            verbose = await http.get("/ops/ready?verbose", headers={"authorization": f"Bearer {TOKEN}"})
            assert verbose.status_code == 200
            assert verbose.text.startswith("[+]database ok")
            assert (await http.get("/ops/")).status_code == 404  # health_path=None: no report


@pytest.mark.asyncio
async def test_a_path_the_router_already_stripped_is_served_as_is() -> None:
    """Routers that strip the mount prefix from `path` (Litestar, Django) or keep it in root_path: both work."""
    app = HealthApp(probes=[Database().probe()], settings=DiagSettings())
    status, _, body = await http_request(app, "/readyz")
    assert (status, json.loads(body)) == (200, {"status": "pass"})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/k8s/livez", "root_path": "/k8s", "headers": bearer(None)}
    await app(scope, receive, send)
    assert sent[0]["status"] == 200
    sent.clear()
    # A root_path that is only a prefix of the first segment is not the mount: /k8sx/livez is not /livez.
    await app({**scope, "path": "/k8sx/livez"}, receive, send)
    assert sent[0]["status"] == 404


def test_paths_are_checked() -> None:
    """A relative path, two endpoints on one path, or probes with a checker are refused."""
    checker = HealthChecker([])
    with pytest.raises(ValueError, match="must start with '/'"):
        HealthApp(checker, liveness_path="livez")
    with pytest.raises(ValueError, match="already another endpoint's path"):
        HealthApp(checker, liveness_path="/x", readiness_path="/x")
    with pytest.raises(ValueError, match="not both"):
        HealthApp(checker, probes=[Database().probe()])
