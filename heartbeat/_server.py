"""
The ready line server: a factory that tracks, caps and summarises its
connections, and protocols that echo or broadcast application lines while
keeping hostile peers in check.
"""

from __future__ import annotations

import hmac
from typing import Optional, Set

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._line import (
    AUTH,
    SERVER_FULL,
    TOO_MANY_PINGS,
    UNAUTHORIZED,
    HeartbeatLineProtocol,
)
from ._protocol import _default_clock, _peer
from ._tcp import enable_tcp_keepalive

# Pings closer together than minPingInterval tolerated before the close.
MAX_PING_STRIKES = 2

# Refusals are logged once per window, with a count of the rest, so a
# connection flood does not become a log flood.
REFUSAL_LOG_WINDOW = 10.0


class CountedByServer:
    """
    Counts a served connection's heartbeats on its server factory, for the
    summary, the status page and the metrics.  Mixed in before a framing
    (line or WebSocket), whatever factory built the protocol.

    @ivar heartbeatAdmitted: whether the connection may hear broadcasts:
        C{False} while it still owes its C{auth} line.
    """

    heartbeatAdmitted = True

    @property
    def heartbeatServer(self) -> "HeartbeatServerFactory":
        """
        The L{HeartbeatServerFactory} that counts this connection.
        """
        return self.factory  # type: ignore[attr-defined, no-any-return]

    def heartbeatPing(self) -> bytes:
        self.heartbeatServer.pingsSent += 1
        return super().heartbeatPing()  # type: ignore[misc, no-any-return]

    def heartbeatPingReceived(self, token: Optional[bytes]) -> None:
        self.heartbeatServer.pingsReceived += 1
        super().heartbeatPingReceived(token)  # type: ignore[misc]

    def heartbeatRoundTrip(self, rtt: float) -> None:
        self.heartbeatServer.roundTripMeasured(self, rtt)
        super().heartbeatRoundTrip(rtt)  # type: ignore[misc]

    def heartbeatTimedOut(self, silence: float) -> None:
        self.heartbeatServer.timeouts += 1
        super().heartbeatTimedOut(silence)  # type: ignore[misc]


class HeartbeatServerProtocol(CountedByServer, HeartbeatLineProtocol):
    """
    A server connection: registers with its factory, enforces its limits,
    echoes application lines back.  Subclass and override L{messageReceived}
    for your own application.
    """

    log = Logger()
    _registered = False
    _authCall: Optional[IDelayedCall] = None
    _lastPingAt: Optional[float] = None
    _pingStrikes = 0

    def connectionMade(self) -> None:
        factory = self.factory
        self.maxLineLength = factory.maxLineLength
        if not factory.registerConnection(self):
            # A refused connection gets no heartbeat: it only hears why.
            self.closeWithError(SERVER_FULL, quiet=True)
            return
        self._registered = True
        self.heartbeatInterval = factory.heartbeatInterval
        self.heartbeatTimeout = factory.heartbeatTimeout
        self.lineTimeout = factory.lineTimeout
        self.maxWriteBuffer = factory.maxWriteBuffer
        if factory.tcpKeepalive:
            enable_tcp_keepalive(
                self.transport, factory.heartbeatInterval, factory.heartbeatTimeout
            )
        self.log.info("{peer} connected", peer=_peer(self))
        super().connectionMade()
        if factory.authToken is not None:
            self.heartbeatAdmitted = False
            self._authCall = factory.clock.callLater(
                factory.authTimeout, self._authExpired
            )

    def connectionLost(self, reason: Failure) -> None:
        self._cancelAuth()
        if self._registered:
            self._registered = False
            self.factory.unregisterConnection(self)
            self.log.info(
                "{peer} disconnected: {reason}",
                peer=_peer(self),
                reason=reason.getErrorMessage(),
            )
        super().connectionLost(reason)

    def lineReceived(self, line: bytes) -> None:
        if not self.heartbeatAdmitted:
            self._authenticate(line[:-1] if line[-1:] == b"\r" else line)
        else:
            super().lineReceived(line)

    def _authenticate(self, line: bytes) -> None:
        token = self.factory.authToken
        prefix = AUTH + b" "
        if line.startswith(prefix) and hmac.compare_digest(line[len(prefix) :], token):
            self.heartbeatAdmitted = True
            self._cancelAuth()
        else:
            self.log.warn("{peer} did not authenticate", peer=_peer(self))
            self.closeWithError(UNAUTHORIZED, quiet=True)

    def _authExpired(self) -> None:
        self._authCall = None
        self.log.warn(
            "{peer} sent no auth line within {timeout}s",
            peer=_peer(self),
            timeout=self.factory.authTimeout,
        )
        self.closeWithError(UNAUTHORIZED, quiet=True)

    def _cancelAuth(self) -> None:
        if self._authCall is not None:
            if self._authCall.active():
                self._authCall.cancel()
            self._authCall = None

    def pingReceived(self, token: Optional[bytes]) -> None:
        minimum = self.factory.minPingInterval
        if minimum:
            # The time the data holding this ping arrived, already taken.
            now = self._heartbeatLastReceived
            last, self._lastPingAt = self._lastPingAt, now
            if last is not None and now - last < minimum:
                self._pingStrikes += 1
                if self._pingStrikes > MAX_PING_STRIKES:
                    self.log.warn(
                        "{peer} pings more often than every {minimum}s",
                        peer=_peer(self),
                        minimum=minimum,
                    )
                    self.closeWithError(TOO_MANY_PINGS, quiet=True)
                    return
            else:
                self._pingStrikes = 0
        super().pingReceived(token)

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
    @ivar minPingInterval: pings from a peer closer together than this earn
        strikes; more than two get C{error too many pings} and a close.
        C{None}: any rate.
    @ivar lineTimeout: see L{HeartbeatLineProtocol.lineTimeout}.
    @ivar maxWriteBuffer: see L{HeartbeatLineProtocol.maxWriteBuffer}.
    @ivar authToken: when set, the first line of every connection must be
        C{auth <token>} within L{authTimeout} seconds, or the peer gets
        C{error unauthorized} and a close.
    @ivar tcpKeepalive: also turn on kernel keepalive and TCP_USER_TIMEOUT
        matched to the heartbeat (see L{heartbeat._tcp}).
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
        heartbeatTimeout: Optional[float] = 55.0,
        maxLineLength: int = 65536,
        maxConnections: Optional[int] = 10000,
        clock: Optional[IReactorTime] = None,
        minPingInterval: Optional[float] = 1.0,
        lineTimeout: Optional[float] = 30.0,
        maxWriteBuffer: Optional[int] = 1 << 20,
        authToken: Optional[bytes] = None,
        authTimeout: float = 5.0,
        tcpKeepalive: bool = False,
    ) -> None:
        self.heartbeatInterval = heartbeatInterval
        self.heartbeatTimeout = heartbeatTimeout
        self.maxLineLength = maxLineLength
        self.maxConnections = maxConnections
        self.clock = clock if clock is not None else _default_clock()
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
            peer=_peer(protocol),
            limit=self.maxConnections,
            unlogged=unlogged,
        )

    def broadcast(self, line: bytes, exclude: object = None) -> int:
        """
        Send an application line to every admitted connection but
        C{exclude} (one that has not authenticated yet hears nothing).

        @return: how many connections it was sent to.
        """
        sent = 0
        for protocol in list(self.connections):
            if protocol is not exclude and protocol.heartbeatAdmitted:
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
