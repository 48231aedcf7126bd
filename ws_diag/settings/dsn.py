"""DSN and URL checks run when settings are built: a probe must never meet a URL it cannot parse.

Each check follows the parser its probe uses (asyncpg's DSN rules, redis-py's
``from_url``, SQLAlchemy's ``make_url``, ``urllib.parse`` for HttpProbe) with the
standard library alone, so building settings imports no optional dependency.
Where the probe's library is installed and its parser is pure (redis-py's
``parse_url``, SQLAlchemy's ``make_url`` and dialect lookup), that parser runs too,
so nothing it would refuse later gets through. asyncpg's parser is private and
reads files (``.pgpass``, certificates): it is not run here.

Messages never repeat the value, nor any part of it: a DSN carries a password.
"""

from __future__ import annotations

import importlib.util
import re
from urllib.parse import SplitResult, urlsplit

__all__ = ["check_http_url", "check_postgres_dsn", "check_redis_url", "check_sqlalchemy_url"]

# SQLAlchemy's URL grammar (sqlalchemy/engine/url.py, _parse_url): name[+driver]://...
_SQLALCHEMY_URL = re.compile(
    r"(?P<name>[\w+]+)://(?:[^:/]*(?::[^@]*)?@)?(?:(?:\[[^/?]+\]|[^/:?]+)?(?::(?P<port>[^/?]*))?)?(?:/[^?]*)?(?:\?.*)?",
    re.DOTALL,
)


def _installed(package: str) -> bool:
    # Looked up, not imported: the parser is imported only for a URL that is set.
    return importlib.util.find_spec(package) is not None


def _split(url: str, example: str) -> SplitResult:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number in 0-65535
    except ValueError:
        msg = f"cannot be parsed as a URL (a bracket or the port is malformed); the form is {example}"
        raise ValueError(msg) from None
    return parts


def _scheme(url: str) -> str:
    """The URL's scheme, lower case ("" when it has none)."""
    return url.partition("://")[0].lower() if "://" in url else ""


def check_redis_url(url: str, env: str) -> None:
    """Raise ``ValueError`` unless redis-py's ``Redis.from_url`` accepts ``url``."""
    example = f"{env}=redis://[:password@]host:6379/0"
    scheme = _scheme(url)
    if scheme not in {"redis", "rediss", "unix"}:
        msg = f"needs a redis://, rediss:// or unix:// scheme (redis-py refuses any other), e.g. {example}"
        raise ValueError(msg)
    parts = _split(url, example)
    if scheme == "unix" and not parts.path:
        msg = f"a unix:// URL needs the socket's path, e.g. {env}=unix:///run/redis.sock"
        raise ValueError(msg)
    if _installed("redis"):
        from redis.asyncio.connection import parse_url

        try:
            parse_url(url)
        except ValueError:
            # Its messages name a query option or the scheme; this one names nothing of the URL.
            msg = f"redis-py cannot parse it (check the port, the database number and the query options); {example}"
            raise ValueError(msg) from None


def check_postgres_dsn(dsn: str, env: str) -> None:
    """Raise ``ValueError`` unless ``dsn`` has the shape asyncpg's ``connect`` parses."""
    example = f"{env}=postgresql://user:password@host:5432/dbname"
    if _scheme(dsn) not in {"postgresql", "postgres"}:
        # asyncpg takes URLs only: a libpq 'host=... dbname=...' string fails too.
        msg = f"needs a postgresql:// or postgres:// URL (asyncpg takes no other form), e.g. {example}"
        raise ValueError(msg)
    parts = _split_hosts(dsn, example)
    for port in parts:
        if port and not port.isdigit():
            msg = f"has a port that is not a number; the form is {example}"
            raise ValueError(msg)


def _split_hosts(dsn: str, example: str) -> list[str]:
    # asyncpg splits the netloc itself (host1:5432,host2:5433), so urlsplit's port cannot be used.
    netloc = dsn.partition("://")[2]
    netloc = re.split(r"[/?]", netloc, maxsplit=1)[0].rpartition("@")[2]
    ports = []
    for host in netloc.split(","):
        if host.startswith("["):
            _address, bracket, rest = host[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                msg = f"has a malformed IPv6 address; the form is {example}"
                raise ValueError(msg)
            ports.append(rest[1:])
        else:
            ports.append(host.partition(":")[2])
    return ports


def check_sqlalchemy_url(url: str, env: str) -> None:
    """Raise ``ValueError`` unless SQLAlchemy's ``make_url`` parses ``url`` and knows its dialect."""
    example = f"{env}=postgresql+asyncpg://user:password@host:5432/dbname"
    match = _SQLALCHEMY_URL.fullmatch(url)
    if match is None:
        msg = f"is not a SQLAlchemy URL (dialect[+driver]://...), e.g. {example}"
        raise ValueError(msg)
    port = match["port"]
    if port and not port.isdigit():
        msg = f"has a port that is not a number; the form is {example}"
        raise ValueError(msg)
    if _installed("sqlalchemy"):
        import sqlalchemy

        try:
            dialect = sqlalchemy.make_url(url)
        except (sqlalchemy.exc.ArgumentError, ValueError):
            msg = f"SQLAlchemy cannot parse it; the form is {example}"
            raise ValueError(msg) from None
        try:
            dialect.get_dialect()
        except sqlalchemy.exc.NoSuchModuleError:
            name = dialect.drivername  # dialect[+driver]: no credential in it
            msg = f"names a dialect or driver SQLAlchemy does not know ({name!r}); e.g. {example}"
            raise ValueError(msg) from None


def check_http_url(url: str, env: str) -> None:
    """Raise ``ValueError`` unless ``url`` is an http(s) URL with a host, as HttpProbe requires."""
    example = f"{env}='[\"https://host:8443/health\"]'"
    if _scheme(url) not in {"http", "https"} or not _split(url, example).hostname:
        msg = f"url must be an http:// or https:// URL with a host, e.g. {example}"
        raise ValueError(msg)
