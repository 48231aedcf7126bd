"""HTTP dependency probe (extra ``http``: httpx)."""

from __future__ import annotations

import ssl
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from ..._optional import missing

try:
    import httpx
except ModuleNotFoundError as exc:
    missing(exc, "httpx", extra="http", feature=__name__)

from ...components import Component, ComponentLike
from .base import ProbeDetails, ProbeFailed

__all__ = ["HttpProbe", "safe_url"]

HttpMethod = Literal["GET", "HEAD"]

# RFC 9110 15: 2xx is success and 3xx a redirection, both an answer from a working server.
_HEALTHY = range(200, 400)


def safe_url(url: str) -> str:
    """``url`` without its user info, query and fragment: what reports may show.

    ``https://user:pw@api.example.com:8443/health?token=x`` becomes
    ``https://api.example.com:8443/health``.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class HttpProbe:
    """A bounded ``GET`` (or ``HEAD``) of an HTTP dependency through httpx.

    Healthy on any 2xx or 3xx answer; a 4xx or 5xx answer, a refused or reset
    connection or no answer within ``timeout`` seconds fails it. Redirects are
    never followed (a 3xx is already an answer), so the probe never talks to
    any host but the one configured. Credentials in the URL (user info, sent
    as basic auth, and the query string) never appear in the probe's report:
    details and errors name :func:`safe_url` only. Each check uses a fresh
    connection, so a dead keep-alive connection cannot hide an outage.

    Args:
        url: an ``http://`` or ``https://`` URL.
        name: the report key; the URL's host (and port) when omitted.
        method: ``"GET"`` (default) or ``"HEAD"``.
        timeout: seconds for each phase of the request (connect, write, read, pool; httpx's
            ``Timeout``); the checker's ``probe_timeout`` bounds the whole check.
        required: whether a failure makes the service unhealthy (default ``False``:
            a degraded dependency should not take the service out of rotation).
        component: the component a failure points at (``Component.INTEGRATION``).
        headers: extra request headers (e.g. an API key; never reported).
        verify: TLS verification, as httpx's ``verify`` (``True``, ``False`` or an ``SSLContext``).
        trust_env: use proxy and TLS settings from the environment (``HTTPS_PROXY``,
            ``SSL_CERT_FILE``, ...), as an httpx client does by default.

    Raises:
        ValueError: a URL that is not http(s) or has no host, an unknown method,
            or a non-positive timeout.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str | None = None,
        method: HttpMethod = "GET",
        timeout: float = 1.0,
        required: bool = False,
        component: ComponentLike = Component.INTEGRATION,
        headers: dict[str, str] | None = None,
        verify: bool | ssl.SSLContext = True,
        trust_env: bool = True,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            msg = f"HttpProbe url must be an http:// or https:// URL with a host, got {safe_url(url)!r}"
            raise ValueError(msg)
        if method not in {"GET", "HEAD"}:
            msg = f"HttpProbe method must be 'GET' or 'HEAD', got {method!r}"
            raise ValueError(msg)
        if not timeout > 0:
            msg = f"HttpProbe timeout must be positive, got {timeout!r}"
            raise ValueError(msg)
        self._url = url
        self.url = safe_url(url)
        self.name = name or (parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}")
        self.method = method
        self.timeout = timeout
        self.required = required
        self.component = component
        self._headers = dict(headers or {})
        self._verify = verify
        self._trust_env = trust_env
        self._tls: ssl.SSLContext | bool | None = None

    def __repr__(self) -> str:
        return f"HttpProbe(name={self.name!r}, url={self.url!r}, method={self.method!r})"

    async def check(self) -> ProbeDetails:
        """Send the request; raise :class:`ProbeFailed` on a 4xx/5xx, httpx's error otherwise."""
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout),
            follow_redirects=False,
            verify=self._tls_context(),
            trust_env=self._trust_env,
        ) as client:
            response = await client.request(self.method, self._url, headers=self._headers)
        details = {"url": self.url, "status": response.status_code}
        if response.status_code not in _HEALTHY:
            msg = f"{self.method} {self.url} answered {response.status_code}"
            raise ProbeFailed(msg)
        return details

    def _tls_context(self) -> ssl.SSLContext | bool:
        # Building a default context loads the CA bundle (milliseconds): once per probe, not per check.
        if self._tls is None:
            self._tls = httpx.create_ssl_context(trust_env=self._trust_env) if self._verify is True else self._verify
        return self._tls
