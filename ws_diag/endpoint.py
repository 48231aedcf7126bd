"""The health endpoint: the report as JSON over plain HTTP, optionally behind a token."""

from __future__ import annotations

import hmac
import json

from ._types import Receive, Scope, Send
from .health import HealthChecker
from .settings import DiagSettings

__all__ = ["serve_health"]


def _authorised(scope: Scope, token: str) -> bool:
    expected = f"Bearer {token}".encode()
    for name, value in scope.get("headers", ()):
        if name.lower() == b"authorization":
            return hmac.compare_digest(value, expected)
    return False


async def _respond(send: Send, status: int, body: bytes, extra_headers: list[tuple[bytes, bytes]] = []) -> None:  # noqa: B006
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def serve_health(
    scope: Scope, receive: Receive, send: Send, checker: HealthChecker, settings: DiagSettings
) -> None:
    """Answer one request: 200 with the report when healthy, 503 when not.

    401 without a valid bearer token (when ``health_token`` is set), 405 for
    methods other than GET and HEAD. The report's error texts follow
    ``expose_details``.
    """
    if scope.get("method", "GET") not in ("GET", "HEAD"):
        await _respond(send, 405, b'{"error":"method not allowed"}', [(b"allow", b"GET, HEAD")])
        return
    if settings.health_token is not None and not _authorised(scope, settings.health_token.get_secret_value()):
        await _respond(send, 401, b'{"error":"unauthorized"}', [(b"www-authenticate", b"Bearer")])
        return
    report = await checker.check()
    body = json.dumps(
        report.to_dict(code_scheme=settings.code_scheme, expose_details=settings.expose_details),
        separators=(",", ":"),
    ).encode()
    await _respond(send, 200 if report.healthy else 503, b"" if scope.get("method") == "HEAD" else body)
