"""
The ready line server: a factory that tracks, caps and summarises its
connections, and protocols that echo or broadcast application lines.
"""

from __future__ import annotations

from typing import Optional, Set

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._line import HeartbeatLineProtocol
from ._protocol import _default_clock, _peer

SERVER_FULL = b"server full"


class HeartbeatServerProtocol(HeartbeatLineProtocol):
    """
    A server connection: registers with its factory, echoes application
    lines back.  Subclass and override L{messageReceived} for your own.
    """

    log = Logger()
    _registered = False

    def connectionMade(self) -> None:
        factory = self.factory
        self.maxLineLength = factory.maxLineLength
        if not factory.registerConnection(self):
            # No heartbeat for a refused connection: it only says why (and
            # closeWithError logs it).
            self.closeWithError(SERVER_FULL)
            return
        self._registered = True
        self.heartbeatInterval = factory.heartbeatInterval
        self.heartbeatTimeout = factory.heartbeatTimeout
        self.log.info("{peer} connected", peer=_peer(self))
        super().connectionMade()

    def connectionLost(self, reason: Failure) -> None:
        if self._registered:
            self._registered = False
            self.factory.unregisterConnection(self)
            self.log.info(
                "{peer} disconnected: {reason}",
                peer=_peer(self),
                reason=reason.getErrorMessage(),
            )
        super().connectionLost(reason)

    def heartbeatTimedOut(self, silence: float) -> None:
        self.factory.timeouts += 1
        super().heartbeatTimedOut(silence)

    def messageReceived(self, line: bytes) -> None:
        self.sendLine(line)


class BroadcastServerProtocol(HeartbeatServerProtocol):
    """
    Relays each application line to every other connection of the factory.
    """

    def messageReceived(self, line: bytes) -> None:
        self.factory.broadcast(line, exclude=self)


class HeartbeatServerFactory(Factory):
    """
    Serves heartbeat line connections, at most L{maxConnections} at once.

    @ivar connections: the live (registered) connections.
    @ivar maxConnections: how many connections are served at once; the
        next one is told C{error server full} and closed.  C{None}: no cap.
    @ivar summaryInterval: seconds between summary log lines.
    @ivar accepted: connections served since the factory started.
    @ivar refused: connections refused because the server was full.
    @ivar timeouts: connections aborted because their peer fell silent.
    """

    protocol = HeartbeatServerProtocol
    noisy = False
    log = Logger()
    summaryInterval = 60.0

    def __init__(
        self,
        heartbeatInterval: Optional[float] = 25.0,
        heartbeatTimeout: Optional[float] = 55.0,
        maxLineLength: int = 65536,
        maxConnections: Optional[int] = 10000,
        clock: Optional[IReactorTime] = None,
    ) -> None:
        self.heartbeatInterval = heartbeatInterval
        self.heartbeatTimeout = heartbeatTimeout
        self.maxLineLength = maxLineLength
        self.maxConnections = maxConnections
        self.clock = clock if clock is not None else _default_clock()
        self.connections: Set[HeartbeatServerProtocol] = set()
        self.accepted = 0
        self.refused = 0
        self.timeouts = 0
        self._summary: Optional[LoopingCall] = None

    def registerConnection(self, protocol: HeartbeatServerProtocol) -> bool:
        """
        Admit C{protocol} if there is room.

        @return: C{False} when the server is full.
        """
        if (
            self.maxConnections is not None
            and len(self.connections) >= self.maxConnections
        ):
            self.refused += 1
            return False
        self.connections.add(protocol)
        self.accepted += 1
        return True

    def unregisterConnection(self, protocol: HeartbeatServerProtocol) -> None:
        self.connections.discard(protocol)

    def broadcast(self, line: bytes, exclude: object = None) -> int:
        """
        Send an application line to every connection but C{exclude}.

        @return: how many connections it was sent to.
        """
        sent = 0
        for protocol in list(self.connections):
            if protocol is not exclude:
                protocol.sendMessage(line)
                sent += 1
        return sent

    def startFactory(self) -> None:
        if self.summaryInterval and self._summary is None:
            self._summary = LoopingCall(self.logSummary)
            self._summary.clock = self.clock
            self._summary.start(self.summaryInterval, now=False).addErrback(
                lambda failure: self.log.failure("summary stopped", failure)
            )

    def stopFactory(self) -> None:
        if self._summary is not None:
            if self._summary.running:
                self._summary.stop()
            self._summary = None

    def logSummary(self) -> None:
        """
        Log open connections, totals and the mean smoothed round trip.
        """
        rtts = [
            rtt
            for rtt in (p.heartbeatSmoothedRtt for p in self.connections)
            if rtt is not None
        ]
        meanRtt = "%.1f ms" % (1000 * sum(rtts) / len(rtts),) if rtts else "n/a"
        self.log.info(
            "{open} open, {accepted} accepted, {refused} refused, "
            "{timeouts} timed out, mean RTT {meanRtt}",
            open=len(self.connections),
            accepted=self.accepted,
            refused=self.refused,
            timeouts=self.timeouts,
            meanRtt=meanRtt,
        )
