"""
The ready line server: a factory that tracks, caps and summarises its
connections, and protocols that echo or broadcast application lines while
keeping hostile peers in check.
"""

from __future__ import annotations

import hmac
from operator import attrgetter
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


class _FactorySetting:
    """
    A setting read from the connection's factory until the connection
    assigns its own (an instance attribute shadows this descriptor).

    The factory's settings are read, not copied into each connection:
    a copy costs memory at every one of thousands of connections.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: object, owner: Optional[type] = None):
        if instance is None:
            return self
        return getattr(instance.factory, self.name)  # type: ignore[attr-defined]


def _perLineSetting(name: str) -> property:
    """
    A setting read from the connection's factory on every line, which a
    connection cannot set for itself: a property whose getter is C code
    (L{attrgetter}) costs a fraction of what L{_FactorySetting}'s Python
    C{__get__} does, on each of the reads a ping makes.
    """
    return property(attrgetter("factory." + name))


class CountedByServer:
    """
    A connection of a L{HeartbeatServerFactory}, whatever its framing (line
    or WebSocket): admitted within the server's cap, authenticated when the
    server asks for a token, and counted for the summary, the status page
    and the metrics.  Mixed in before the framing.

    One admission for every framing, so that both count against
    C{maxConnections} from the start, show on the status page while they
    owe their C{auth}, and neither hear nor send anything before they are
    admitted.  The framing calls L{heartbeatJoin} once the connection can
    carry messages, L{heartbeatAuthenticate} with each message while it is
    not admitted, and L{heartbeatLeave} when it ends; it provides
    L{heartbeatRefuse}, and may override L{heartbeatConnectionAdmitted}.

    @ivar heartbeatAdmitted: whether the connection is the server's in
        full: its application messages are served and it hears broadcasts.
        C{False} while it owes its C{auth}, and once refused.
    """

    heartbeatAdmitted: bool
    _heartbeatJoined: bool
    # Set on every new connection (see HeartbeatProtocol).
    _connectionState = {"heartbeatAdmitted": False, "_heartbeatJoined": False}
    # Set only when the server asks for a token, as the connection is made.
    _heartbeatAuthCall: Optional[IDelayedCall] = None

    @property
    def heartbeatServer(self) -> "HeartbeatServerFactory":
        """
        The L{HeartbeatServerFactory} that counts this connection.
        """
        return self.factory  # type: ignore[attr-defined, no-any-return]

    # Admission

    def heartbeatJoin(self) -> bool:
        """
        Join the server if there is room, else be refused with C{server
        full}.  A connection that joins counts against the cap and shows on
        the status page at once; it is admitted now, or when it has
        authenticated.

        @return: whether it joined.
        """
        server = self.heartbeatServer
        if not server.registerConnection(self):
            # The server logs refusals, a few at a time.
            self.heartbeatRefuse(SERVER_FULL)
            return False
        self._heartbeatJoined = True
        if server.tcpKeepalive:
            enable_tcp_keepalive(
                self.transport,  # type: ignore[attr-defined]
                server.heartbeatInterval,
                server.heartbeatTimeout,
            )
        self._heartbeatLog.info(  # type: ignore[attr-defined]
            "{peer} connected ({framing})",
            peer=_peer(self),
            framing=self.heartbeatFraming,  # type: ignore[attr-defined]
        )
        if server.authToken is None:
            self._heartbeatAdmit()
        else:
            self._heartbeatAuthCall = server.clock.callLater(
                server.authTimeout, self._heartbeatAuthExpired
            )
        return True

    def heartbeatAuthenticate(self, message: bytes) -> None:
        """
        The connection's first message, while it is not admitted: C{auth
        <token>} with the server's token admits it; anything else, or a
        wrong token (compared in constant time), refuses it.
        """
        self._heartbeatCancelAuth()
        prefix = AUTH + b" "
        token = self.heartbeatServer.authToken
        if message.startswith(prefix) and hmac.compare_digest(
            message[len(prefix) :], token
        ):
            self._heartbeatAdmit()
        else:
            self._heartbeatUnauthorized("{peer} did not authenticate")

    def heartbeatConnectionAdmitted(self) -> None:
        """
        The connection is now admitted; override to greet it.
        """

    def heartbeatRefuse(self, reason: bytes) -> None:
        """
        Close the connection telling the peer why (C{server full},
        C{unauthorized}), in the framing's way; the caller has logged it.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement heartbeatRefuse"
        )

    def heartbeatLeave(self, why: str) -> None:
        """
        The connection has ended: it leaves the server, if it had joined.

        @param why: how it ended, for the log.
        """
        self._heartbeatCancelAuth()
        self.heartbeatAdmitted = False
        if self._heartbeatJoined:
            self._heartbeatJoined = False
            self.heartbeatServer.unregisterConnection(self)
            self._heartbeatLog.info(  # type: ignore[attr-defined]
                "{peer} disconnected: {reason}", peer=_peer(self), reason=why
            )

    def _heartbeatAdmit(self) -> None:
        self.heartbeatAdmitted = True
        self.heartbeatConnectionAdmitted()

    def _heartbeatAuthExpired(self) -> None:
        self._heartbeatAuthCall = None
        self._heartbeatUnauthorized("{peer} did not authenticate within {timeout}s")

    def _heartbeatUnauthorized(self, message: str) -> None:
        self._heartbeatLog.warn(  # type: ignore[attr-defined]
            message, peer=_peer(self), timeout=self.heartbeatServer.authTimeout
        )
        self.heartbeatRefuse(UNAUTHORIZED)

    def _heartbeatCancelAuth(self) -> None:
        call = self._heartbeatAuthCall
        if call is not None:
            self._heartbeatAuthCall = None
            if call.active():
                call.cancel()

    # Counting

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
    heartbeatInterval = _FactorySetting()  # type: ignore[assignment]
    heartbeatTimeout = _FactorySetting()  # type: ignore[assignment]
    maxLineLength = _perLineSetting("maxLineLength")  # type: ignore[assignment]
    lineTimeout = _perLineSetting("lineTimeout")  # type: ignore[assignment]
    maxWriteBuffer = _perLineSetting("maxWriteBuffer")  # type: ignore[assignment]
    _lastPingAt: Optional[float]
    _pingStrikes: int
    _connectionState = {"_lastPingAt": None, "_pingStrikes": 0}

    def connectionMade(self) -> None:
        if not self.heartbeatJoin():
            # A refused connection gets no heartbeat: it only hears why.
            return
        super().connectionMade()

    def connectionLost(self, reason: Failure) -> None:
        self.heartbeatLeave(reason.getErrorMessage())
        super().connectionLost(reason)

    def lineReceived(self, line: bytes) -> None:
        if self.heartbeatAdmitted:
            super().lineReceived(line)
        else:
            self.heartbeatAuthenticate(line[:-1] if line[-1:] == b"\r" else line)

    def heartbeatRefuse(self, reason: bytes) -> None:
        self.closeWithError(reason, quiet=True)

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
