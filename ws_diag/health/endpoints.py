"""The health endpoints: the report (behind the token, if any), liveness and readiness.

``health_path`` serves the report as today's JSON, or as ``application/health+json``
when the ``Accept`` header prefers it. ``liveness_path`` and ``readiness_path``
answer orchestrators (Kubernetes probes send no token): 200 or 503 and a body of
just ``{"status": ...}``; their ``?verbose`` text lists each check and needs the
token when ``health_token`` is set.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from urllib.parse import parse_qsl

from .._types import Receive, Scope, Send
from ..settings import DiagSettings
from .checker import HealthChecker
from .formats import HEALTH_JSON, JSON, negotiate, report_status, to_health_json, verbose_text

__all__ = ["HealthRoute", "health_routes", "serve_health", "serve_liveness", "serve_readiness"]

HealthRoute = Callable[[Scope, Receive, Send, HealthChecker, DiagSettings], Awaitable[None]]

_TEXT = "text/plain; charset=utf-8"


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
    send: Send,
    status: HTTPStatus,
    body: bytes,
    *,
    head: bool = False,
    extra: tuple[tuple[bytes, bytes], ...] = (),
    content_type: str = JSON,
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *extra,
    ]
    await send({"type": "http.response.start", "status": int(status), "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


def _header(scope: Scope, name: bytes) -> str | None:
    """All of a header's field lines, joined with commas (RFC 9110 section 5.3); ``None`` when absent."""
    values = [bytes(value).decode("latin-1") for key, value in scope.get("headers", ()) if key.lower() == name]
    return ", ".join(values) if values else None


def _verbose(scope: Scope) -> bool:
    """``?verbose``, ``?verbose=1`` or ``?verbose=true`` (not ``=0``/``=false``), as Kubernetes' endpoints take it."""
    query = bytes(scope.get("query_string", b""))[:1024].decode("latin-1")
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "verbose":
            return value.lower() not in ("0", "false", "no")
    return False


async def _refuse_method(scope: Scope, send: Send) -> bool:
    """Answer 405 for anything but GET and HEAD; ``True`` when it did."""
    if scope.get("method", "GET") in ("GET", "HEAD"):
        return False
    body = b'{"error":"method not allowed"}'
    await _respond(send, HTTPStatus.METHOD_NOT_ALLOWED, body, extra=((b"allow", b"GET, HEAD"),))
    return True


async def _refuse_unauthorised(scope: Scope, send: Send, settings: DiagSettings, head: bool) -> bool:
    """Answer 401 when ``health_token`` is set and the request does not carry it; ``True`` when it did."""
    if settings.health_token is None or _authorised(scope, settings.health_token.get_secret_value()):
        return False
    body = b'{"error":"unauthorized"}'
    await _respond(send, HTTPStatus.UNAUTHORIZED, body, head=head, extra=((b"www-authenticate", b"Bearer"),))
    return True


def _dumps(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


async def serve_health(
    scope: Scope, receive: Receive, send: Send, checker: HealthChecker, settings: DiagSettings
) -> None:
    """Answer one request: 200 with the report when healthy, 503 when not.

    The report is today's JSON (``application/json``) unless the ``Accept`` header
    prefers ``application/health+json`` (:func:`ws_diag.health.formats.negotiate`),
    which gets :func:`ws_diag.health.formats.to_health_json` (200 for pass and warn).
    401 without a valid bearer token (when ``health_token`` is set; empty
    credentials never match, even a blank token that bypassed validation), 405 for
    methods other than GET and HEAD. The report's error texts follow
    ``expose_details``.
    """
    if await _refuse_method(scope, send):
        return
    head = scope.get("method", "GET") == "HEAD"
    if await _refuse_unauthorised(scope, send, settings, head):
        return
    report = await checker.check()
    status = HTTPStatus.OK if report.healthy else HTTPStatus.SERVICE_UNAVAILABLE
    vary = ((b"vary", b"Accept"),)
    if negotiate(_header(scope, b"accept")) == HEALTH_JSON:
        body = _dumps(to_health_json(report, expose_details=settings.expose_details))
        await _respond(send, status, body, head=head, extra=vary, content_type=HEALTH_JSON)
        return
    body = _dumps(report.to_dict(code_scheme=settings.code_scheme, expose_details=settings.expose_details))
    await _respond(send, status, body, head=head, extra=vary)


async def serve_liveness(
    scope: Scope, receive: Receive, send: Send, checker: HealthChecker, settings: DiagSettings
) -> None:
    """Liveness: 200 ``{"status":"pass"}`` (``application/health+json``) while the process answers.

    Never runs a probe: a dependency's outage must not get the process restarted.
    ``?verbose`` gives Kubernetes-style text and needs the token when ``health_token``
    is set (401 otherwise); 405 for methods other than GET and HEAD.
    """
    if await _refuse_method(scope, send):
        return
    head = scope.get("method", "GET") == "HEAD"
    if _verbose(scope):
        if await _refuse_unauthorised(scope, send, settings, head):
            return
        body = verbose_text("livez", None).encode()
        await _respond(send, HTTPStatus.OK, body, head=head, content_type=_TEXT)
        return
    await _respond(send, HTTPStatus.OK, b'{"status":"pass"}', head=head, content_type=HEALTH_JSON)


async def serve_readiness(
    scope: Scope, receive: Receive, send: Send, checker: HealthChecker, settings: DiagSettings
) -> None:
    """Readiness: 200 when no required probe failed (past the failure threshold), else 503.

    The body is just ``{"status":"pass"|"warn"|"fail"}`` (``application/health+json``):
    nothing worth a token. ``?verbose`` needs the token when ``health_token`` is set
    (401 otherwise) and gives Kubernetes-style text, or the full
    ``application/health+json`` report when the ``Accept`` header prefers it. Probe
    results come from the checker's cache when fresh, so orchestrators polling every
    few seconds run each probe at most once per ``cache_ttl``. 405 for methods other
    than GET and HEAD.
    """
    if await _refuse_method(scope, send):
        return
    head = scope.get("method", "GET") == "HEAD"
    verbose = _verbose(scope)
    if verbose and await _refuse_unauthorised(scope, send, settings, head):
        return
    report = await checker.check()
    status = HTTPStatus.OK if report.healthy else HTTPStatus.SERVICE_UNAVAILABLE
    if not verbose:
        body = _dumps({"status": report_status(report)})
        await _respond(send, status, body, head=head, content_type=HEALTH_JSON)
        return
    vary = ((b"vary", b"Accept"),)
    if negotiate(_header(scope, b"accept"), ("text/plain", HEALTH_JSON)) == HEALTH_JSON:
        body = _dumps(to_health_json(report, expose_details=settings.expose_details))
        await _respond(send, status, body, head=head, extra=vary, content_type=HEALTH_JSON)
        return
    body = verbose_text("readyz", report, expose_details=settings.expose_details).encode()
    await _respond(send, status, body, head=head, extra=vary, content_type=_TEXT)


def health_routes(settings: DiagSettings) -> dict[str, HealthRoute]:
    """The HTTP paths ws_diag answers itself (``health_path``, ``liveness_path``, ``readiness_path``), by path."""
    routes: dict[str, HealthRoute] = {}
    if settings.health_path is not None:
        routes[settings.health_path] = serve_health
    if settings.liveness_path is not None:
        routes[settings.liveness_path] = serve_liveness
    if settings.readiness_path is not None:
        routes[settings.readiness_path] = serve_readiness
    return routes
