"""
The client's line connection: it proves the server alive, then reports to
its factory.
"""

from __future__ import annotations

from typing import Optional

from twisted.python.failure import Failure

from .._framing.line import AUTH, ERROR, HeartbeatLineProtocol


class HeartbeatClientProtocol(HeartbeatLineProtocol):
    """
    A client connection: pings at once to prove the server alive, then
    reports to its factory.  Subclass and override L{messageReceived}.

    A line C{error <reason>} is held back until the next line: if the
    connection ends first it was the server's reason for closing, otherwise
    it was an application line (an echo, say) and is delivered in order.
    """

    _healthy = False
    _heldError: Optional[bytes] = None

    def connectionMade(self) -> None:
        factory = self.factory
        self.heartbeatInterval = factory.heartbeatInterval
        self.heartbeatTimeout = factory.heartbeatTimeout
        self.maxLineLength = factory.maxLineLength
        super().connectionMade()
        factory.clientConnectionMade(self)
        if factory.authToken is not None:
            self.sendLine(AUTH + b" " + factory.authToken)
        self.heartbeatPing()

    def lineReceived(self, line: bytes) -> None:
        held = self._heldError
        if held is not None:
            self._heldError = None
            self.messageReceived(held)
        if line.startswith(ERROR + b" "):
            self._heldError = line[:-1] if line[-1:] == b"\r" else line
            return
        if not self._healthy:
            # Any line but an error proves the server alive: our first
            # ping's pong, usually, or its own ping or message.
            self._healthy = True
            self.factory.clientConnectionHealthy(self)
        super().lineReceived(line)

    def connectionLost(self, reason: Failure) -> None:
        held = self._heldError
        if held is not None:
            self._heldError = None
            self.factory.serverClosedWithError(held[len(ERROR) + 1 :])
        super().connectionLost(reason)
