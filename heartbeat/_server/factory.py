"""
The ready server's factory: it tracks, caps and summarises its connections,
whatever their framing.
"""

from __future__ import annotations

from typing import Optional, Set

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from .._core.protocol import default_clock, peer_name
from .admission import CountedByServer
from .line import HeartbeatServerProtocol

# Refusals are logged once per window, with a count of the rest, so a
# connection flood does not become a log flood.
REFUSAL_LOG_WINDOW = 10.0


class HeartbeatServerFactory(Factory):
    """
    Serves heartbeat line connections, at most L{maxConnections} at once.

    @ivar connections: the live (registered) connections.
    @ivar heartbeatPongTimeout: the least pong deadline (see
        L{HeartbeatProtocol}); C{None}: no pong deadline, the timeout alone.
    @ivar maxConnections: how many connections are served at once; the
        next one is told C{error server full} and closed.  C{None}: no cap.
    @ivar minPingInterval: the sustained rate of pings a peer may send, one
        per this many seconds, after a burst of
        L{heartbeat._server.line.PING_BURST}; a peer over
        that budget gets C{error too many pings} and a close.  C{None}: any
        rate.
    @ivar lineTimeout: see L{HeartbeatLineProtocol.lineTimeout}.
    @ivar maxWriteBuffer: see L{HeartbeatLineProtocol.maxWriteBuffer}.
    @ivar authToken: when set, the first line of every connection must be
        C{auth <token>} within L{authTimeout} seconds, or the peer gets
        C{error unauthorized} and a close.
    @ivar tcpKeepalive: also turn on kernel keepalive and TCP_USER_TIMEOUT
        matched to the heartbeat (see L{heartbeat._server.tcp}).
    @ivar summaryInterval: seconds between summary log lines.
    @ivar accepted: connections served since the factory started.
    @ivar refused: connections refused because the server was full.
    @ivar timeouts: connections aborted because their peer fell silent.
    @ivar pingsSent: pings sent to peers.
    @ivar pingsReceived: pings received from peers (and answered).
    """

    protocol = HeartbeatServerProtocol
    noisy = False
    log = Logger()
    summaryInterval = 60.0

    def __init__(
        self,
        heartbeatInterval: Optional[float] = 25.0,
        heartbeatTimeout: Optional[float] = 90.0,
        maxLineLength: int = 65536,
        maxConnections: Optional[int] = 10000,
        clock: Optional[IReactorTime] = None,
        minPingInterval: Optional[float] = 1.0,
        lineTimeout: Optional[float] = 30.0,
        maxWriteBuffer: Optional[int] = 1 << 20,
        authToken: Optional[bytes] = None,
        authTimeout: float = 5.0,
        tcpKeepalive: bool = False,
        heartbeatPongTimeout: Optional[float] = 5.0,
    ) -> None:
        self.heartbeatInterval = heartbeatInterval
        self.heartbeatTimeout = heartbeatTimeout
        self.heartbeatPongTimeout = heartbeatPongTimeout
        self.maxLineLength = maxLineLength
        self.maxConnections = maxConnections
        self.clock = clock if clock is not None else default_clock()
        self.minPingInterval = minPingInterval
        self.lineTimeout = lineTimeout
        self.maxWriteBuffer = maxWriteBuffer
        self.authToken = authToken
        self.authTimeout = authTimeout
        self.tcpKeepalive = tcpKeepalive
        self.connections: Set[HeartbeatServerProtocol] = set()
        self.accepted = 0
        self.refused = 0
        self.timeouts = 0
        self.pingsSent = 0
        self.pingsReceived = 0
        self._summary: Optional[LoopingCall] = None
        self._refusalLoggedAt: Optional[float] = None
        self._refusalsUnlogged = 0

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
            self._logRefusal(protocol)
            return False
        self.connections.add(protocol)
        self.accepted += 1
        protocol.heartbeatConnectionId = self.accepted
        return True

    def unregisterConnection(self, protocol: HeartbeatServerProtocol) -> None:
        self.connections.discard(protocol)

    def roundTripMeasured(self, protocol: CountedByServer, rtt: float) -> None:
        """
        C{protocol} measured a round trip of C{rtt} seconds; override to
        record the samples (the status service keeps a histogram).
        """

    def _logRefusal(self, protocol: HeartbeatServerProtocol) -> None:
        now = self.clock.seconds()
        last = self._refusalLoggedAt
        if last is not None and now - last < REFUSAL_LOG_WINDOW:
            self._refusalsUnlogged += 1
            return
        self._refusalLoggedAt = now
        unlogged, self._refusalsUnlogged = self._refusalsUnlogged, 0
        self.log.warn(
            "refused {peer}: server full ({limit} connections); "
            "{unlogged} more refused since the last such line",
            peer=peer_name(protocol),
            limit=self.maxConnections,
            unlogged=unlogged,
        )

    def broadcast(
        self, line: bytes, exclude: object = None, isBinary: Optional[bool] = None
    ) -> int:
        """
        Send an application line to every admitted connection but
        C{exclude} (one that has not authenticated yet hears nothing).

        @param isBinary: how WebSocket connections get it: C{True} as a
            binary message (it came as one), else as the bytes allow.
        @return: how many connections it was sent to.
        """
        sent = 0
        for protocol in list(self.connections):
            if protocol is not exclude and protocol.heartbeatAdmitted:
                protocol.sendMessage(line, isBinary)
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
