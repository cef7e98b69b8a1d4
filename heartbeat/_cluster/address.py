"""
C{--redis}: where the cluster's Redis is, and how to reach it.

    redis://[[user]:password@]host[:port][/db]
    rediss://[user:password@]host[:port][/db][?ca=/path/ca.pem]   (TLS)
    unix://[user:password@]/path/redis.sock[?db=N]

The port defaults to 6379 and the database to 0.  C{rediss://} checks the
server's certificate against the system's trust roots, or against the
PEM file C{ca} names.  Passwords may be percent-encoded.
"""

from __future__ import annotations

from typing import NamedTuple, Optional
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_PORT = 6379


class RedisAddress(NamedTuple):
    """
    @ivar host: the host name or address, for TCP (C{None} for a socket).
    @ivar path: the unix socket's path (C{None} for TCP).
    @ivar display: the address without its password, for log lines.
    """

    host: Optional[str]
    port: int
    path: Optional[str]
    db: int
    username: Optional[str]
    password: Optional[str]
    tls: bool
    ca: Optional[str]
    display: str

    def endpoint(self, reactor, timeout: float):
        """
        A client endpoint that connects to this address within C{timeout}
        seconds.
        """
        from twisted.internet.endpoints import (
            HostnameEndpoint,
            UNIXClientEndpoint,
            wrapClientTLS,
        )

        if self.path is not None:
            return UNIXClientEndpoint(reactor, self.path, timeout=timeout)
        endpoint = HostnameEndpoint(reactor, self.host, self.port, timeout=timeout)
        if not self.tls:
            return endpoint
        from twisted.internet.ssl import Certificate, optionsForClientTLS

        trust = None
        if self.ca is not None:
            with open(self.ca, "rb") as pem:
                trust = Certificate.loadPEM(pem.read())
        return wrapClientTLS(optionsForClientTLS(self.host, trustRoot=trust), endpoint)


def parse_redis_url(url: str) -> RedisAddress:
    """
    @raise ValueError: C{url} is not a Redis address this understands; the
        message says why.
    """
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"{_safe(url)!r} is not a redis://, rediss:// or unix:// URL"
        )
    try:
        query = parse_qs(parts.query, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError(f"bad query in {_safe(url)!r}")
    unknown = set(query) - {"db", "ca"}
    if unknown:
        raise ValueError(f"unknown parameter {sorted(unknown)[0]!r} in {_safe(url)!r}")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if username and password is None:
        raise ValueError(
            f"{_safe(url)!r} has a user name without a password: "
            "redis://user:password@host, or redis://:password@host"
        )
    ca = _single(query, "ca", url)
    if scheme == "unix":
        path = parts.path
        if parts.hostname or not path.startswith("/") or path == "/":
            raise ValueError(f"{_safe(url)!r} must name a socket: unix:///path/redis.sock")
        if ca is not None:
            raise ValueError("ca= is for rediss:// only")
        db = _db(_single(query, "db", url) or "0", url)
        return RedisAddress(None, 0, path, db, username, password, False, None,
                            f"unix://{path}?db={db}")
    if not parts.hostname:
        raise ValueError(f"{_safe(url)!r} names no host")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"bad port in {_safe(url)!r}")
    if "db" in query:
        raise ValueError(f"{scheme}:// takes its database as the path: {scheme}://host:port/0")
    db = _db(parts.path.lstrip("/") or "0", url)
    if ca is not None and scheme != "rediss":
        raise ValueError("ca= is for rediss:// only")
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    return RedisAddress(host, port, None, db, username, password, scheme == "rediss",
                        ca, f"{scheme}://{shown}:{port}/{db}")


def _single(query: dict, key: str, url: str) -> Optional[str]:
    values = query.get(key)
    if values is None:
        return None
    if len(values) != 1:
        raise ValueError(f"{key}= given twice in {_safe(url)!r}")
    return values[0]


def _db(text: str, url: str) -> int:
    if not text.isdigit() or len(text) > 5:
        raise ValueError(f"the database must be a number, not {text!r}, in {_safe(url)!r}")
    return int(text)


def _safe(url: str) -> str:
    """
    C{url} with any password masked, for an error message.
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
