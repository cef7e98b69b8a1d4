"""
The server's listeners, which stop twistd when they cannot listen.
"""

from __future__ import annotations

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorCore
from twisted.internet.protocol import Factory

from .._server.transport import DirectWriteEndpoint


class Listener(StreamServerEndpointService):
    """
    Listens on the endpoint an option describes.  When the port cannot be
    had (in use, not permitted), twistd exits at once with one line naming
    the option, rather than log a traceback and serve without it.
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
        endpoint = serverFromString(reactor, description)
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
