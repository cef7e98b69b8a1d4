"""
Endpoints driven by L{ReconnectingClientFactory}, which expects a connector.

Endpoints (C{clientFromString}) give TLS, UNIX sockets and every other
transport for free, but they have no connector to call back the factory's
C{clientConnectionLost}; this module supplies one.
"""

from __future__ import annotations

from typing import Optional

from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import ClientFactory
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure


class EndpointConnector:
    """
    Connects C{factory} through C{endpoint} each time L{connect} is called,
    reporting every outcome to the factory as a TCP connector would.

    @ivar state: C{"disconnected"}, C{"connecting"} or C{"connected"}.
    """

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        factory: ClientFactory,
        description: str = "",
    ) -> None:
        self.endpoint = endpoint
        self.factory = factory
        self.description = description or repr(endpoint)
        self.state = "disconnected"
        self._attempt: Optional[Deferred] = None
        self._wrapper: Optional[ProtocolWrapper] = None

    def __repr__(self) -> str:
        return f"<EndpointConnector {self.description} {self.state}>"

    def connect(self) -> None:
        if self.state != "disconnected":
            raise RuntimeError(f"cannot connect while {self.state}")
        self.state = "connecting"
        self.factory.startedConnecting(self)
        attempt = self._attempt = self.endpoint.connect(_ReportingFactory(self))
        attempt.addCallbacks(self._connected, self._failed)

    def stopConnecting(self) -> None:
        if self.state != "connecting" or self._attempt is None:
            raise error.NotConnectingError()
        self._attempt.cancel()

    def disconnect(self) -> None:
        if self.state == "connecting":
            self.stopConnecting()
        elif self.state == "connected" and self._wrapper is not None:
            self._wrapper.transport.loseConnection()

    def getDestination(self) -> str:
        return self.description

    def _connected(self, wrapper: ProtocolWrapper) -> None:
        self._attempt = None
        self._wrapper = wrapper
        self.state = "connected"

    def _failed(self, reason: Failure) -> None:
        self._attempt = None
        self.state = "disconnected"
        self.factory.clientConnectionFailed(self, reason)

    def _lost(self, reason: Failure) -> None:
        self._wrapper = None
        self.state = "disconnected"
        self.factory.clientConnectionLost(self, reason)


class _ReportingProtocol(ProtocolWrapper):
    def connectionLost(self, reason: Failure) -> None:
        connector = self.factory.connector
        super().connectionLost(reason)
        connector._lost(reason)


class _ReportingFactory(WrappingFactory):
    protocol = _ReportingProtocol
    noisy = False

    def __init__(self, connector: EndpointConnector) -> None:
        super().__init__(connector.factory)
        self.connector = connector
