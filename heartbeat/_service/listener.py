"""
The server's listeners, which stop twistd when they cannot listen, with a
listen backlog fit for a crowd reconnecting at once.
"""

from __future__ import annotations

import re

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorCore
from twisted.internet.protocol import Factory

from .._server.transport import DirectWriteEndpoint

# Connections the kernel holds for a port before the server accepts them.
# Twisted's default, 50, overflows when thousands of clients come back at
# once after a restart: each overflowed one retries after a second or more.
# The kernel caps it at net.core.somaxconn (4096 by default since Linux 5.4).
LISTEN_BACKLOG = 4096

# Endpoint types that take a backlog.
_BACKLOG_KINDS = ("tcp", "tcp6", "ssl", "unix")


def with_backlog(description: str) -> str:
    """
    C{description} with C{backlog=}L{LISTEN_BACKLOG} added, unless it sets
    its own or its type takes none.
    """
    kind, *fields = re.split(r"(?<!\\):", description)
    if kind not in _BACKLOG_KINDS or any(f.startswith("backlog=") for f in fields):
        return description
    return f"{description}:backlog={LISTEN_BACKLOG}"


class Listener(StreamServerEndpointService):
    """
    Listens on the endpoint an option describes, with L{LISTEN_BACKLOG}
    unless the description sets a backlog.  When the port cannot be had
    (in use, not permitted), twistd exits at once with one line naming the
    option, rather than log a traceback and serve without it.

    @param directWrites: the port's connections write directly (see
        L{heartbeat._server.transport}).
    """

    _raiseSynchronously = True

    def __init__(
        self,
        option: str,
        description: str,
        factory: Factory,
        reactor: IReactorCore,
        directWrites: bool = False,
    ) -> None:
        endpoint = serverFromString(reactor, with_backlog(description))
        if directWrites:
            endpoint = DirectWriteEndpoint(endpoint)
        super().__init__(endpoint, factory)
        self.option = option
        self.description = description

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            raise cannot_listen(self.option, self.description, e)


def cannot_listen(option: str, description: str, error: CannotListenError) -> SystemExit:
    """
    The one-line exit for a port that cannot be had (in use, not permitted).
    """
    why = getattr(error.socketError, "strerror", None) or str(error.socketError)
    return SystemExit(f"heartbeat: --{option} {description}: cannot listen: {why}")
