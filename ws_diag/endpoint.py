"""The health endpoint: the report as JSON over plain HTTP, optionally behind a token."""

from __future__ import annotations

import hmac
import json
from http import HTTPStatus

from ._types import Receive, Scope, Send
from .health import HealthChecker
from .settings import DiagSettings

__all__ = ["serve_health"]


def _authorised(scope: Scope, token: str) -> bool:
    if not token.strip():  # settings refuse a blank token; should one get here anyway, it opens nothing
        return False
    expected = token.encode()
    for name, value in scope.get("headers", ()):
        if name.lower() == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            credentials = credentials.strip()
            # RFC 9110: the scheme is case-insensitive; the token is compared in constant time.
            # Empty credentials are refused before any comparison.
            return scheme.lower() == b"bearer" and bool(credentials) and hmac.compare_digest(credentials, expected)
    return False


async def _respond(
    send: Send, status: HTTPStatus, body: bytes, *, head: bool = False, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *extra,
    ]
    await send({"type": "http.response.start", "status": int(status), "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def serve_health(
    scope: Scope, receive: Receive, send: Send, checker: HealthChecker, settings: DiagSettings
) -> None:
    """Answer one request: 200 with the report when healthy, 503 when not.

    401 without a valid bearer token (when ``health_token`` is set; empty
    credentials never match, even a blank token that bypassed validation), 405 for
    methods other than GET and HEAD. The report's error texts follow
    ``expose_details``.
    """
    method = scope.get("method", "GET")
    if method not in ("GET", "HEAD"):
        body = b'{"error":"method not allowed"}'
        await _respond(send, HTTPStatus.METHOD_NOT_ALLOWED, body, extra=((b"allow", b"GET, HEAD"),))
        return
    head = method == "HEAD"
    if settings.health_token is not None and not _authorised(scope, settings.health_token.get_secret_value()):
        body = b'{"error":"unauthorized"}'
        await _respond(send, HTTPStatus.UNAUTHORIZED, body, head=head, extra=((b"www-authenticate", b"Bearer"),))
        return
    report = await checker.check()
    body = json.dumps(
        report.to_dict(code_scheme=settings.code_scheme, expose_details=settings.expose_details),
        separators=(",", ":"),
    ).encode()
    status = HTTPStatus.OK if report.healthy else HTTPStatus.SERVICE_UNAVAILABLE
    await _respond(send, status, body, head=head)
