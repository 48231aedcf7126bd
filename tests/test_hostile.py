"""Hostile input: odd reasons and codes, huge details, hostile settings, and secrets that must not leak."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pydantic
import pytest
from pydantic_settings import SettingsError
from reliability import record
from servers import SERVER_KINDS, run_server
from services import SilentListener
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ws_diag import Component, CustomComponent, DiagnosticsMiddleware, DiagSettings, WebSocketComponentError
from ws_diag.health.probes import CallableProbe, EnvProbe, PostgresProbe
from ws_diag.redaction import MAX_FRAME_BYTES
from ws_diag.wire.closecodes import MAX_REASON_BYTES, is_sendable_close_code

pytestmark = pytest.mark.asyncio

SECRET = "Zq9-s3cr3t-Vx7"
TIMEOUT = 10


async def everything_the_client_sees(url: str, *, send: str | None = "hi") -> tuple[bytes, int | None]:
    """All text, bytes, close reason and handshake body a client receives, concatenated; and the close code."""
    seen = b""
    try:
        async with connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
            if send is not None:
                with contextlib.suppress(ConnectionClosed):  # a pre-accept failure may close first
                    await ws.send(send)
            try:
                while True:
                    message = await asyncio.wait_for(ws.recv(), TIMEOUT)
                    seen += message.encode() if isinstance(message, str) else message
            except ConnectionClosed:
                pass
            seen += (ws.close_reason or "").encode()
            return seen, ws.close_code
    except InvalidStatus as exc:
        headers = "".join(f"{k}: {v}\n" for k, v in exc.response.headers.raw_items()).encode()
        return headers + exc.response.body, None


async def http_get(port: int, path: str, token: str | None = None) -> bytes:
    """Raw HTTP/1.1 GET; the whole response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n".encode())
    response = await asyncio.wait_for(reader.read(), TIMEOUT)
    writer.close()
    await writer.wait_closed()
    return response


@pytest.fixture(autouse=True)
def _count_case() -> None:
    """Every test here is one hostile case for the reliability table."""
    record("hostile", cases=1)


def closing_app(code: Any, reason: Any) -> Any:
    """Accept, then close with whatever the test says."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": code, "reason": reason})

    return app


@pytest.mark.parametrize("kind", SERVER_KINDS)
@pytest.mark.parametrize(
    "reason",
    ["x" * 10_000, "é" * 5000, "😀" * 1000, "bad \udc80 surrogate", b"bytes reason", 12345, None],
    ids=["10k-ascii", "10k-bytes-2byte", "4k-emoji", "lone-surrogate", "bytes", "int", "none"],
)
async def test_hostile_reasons_arrive_valid(kind: str, reason: Any) -> None:
    """Oversized, non-UTF-8 and non-string reasons still give a 4000 close with a valid reason of <=123 bytes."""
    middleware = DiagnosticsMiddleware(closing_app(4000, reason), settings=DiagSettings())
    async with run_server(middleware, kind) as url, connect(url, open_timeout=TIMEOUT) as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert ws.close_code == 4000
    assert len((ws.close_reason or "").encode()) <= MAX_REASON_BYTES


@pytest.mark.parametrize("kind", SERVER_KINDS)
@pytest.mark.parametrize("code", [0, 1, 999, 1004, 1015, 1016, 2999, 5000, 65535, "1011", None, 3.5])
async def test_invalid_app_codes_are_repaired_on_every_server(kind: str, code: Any) -> None:
    """Any invalid code from the app reaches the client as a valid code, never a dropped connection."""
    app = DiagnosticsMiddleware(closing_app(code, "x"), settings=DiagSettings())
    async with run_server(app, kind) as url:
        _, close_code = await everything_the_client_sees(url, send=None)
    assert close_code is not None
    assert is_sendable_close_code(close_code)


async def test_huge_details_are_bounded() -> None:
    """A megabyte of details is replaced by a marker: the frame stays small even with expose_details."""
    error = WebSocketComponentError.handler_failure(details={"blob": "x" * 1_000_000})

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        raise error

    middleware = DiagnosticsMiddleware(app, settings=DiagSettings(expose_details=True))
    async with run_server(middleware, "hypercorn") as url:
        seen, code = await everything_the_client_sees(url, send=None)
    assert code == 4004
    assert len(seen) < 4096
    assert json.loads(seen.split(b"Message Handler failure")[0])["error"]["details"]["truncated"] is True


@pytest.mark.parametrize("kind", SERVER_KINDS)
@pytest.mark.parametrize("scheme", ["private", "legacy"])
async def test_hostile_error_fields_fit_a_default_client(kind: str, scheme: str) -> None:
    """Megabytes in every field of the error and a thousand suggestions reach a default client as one small frame."""
    text = '\U0001f600\x00"' * 300_000
    hostile = CustomComponent("hostile", text, 4100, description=text, suggestions=(text,) * 1000)
    nested: dict[str, Any] = {"leaf": text}
    for _ in range(200):
        nested = {"a": nested}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        raise WebSocketComponentError(hostile, text, user_id=text, details=nested, root_cause=text)

    middleware = DiagnosticsMiddleware(app, settings=DiagSettings(code_scheme=scheme, expose_details=True))
    async with (
        run_server(middleware, kind) as url,
        connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws,  # default max_size: 1 MiB
    ):
        await ws.send("hi")
        raw = await asyncio.wait_for(ws.recv(), TIMEOUT)
        with contextlib.suppress(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert isinstance(raw, str)
    assert len(raw.encode()) <= MAX_FRAME_BYTES
    assert json.loads(raw)["error"]["code"] == 4100
    assert ws.close_code == 4100


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WS_DIAG_PROBE_TIMEOUT", "-1"),
        ("WS_DIAG_PROBE_TIMEOUT", "nan"),
        ("WS_DIAG_PROBE_TIMEOUT", "1e309"),
        ("WS_DIAG_PROBE_TIMEOUT", "10000"),
        ("WS_DIAG_CACHE_TTL", "-5"),
        ("WS_DIAG_SEND_TIMEOUT", "0"),
        ("WS_DIAG_CODE_SCHEME", "modern"),
        ("WS_DIAG_PREACCEPT", "drop"),
        ("WS_DIAG_EXPOSE_DETAILS", "sometimes"),
        ("WS_DIAG_REWRITE_CODES", "1011"),
        ("WS_DIAG_REWRITE_CODES", "[70000]"),
        ("WS_DIAG_REWRITE_CODES", "{not json"),
        ("WS_DIAG_HEALTH_PATH", "healthz"),
        ("WS_DIAG_REQUIRED_ENV", '["A=B"]'),
        ("WS_DIAG_REFRESH_INTERVAL", "0"),
    ],
)
async def test_hostile_environment_fails_at_construction(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """Bad types, negative or absurd timeouts and unknown modes from the environment fail, naming the field."""
    monkeypatch.setenv(variable, value)
    # pydantic's ValidationError, or pydantic-settings' SettingsError for unparsable JSON: both ValueErrors.
    with pytest.raises(ValueError, match=variable.removeprefix("WS_DIAG_").lower()) as info:
        DiagSettings()
    assert isinstance(info.value, pydantic.ValidationError | SettingsError)


def secret_app(where: str) -> Any:
    """An app whose failure carries the secret in an exception message, details or a DSN."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        if where != "preaccept":
            await send({"type": "websocket.accept"})
            await receive()
        if where == "details":
            raise WebSocketComponentError.integration_failure(
                details={"api_key": SECRET, "url": f"https://u:{SECRET}@api.example/v1"},
                root_cause=f"password={SECRET}",
            )
        raise RuntimeError(f"failed: postgresql://app:{SECRET}@db/prod token={SECRET}")

    return app


@pytest.mark.parametrize("expose", [False, True])
@pytest.mark.parametrize("where", ["exception", "details", "preaccept"])
@pytest.mark.parametrize("preaccept", ["accept_close", "http_denial"])
async def test_planted_secrets_never_reach_the_client(
    monkeypatch: pytest.MonkeyPatch, silent_listener: SilentListener, expose: bool, where: str, preaccept: str
) -> None:
    """A secret in a DSN, exception, details or environment is in no byte a client or the health endpoint sees."""
    monkeypatch.setenv("HOSTILE_TEST_SECRET_ENV", SECRET)
    dsn = f"postgresql://app:{SECRET}@127.0.0.1:{silent_listener.port}/db"
    probes = [
        PostgresProbe(dsn, timeout=0.2),
        EnvProbe(["HOSTILE_TEST_SECRET_ENV", "WS_DIAG_TEST_SURELY_MISSING"]),
        CallableProbe("bridge", Component.BRIDGE, lambda: {"token": SECRET}),
    ]
    settings = DiagSettings(
        expose_details=expose, preaccept=preaccept, probe_timeout=0.2, health_path="/health", postgres_dsn=dsn
    )
    middleware = DiagnosticsMiddleware(secret_app(where), settings=settings, probes=probes[1:])
    async with run_server(middleware, "hypercorn") as url:
        port = int(url.rsplit(":", 1)[1])
        seen, _ = await everything_the_client_sees(url, send=None if where == "preaccept" else "hi")
        seen += await http_get(port, "/health")
    record("hostile", secret_searches=1, bytes_searched=len(seen))
    assert seen
    assert SECRET.encode() not in seen
