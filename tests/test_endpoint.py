"""The health endpoint: in-process and over a real HTTP connection."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from harness import bearer, http_request
from pydantic import SecretStr
from servers import run_server

from ws_diag import Component, DiagnosticsMiddleware, DiagSettings
from ws_diag.health.probes import CallableProbe, ProbeFailed

pytestmark = pytest.mark.asyncio

TOKEN = "t0ken-for-health"


async def app(scope: Any, receive: Any, send: Any) -> None:
    """The wrapped app answers everything else with 204."""
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def wrapped(*, healthy: bool = True, **settings: Any) -> DiagnosticsMiddleware:
    """The app behind ws_diag with one database probe."""

    async def database() -> None:
        if not healthy:
            raise ProbeFailed("postgresql://app:db-pass-123@db failed")

    probe = CallableProbe("database", Component.DATABASE, database)
    return DiagnosticsMiddleware(app, settings=DiagSettings(health_path="/healthz", **settings), probes=[probe])


async def request(
    middleware: DiagnosticsMiddleware, path: str = "/healthz", method: str = "GET", token: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One in-process HTTP request."""
    return await http_request(middleware, path, method=method, headers=bearer(token))


async def test_healthy_is_200_with_report() -> None:
    """A healthy service answers 200 with the JSON report."""
    status, headers, body = await request(wrapped())
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["healthy"] is True


async def test_unhealthy_is_503_and_redacted() -> None:
    """A failed required probe answers 503; error texts follow expose_details and never carry passwords."""
    status, _, body = await request(wrapped(healthy=False))
    assert status == 503
    report = json.loads(body)
    assert report["failed_components"] == ["database"]
    assert report["component_details"]["database"]["error"] == "ProbeFailed"
    status, _, body = await request(wrapped(healthy=False, expose_details=True))
    assert "postgresql://app:***@db failed" in body.decode()
    assert b"db-pass-123" not in body


async def test_token_required() -> None:
    """With health_token, a missing or wrong token gets 401 and no report; the right one gets the report."""
    middleware = wrapped(health_token=TOKEN)
    for token in (None, "wrong"):
        status, headers, body = await request(middleware, token=token)
        assert status == 401
        assert headers["www-authenticate"] == "Bearer"
        assert b"healthy" not in body
    status, _, body = await request(middleware, token=TOKEN)
    assert status == 200
    assert json.loads(body)["healthy"] is True


async def test_other_paths_and_methods() -> None:
    """Other paths reach the app; other methods on the health path get 405; HEAD gets no body."""
    middleware = wrapped()
    assert (await request(middleware, path="/other"))[0] == 204
    assert (await request(middleware, method="POST"))[0] == 405
    status, _, body = await request(middleware, method="HEAD")
    assert (status, body) == (200, b"")


async def test_no_health_path_means_no_endpoint() -> None:
    """Without health_path every HTTP request goes to the app."""
    middleware = DiagnosticsMiddleware(app, settings=DiagSettings())
    assert (await request(middleware))[0] == 204


@pytest.mark.parametrize("kind", ["hypercorn", "uvicorn-websockets"])
async def test_endpoint_over_real_http(kind: str) -> None:
    """Over a real server, the endpoint answers 401 without the token and 503 with it when unhealthy."""
    middleware = wrapped(healthy=False, health_token=TOKEN)
    async with run_server(middleware, kind) as url:
        port = int(url.rsplit(":", 1)[1])
        for token, expected in ((None, 401), (TOKEN, 503)):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            auth = f"Authorization: Bearer {token}\r\n" if token else ""
            writer.write(f"GET /healthz HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n".encode())
            response = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            await writer.wait_closed()
            assert response.startswith(f"HTTP/1.1 {expected}".encode())
            assert (b'"healthy":false' in response) == (expected == 503)


async def test_bearer_scheme_is_case_insensitive() -> None:
    """'bearer' in any case is accepted with the right token (RFC 9110), and HEAD tells the real length."""
    middleware = wrapped(health_token=TOKEN)
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/healthz",
        "headers": [(b"authorization", f"bEaReR {TOKEN}".encode())],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await middleware(scope, receive, send)
    assert sent[0]["status"] == 200
    status, headers, body = await request(middleware, method="HEAD", token=TOKEN)
    assert (status, body) == (200, b"")
    assert int(headers["content-length"]) > 0


async def request_with_header(middleware: DiagnosticsMiddleware, authorization: bytes | None) -> int:
    """One in-process GET of the health path with a raw Authorization header; the status."""
    headers = [(b"authorization", authorization)] if authorization is not None else []
    status, _, _ = await http_request(middleware, "/healthz", headers=headers)
    return status


@pytest.mark.parametrize("authorization", [b"Bearer", b"Bearer ", b"Bearer    ", b"bearer \t", b""])
async def test_empty_credentials_are_never_authorised(authorization: bytes) -> None:
    """An empty bearer gets 401 with a real token set."""
    assert await request_with_header(wrapped(health_token=TOKEN), authorization) == 401


@pytest.mark.parametrize("token", ["", "  "])
@pytest.mark.parametrize("authorization", [None, b"Bearer", b"Bearer ", b"Bearer   "])
async def test_blank_token_that_bypassed_validation_opens_nothing(token: str, authorization: bytes | None) -> None:
    """Defence in depth: settings built without validation (model_construct) with a blank token authorise nobody."""
    settings = DiagSettings.model_construct(health_path="/healthz", health_token=SecretStr(token))
    middleware = DiagnosticsMiddleware(app, settings=settings)
    assert await request_with_header(middleware, authorization) == 401


@pytest.mark.parametrize("blank_token", [False, True])
async def test_empty_bearer_over_real_http_is_refused(blank_token: bool) -> None:
    """Over a real server, "Authorization: Bearer " gets 401 and no report, even with a blank token set unvalidated."""
    if blank_token:
        settings = DiagSettings.model_construct(health_path="/healthz", health_token=SecretStr(""))
        middleware = DiagnosticsMiddleware(app, settings=settings)
    else:
        middleware = wrapped(health_token=TOKEN)
    async with run_server(middleware, "hypercorn") as url:
        port = int(url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \r\nConnection: close\r\n\r\n")
        response = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        await writer.wait_closed()
    assert response.startswith(b"HTTP/1.1 401")
    assert b"healthy" not in response
