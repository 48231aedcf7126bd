"""The health endpoints (ws_diag.health.endpoints): liveness, readiness, health_path's JSON and health+json reports,
the bearer token; in-process and over real servers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pydantic
import pytest
from harness import bearer, http_request
from pydantic import SecretStr
from servers import run_server

from ws_diag import Component, DiagnosticsMiddleware, DiagSettings
from ws_diag.health.formats import HEALTH_JSON, MAX_OUTPUT_CHARS, negotiate
from ws_diag.health.probes import CallableProbe, ProbeFailed
from ws_diag.settings import describe_settings_error

pytestmark = pytest.mark.asyncio

TOKEN = "t0ken-for-health"
SECRET = "db-pass-123"
PATHS = {"health_path": "/healthz", "liveness_path": "/livez", "readiness_path": "/readyz"}


async def app(scope: Any, receive: Any, send: Any) -> None:
    """The wrapped app answers everything else with 204."""
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


class Probes:
    """A required database probe and an optional redis probe the test switches; counts runs."""

    def __init__(self) -> None:
        self.database_up = True
        self.redis_up = True
        self.runs = 0

    def probes(self) -> list[CallableProbe]:
        async def database() -> None:
            self.runs += 1
            if not self.database_up:
                raise ProbeFailed(f"postgresql://app:{SECRET}@db failed " + "x" * 1000)

        async def redis() -> None:
            if not self.redis_up:
                raise ProbeFailed("redis down")

        return [
            CallableProbe("database", Component.DATABASE, database),
            CallableProbe("redis", Component.REDIS, redis, required=False),
        ]


def wrapped(probes: Probes, **settings: Any) -> DiagnosticsMiddleware:
    """The app behind ws_diag with the three endpoints and no cache."""
    return DiagnosticsMiddleware(
        app, settings=DiagSettings(**{**PATHS, "cache_ttl": 0, **settings}), probes=probes.probes()
    )


async def request(
    middleware: DiagnosticsMiddleware,
    path: str,
    *,
    query: str = "",
    method: str = "GET",
    token: str | None = None,
    accept: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One in-process HTTP request: status, headers, body."""
    headers = bearer(token)
    if accept is not None:
        headers.append((b"accept", accept.encode()))
    return await http_request(middleware, path, method=method, headers=headers, query=query)


async def test_liveness_never_runs_probes() -> None:
    """Liveness answers 200 {"status":"pass"} with every dependency down, without running a probe."""
    probes = Probes()
    probes.database_up = False
    middleware = wrapped(probes, health_token=TOKEN)
    status, headers, body = await request(middleware, "/livez")
    assert (status, json.loads(body)) == (200, {"status": "pass"})
    assert headers["content-type"] == HEALTH_JSON
    assert headers["cache-control"] == "no-store"
    assert probes.runs == 0


async def test_readiness_follows_required_probes() -> None:
    """Readiness: 200 pass, 200 warn when only an optional probe fails, 503 fail when a required one does."""
    probes = Probes()
    middleware = wrapped(probes, health_token=TOKEN)  # the token guards only the details
    assert await request(middleware, "/readyz") == (
        200,
        {"content-type": HEALTH_JSON, "content-length": "17", "cache-control": "no-store"},
        b'{"status":"pass"}',
    )
    probes.redis_up = False
    status, _, body = await request(middleware, "/readyz")
    assert (status, json.loads(body)) == (200, {"status": "warn"})
    probes.database_up = False
    status, _, body = await request(middleware, "/readyz")
    assert (status, json.loads(body)) == (503, {"status": "fail"})
    assert SECRET.encode() not in body


async def test_required_probes_setting_makes_redis_required(monkeypatch: pytest.MonkeyPatch) -> None:
    """WS_DIAG_REQUIRED_PROBES='["database","redis"]' makes a redis failure fail readiness."""
    monkeypatch.setenv("WS_DIAG_REQUIRED_PROBES", '["database","redis"]')
    probes = Probes()
    probes.redis_up = False
    status, _, body = await request(wrapped(probes), "/readyz")
    assert (status, json.loads(body)) == (503, {"status": "fail"})


async def test_readiness_threshold_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """WS_DIAG_FAILURE_THRESHOLD=2: the first failed run keeps readiness 200 (warn), the second turns it 503."""
    monkeypatch.setenv("WS_DIAG_FAILURE_THRESHOLD", "2")
    probes = Probes()
    probes.database_up = False
    middleware = wrapped(probes)
    statuses = [(await request(middleware, "/readyz"))[0] for _ in range(3)]
    assert statuses == [200, 503, 503]
    assert probes.runs == 3


async def test_verbose_needs_the_token() -> None:
    """?verbose on liveness and readiness answers 401 without the token, and text with it."""
    probes = Probes()
    probes.database_up = False
    middleware = wrapped(probes, health_token=TOKEN)
    for path in ("/livez", "/readyz"):
        for token in (None, "wrong"):
            status, headers, body = await request(middleware, path, query="verbose", token=token)
            assert status == 401
            assert headers["www-authenticate"] == "Bearer"
            assert b"database" not in body
    status, headers, body = await request(middleware, "/livez", query="verbose", token=TOKEN)
    assert (status, body) == (200, b"[+]ping ok\nlivez check passed\n")
    assert headers["content-type"].startswith("text/plain")
    status, _, body = await request(middleware, "/readyz", query="verbose=1", token=TOKEN)
    assert status == 503
    text = body.decode()
    assert text.startswith("[-]database failed (required, 1 failed run): ProbeFailed\n[+]redis ok (optional, ")
    assert text.endswith("readyz check failed\n")
    # verbose=0 is the plain answer, which needs no token.
    assert (await request(middleware, "/readyz", query="verbose=0"))[2] == b'{"status":"fail"}'


async def test_verbose_without_token_setting_is_open_and_redacted() -> None:
    """Without health_token, ?verbose needs none; with expose_details its errors are redacted and bounded."""
    probes = Probes()
    probes.database_up = False
    status, _, body = await request(wrapped(probes, expose_details=True), "/readyz", query="verbose")
    assert status == 503
    line = body.decode().splitlines()[0]
    assert "postgresql://app:***@db failed" in line
    assert SECRET not in line
    assert line.endswith("...")
    assert len(line) < MAX_OUTPUT_CHARS + 60


async def test_report_in_health_json_when_accepted() -> None:
    """Accept: application/health+json gets the IETF document; the default stays today's report."""
    probes = Probes()
    probes.redis_up = False
    middleware = wrapped(probes)
    status, headers, body = await request(middleware, "/healthz")
    assert (status, headers["content-type"], headers["vary"]) == (200, "application/json", "Accept")
    assert json.loads(body)["healthy"] is True
    status, headers, body = await request(middleware, "/healthz", accept="application/health+json")
    assert (status, headers["content-type"]) == (200, HEALTH_JSON)
    document = json.loads(body)
    assert document["status"] == "warn"
    assert document["output"] == "0 of 2 probes failed, 1 degraded"
    assert set(document["checks"]) == {"database:responseTime", "redis:responseTime"}
    [database] = document["checks"]["database:responseTime"]
    assert database["status"] == "pass"
    assert database["componentType"] == "datastore"
    assert database["observedUnit"] == "ms"
    assert isinstance(database["observedValue"], float)
    assert database["time"].endswith("Z")
    assert "output" not in database  # section 4.8: omitted when passing
    [redis] = document["checks"]["redis:responseTime"]
    assert (redis["status"], redis["output"], redis["required"], redis["consecutiveFailures"]) == (
        "warn",
        "ProbeFailed",
        False,
        2,  # the second run: the default-format request above was the first
    )


async def test_health_json_fail_is_503_and_never_leaks() -> None:
    """A failed required probe: status fail, 503; output is the type name unless expose_details, then redacted."""
    probes = Probes()
    probes.database_up = False
    status, _, body = await request(wrapped(probes), "/healthz", accept=HEALTH_JSON)
    assert status == 503
    document = json.loads(body)
    assert document["status"] == "fail"
    assert document["checks"]["database:responseTime"][0]["output"] == "ProbeFailed"
    status, _, body = await request(wrapped(probes, expose_details=True), "/healthz", accept=HEALTH_JSON)
    output = json.loads(body)["checks"]["database:responseTime"][0]["output"]
    assert output.startswith("ProbeFailed: postgresql://app:***@db failed")
    assert len(output) == MAX_OUTPUT_CHARS
    assert SECRET.encode() not in body


async def test_health_json_report_keeps_the_token() -> None:
    """The report needs the token in either format; the readiness verbose report too."""
    middleware = wrapped(Probes(), health_token=TOKEN)
    assert (await request(middleware, "/healthz", accept=HEALTH_JSON))[0] == 401
    status, headers, body = await request(middleware, "/healthz", accept=HEALTH_JSON, token=TOKEN)
    assert (status, headers["content-type"], json.loads(body)["status"]) == (200, HEALTH_JSON, "pass")
    status, headers, body = await request(middleware, "/readyz", query="verbose", accept=HEALTH_JSON, token=TOKEN)
    assert (status, headers["content-type"]) == (200, HEALTH_JSON)
    assert set(json.loads(body)["checks"]) == {"database:responseTime", "redis:responseTime"}


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("application/*", "application/json"),
        ("application/health+json", HEALTH_JSON),
        ("application/health+json, application/json", "application/json"),
        ("application/json;q=0.5, application/health+json", HEALTH_JSON),
        ("application/health+json;q=0.9, */*;q=0.1", HEALTH_JSON),
        ("application/health+json;q=0, */*", "application/json"),
        ("APPLICATION/HEALTH+JSON", HEALTH_JSON),
        ("application/health+json;q=bogus, application/json;q=0.1", "application/json"),
        ("text/html", "application/json"),
    ],
)
async def test_accept_negotiation(accept: str | None, chosen: str) -> None:
    """Accept picks the heaviest, most specific offer; ties, nothing acceptable and no header give the default."""
    assert negotiate(accept) == chosen


@pytest.mark.parametrize("paths", [PATHS, {"health_path": "/healthz"}], ids=["three-paths", "health-path-alone"])
async def test_other_methods_and_head(paths: dict[str, str]) -> None:
    """POST gets 405 on each endpoint path; HEAD gets the status and no body; other paths reach the app."""
    middleware = DiagnosticsMiddleware(app, settings=DiagSettings(**paths, cache_ttl=0), probes=Probes().probes())
    for path in paths.values():
        status, headers, _ = await request(middleware, path, method="POST")
        assert (status, headers["allow"]) == (405, "GET, HEAD")
        status, _, body = await request(middleware, path, method="HEAD")
        assert (status, body) == (200, b"")
    assert (await request(middleware, "/other"))[0] == 204


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"liveness_path": "livez"}, "liveness_path must start with '/', got 'livez'"),
        ({"readiness_path": "readyz"}, "readiness_path must start with '/', got 'readyz'"),
        ({"health_path": "/z", "readiness_path": "/z"}, "readiness_path and health_path are the same path '/z'"),
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"failure_duration": -1}, "failure_duration"),
        ({"failure_cache_ttl": -1}, "failure_cache_ttl"),
    ],
)
async def test_settings_errors_name_the_field(given: dict[str, Any], expected: str) -> None:
    """Bad liveness/readiness/threshold settings fail at construction, naming the field."""
    with pytest.raises(pydantic.ValidationError) as caught:
        DiagSettings(**given)
    assert expected in "\n".join(describe_settings_error(caught.value, given))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("redis", "WS_DIAG_REQUIRED_PROBES (required_probes): a JSON list is expected"),
        ('["database", " "]', "required_probes must hold probe names, got an empty one"),
        ("3", "WS_DIAG_FAILURE_THRESHOLD"),
    ],
)
async def test_environment_errors_name_the_variable(monkeypatch: pytest.MonkeyPatch, value: str, expected: str) -> None:
    """A bad WS_DIAG_REQUIRED_PROBES or threshold in the environment is named by its variable."""
    if expected == "WS_DIAG_FAILURE_THRESHOLD":
        monkeypatch.setenv("WS_DIAG_FAILURE_THRESHOLD", "many")
    else:
        monkeypatch.setenv("WS_DIAG_REQUIRED_PROBES", value)
    with pytest.raises(pydantic.ValidationError) as caught:
        DiagSettings()
    assert expected in "\n".join(describe_settings_error(caught.value))


async def test_middleware_refuses_unknown_required_probe() -> None:
    """required_probes naming a probe that is not configured stops the middleware from being built."""
    with pytest.raises(ValueError, match=r"names no configured probe: \['cache'\]"):
        wrapped(Probes(), required_probes=("database", "cache"))


@pytest.mark.parametrize("kind", ["hypercorn", "uvicorn"])
async def test_endpoints_over_real_http(kind: str) -> None:
    """Over a real server: liveness 200, readiness 503, verbose 401 without the token, health+json with it."""
    probes = Probes()
    probes.database_up = False
    async with run_server(wrapped(probes, health_token=TOKEN), kind) as url:
        base = url.replace("ws://", "http://", 1)
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            live = await http.get("/livez")
            assert (live.status_code, live.json()) == (200, {"status": "pass"})
            ready = await http.get("/readyz")
            assert (ready.status_code, ready.json()) == (503, {"status": "fail"})
            assert ready.headers["content-type"] == HEALTH_JSON
            assert (await http.get("/readyz?verbose")).status_code == 401
            auth = {"authorization": f"Bearer {TOKEN}"}
            verbose = await http.get("/readyz", params={"verbose": ""}, headers=auth)
            assert verbose.status_code == 503
            assert verbose.text.startswith("[-]database failed")
            report = await http.get("/healthz", headers={**auth, "accept": HEALTH_JSON})
            assert (report.status_code, report.json()["status"]) == (503, "fail")
            assert SECRET not in report.text


async def test_accept_over_several_header_lines() -> None:
    """Accept sent as two field lines counts as one list: health+json on the second line is chosen."""
    middleware = wrapped(Probes())
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/healthz",
        "query_string": b"",
        "headers": [(b"accept", b"text/html;q=0.1"), (b"accept", b"application/health+json")],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await middleware(scope, receive, send)
    assert dict(sent[0]["headers"])[b"content-type"] == HEALTH_JSON.encode()


async def test_hostile_query_and_accept_are_bounded() -> None:
    """A huge Accept header or query string gets an ordinary answer: only their first KiB is read."""
    middleware = wrapped(Probes())
    accept = "text/html;q=0.1, " * 10_000 + "application/health+json"
    status, headers, _ = await request(middleware, "/healthz", accept=accept)
    assert (status, headers["content-type"]) == (200, "application/json")  # the wanted type lay past the bound
    status, headers, body = await request(middleware, "/readyz", query="x=" + "y" * 100_000 + "&verbose")
    assert (status, body) == (200, b'{"status":"pass"}')  # ?verbose lay past the bound: the plain answer


# -- health_path: the one JSON report, behind an optional bearer token --------------------------------


def with_database(*, healthy: bool = True, **settings: Any) -> DiagnosticsMiddleware:
    """The app behind ws_diag with one database probe."""

    async def database() -> None:
        if not healthy:
            raise ProbeFailed("postgresql://app:db-pass-123@db failed")

    probe = CallableProbe("database", Component.DATABASE, database)
    return DiagnosticsMiddleware(app, settings=DiagSettings(health_path="/healthz", **settings), probes=[probe])


async def get_health(
    middleware: DiagnosticsMiddleware, path: str = "/healthz", method: str = "GET", token: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One in-process request to the health_path endpoint."""
    return await http_request(middleware, path, method=method, headers=bearer(token))


async def test_healthy_is_200_with_report() -> None:
    """A healthy service answers 200 with the JSON report."""
    status, headers, body = await get_health(with_database())
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["healthy"] is True


async def test_unhealthy_is_503_and_redacted() -> None:
    """A failed required probe answers 503; error texts follow expose_details and never carry passwords."""
    status, _, body = await get_health(with_database(healthy=False))
    assert status == 503
    report = json.loads(body)
    assert report["failed_components"] == ["database"]
    assert report["component_details"]["database"]["error"] == "ProbeFailed"
    status, _, body = await get_health(with_database(healthy=False, expose_details=True))
    assert "postgresql://app:***@db failed" in body.decode()
    assert b"db-pass-123" not in body


async def test_token_required() -> None:
    """With health_token, a missing or wrong token gets 401 and no report; the right one gets the report."""
    middleware = with_database(health_token=TOKEN)
    for token in (None, "wrong"):
        status, headers, body = await get_health(middleware, token=token)
        assert status == 401
        assert headers["www-authenticate"] == "Bearer"
        assert b"healthy" not in body
    status, _, body = await get_health(middleware, token=TOKEN)
    assert status == 200
    assert json.loads(body)["healthy"] is True


async def test_no_health_path_means_no_endpoint() -> None:
    """Without health_path every HTTP request goes to the app."""
    middleware = DiagnosticsMiddleware(app, settings=DiagSettings())
    assert (await get_health(middleware))[0] == 204


@pytest.mark.parametrize("kind", ["hypercorn", "uvicorn-websockets"])
async def test_endpoint_over_real_http(kind: str) -> None:
    """Over a real server, the endpoint answers 401 without the token and 503 with it when unhealthy."""
    middleware = with_database(healthy=False, health_token=TOKEN)
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
    middleware = with_database(health_token=TOKEN)
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
    status, headers, body = await get_health(middleware, method="HEAD", token=TOKEN)
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
    assert await request_with_header(with_database(health_token=TOKEN), authorization) == 401


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
        middleware = with_database(health_token=TOKEN)
    async with run_server(middleware, "hypercorn") as url:
        port = int(url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \r\nConnection: close\r\n\r\n")
        response = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        await writer.wait_closed()
    assert response.startswith(b"HTTP/1.1 401")
    assert b"healthy" not in response
