"""The built-in rules: which library errors mean a dependency is unavailable, by dotted name.

No library named here is imported: an exception of a module that was never imported cannot occur.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from ..components import Component, ComponentLike

__all__ = [
    "BUILTIN_NAMED_RULES",
    "CLIENT_GONE",
    "INBOUND_DATA_RULES",
    "LLM",
    "ClientGone",
    "Outcome",
    "Predicate",
    "Rule",
]


class ClientGone(enum.Enum):
    """The outcome for exceptions that mean the peer went away: no diagnosis, nothing sent."""

    CLIENT_GONE = "client-gone"


CLIENT_GONE = ClientGone.CLIENT_GONE

Outcome = ComponentLike | ClientGone
Predicate = Callable[[BaseException], bool]


@dataclass(frozen=True, slots=True)
class Rule:
    outcome: Outcome
    predicate: Predicate | None


# SQLSTATE classes (or full codes) that mean the server or the connection to it is
# unavailable, the same set the asyncpg rules name: 08 connection exception,
# 28 invalid authorisation, 53 insufficient resources, 57 operator intervention
# (shutdown, cancel), 25006 read-only transaction (a replica or a failover).
_PG_UNAVAILABLE_SQLSTATES = ("08", "28", "53", "57", "25006")


def _pg_unavailable(sqlstate: object) -> bool:
    return isinstance(sqlstate, str) and sqlstate.startswith(_PG_UNAVAILABLE_SQLSTATES)


def _psycopg_unavailable(exc: BaseException) -> bool:
    # psycopg 3 raises client-side failures (refused, lost, closed connection) with no
    # SQLSTATE; server-sent OperationalErrors also cover serialization failures and
    # deadlocks (class 40), which are the application's to retry.
    sqlstate = getattr(exc, "sqlstate", None)
    return sqlstate is None or _pg_unavailable(sqlstate)


def _sqlalchemy_unavailable(exc: BaseException) -> bool:
    # SQLAlchemy's own verdict (its dialect's is_disconnect) first, then the driver's
    # original: a socket error or a connection-level SQLSTATE. Anything else falls
    # through to the original's own rule (the classifier walks __cause__).
    if getattr(exc, "connection_invalidated", False):
        return True
    orig = getattr(exc, "orig", None)
    return isinstance(orig, OSError) or _pg_unavailable(getattr(orig, "sqlstate", None))


_SERVER_ERROR_STATUSES = range(500, 600)


def _http_status_5xx(status: object) -> bool:
    return isinstance(status, int) and status in _SERVER_ERROR_STATUSES


def _httpx_status_5xx(exc: BaseException) -> bool:
    # raise_for_status(): a 5xx is the dependency failing, a 4xx is our request's fault.
    return _http_status_5xx(getattr(getattr(exc, "response", None), "status_code", None))


def _aiohttp_status_5xx(exc: BaseException) -> bool:
    return _http_status_5xx(getattr(exc, "status", None))


class LLM(enum.Enum):
    """Placeholder outcome of the LLM SDK rules: the classifier's ``llm_component``."""

    LLM = "llm"


LLM_ERRORS = ("APIConnectionError", "RateLimitError", "InternalServerError")  # APITimeoutError is a connection error

# Only errors that mean the dependency itself is unavailable: a unique violation,
# a syntax error, a WRONGTYPE reply or an HTTP 4xx is the application's bug.
BUILTIN_NAMED_RULES: tuple[tuple[str, Outcome | LLM, Predicate | None], ...] = (
    ("asyncpg.exceptions.PostgresConnectionError", Component.DATABASE, None),
    ("asyncpg.exceptions.InsufficientResourcesError", Component.DATABASE, None),
    ("asyncpg.exceptions.OperatorInterventionError", Component.DATABASE, None),
    ("asyncpg.exceptions.InvalidAuthorizationSpecificationError", Component.DATABASE, None),
    ("asyncpg.exceptions.ReadOnlySQLTransactionError", Component.DATABASE, None),
    ("asyncpg.exceptions._base.InterfaceError", Component.DATABASE, None),
    ("psycopg.OperationalError", Component.DATABASE, _psycopg_unavailable),
    ("psycopg.errors.ReadOnlySqlTransaction", Component.DATABASE, None),
    ("sqlalchemy.exc.DBAPIError", Component.DATABASE, _sqlalchemy_unavailable),
    ("sqlalchemy.exc.DisconnectionError", Component.DATABASE, None),
    ("sqlalchemy.exc.TimeoutError", Component.DATABASE, None),  # the pool's checkout timeout
    ("redis.exceptions.ConnectionError", Component.REDIS, None),
    ("redis.exceptions.TimeoutError", Component.REDIS, None),
    ("redis.exceptions.ReadOnlyError", Component.REDIS, None),
    ("redis.exceptions.ClusterDownError", Component.REDIS, None),
    ("redis.exceptions.TryAgainError", Component.REDIS, None),
    ("httpx.TimeoutException", Component.INTEGRATION, None),
    ("httpx.NetworkError", Component.INTEGRATION, None),
    ("httpx.RemoteProtocolError", Component.INTEGRATION, None),
    ("httpx.ProxyError", Component.INTEGRATION, None),
    ("httpx.HTTPStatusError", Component.INTEGRATION, _httpx_status_5xx),
    ("aiohttp.client_exceptions.ClientConnectionError", Component.INTEGRATION, None),
    ("aiohttp.client_exceptions.ClientPayloadError", Component.INTEGRATION, None),
    ("aiohttp.client_exceptions.ClientResponseError", Component.INTEGRATION, _aiohttp_status_5xx),
    # The SDKs re-export their errors at the top level; older releases leave
    # __module__ at the private module, so both spellings are named.
    *(
        (f"{module}.{name}", LLM.LLM, None)
        for package in ("openai", "anthropic")
        for module in (package, f"{package}._exceptions")
        for name in LLM_ERRORS
    ),
    # Text the handler produced that UTF-8 cannot encode (a lone surrogate): the server's
    # send refuses the frame while the client is there. No dependency failed.
    ("builtins.UnicodeEncodeError", Component.HANDLER, None),
    ("starlette.websockets.WebSocketDisconnect", CLIENT_GONE, None),
    ("uvicorn.protocols.utils.ClientDisconnected", CLIENT_GONE, None),
    # Litestar raises it where its receive got websocket.disconnect, then closes with its code.
    ("litestar.exceptions.websocket_exceptions.WebSocketDisconnect", CLIENT_GONE, None),
)

# Data that cannot be decoded or validated: the handler's failure, and a retry
# sends the same bytes again. Tried only when no type or origin rule in the
# chain names anything: the same pydantic error from the app's own settings is
# still the app's failure, not a dependency's, and retrying does not help either.
# (orjson documents its JSONDecodeError as a subclass of json's, so the json rule would
# cover it; msgspec's DecodeError is not named. Neither is installed here to test.)
INBOUND_DATA_RULES: tuple[str, ...] = (
    "json.decoder.JSONDecodeError",
    "ujson.JSONDecodeError",
    "builtins.UnicodeDecodeError",
    "pydantic_core._pydantic_core.ValidationError",  # pydantic.ValidationError
)
