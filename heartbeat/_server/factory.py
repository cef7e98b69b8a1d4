"""
The ready server's factory: it tracks, caps and summarises its connections,
whatever their framing.
"""

from __future__ import annotations

from collections import OrderedDict
from itertools import chain
from typing import Any, Iterable, List, Optional, Set, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._cluster.interface import Cluster, ClusterUnavailable
from .._cluster.local import LocalCluster
from .._core.protocol import default_clock, peer_name
from .._session.store import SessionStore
from .admission import CountedByServer
from .expiry import TokenExpiries
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
    @ivar jwtVerifier: when set (a L{heartbeat._server.tokens.TokenVerifier}),
        the first line of every connection must be C{auth <jwt>} with a
        token it accepts, whose C{sub} is the connection's name; the
        connection is closed with C{error token expired} at the token's
        expiry unless it sends a fresh token first.  Exclusive with
        L{authToken}.
    @ivar tokenExpiries: when each connection's token expires, with one
        timer for them all; C{None} without L{jwtVerifier}.
    @ivar tcpKeepalive: also turn on kernel keepalive and TCP_USER_TIMEOUT
        matched to the heartbeat (see L{heartbeat._server.tcp}).
    @ivar cluster: presence and routing across the server's nodes (a
        L{LocalCluster} of this process alone unless one is given).
    @ivar sessions: the sessions of the clients that asked to resume (see
        L{heartbeat._session}), or C{None} when the server offers none
        (C{resumeWindow} 0).
    @ivar handshakeWait: seconds an admitted connection has to send its
        handshake (and name itself) before it enters presence under its
        key; C{0}: it enters at once, and cannot be named.
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
    handshakeWait = 2.0

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
        cluster: Optional[Cluster] = None,
        heartbeatPongTimeout: Optional[float] = 5.0,
        jwtVerifier: Optional[Any] = None,
        resumeWindow: float = 120.0,
        resumeBuffer: int = 10000,
        resumeBufferBytes: int = 1 << 20,
        sessions: Optional[SessionStore] = None,
    ) -> None:
        """
        @param resumeWindow: seconds a client's session lives after its
            last connection is lost; C{0}: the server offers no sessions.
        @param resumeBuffer: lines a session keeps for its client until it
            has acknowledged them; one more ends the session.
        @param resumeBufferBytes: the same bound, in bytes.
        @param sessions: where sessions live (L{SessionStore}, in memory,
            unless given one on Redis); the three above are its settings.
        """
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
        if authToken is not None and jwtVerifier is not None:
            raise ValueError("a server takes a shared authToken or a jwtVerifier, not both")
        self.jwtVerifier = jwtVerifier
        self.tokenExpiries = (
            TokenExpiries(self.clock) if jwtVerifier is not None else None
        )
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
        # The connections admitted and not yet in presence, with the time
        # their wait ends and what was broadcast meanwhile, in the order
        # they were admitted: each leaves it as it settles or closes, so
        # that none is held for its wait.
        self._awaitingHandshake: "OrderedDict[CountedByServer, _Unsettled]" = (
            OrderedDict()
        )
        self._handshakeCall: Optional[IDelayedCall] = None
        self.cluster = cluster if cluster is not None else LocalCluster()
        self.cluster.attach(self)
        if sessions is None and resumeWindow:
            sessions = SessionStore(
                self.clock, self.cluster, resumeWindow, resumeBuffer, resumeBufferBytes
            )
        self.sessions = sessions

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

    def awaitHandshake(self, protocol: CountedByServer) -> None:
        """
        C{protocol} was just admitted: it enters presence at its first
        message, or once L{handshakeWait} is over.  One timer serves every
        connection waiting, in the order they were admitted.
        """
        if not self.handshakeWait:
            protocol.heartbeatEnterPresence()
            return
        self._awaitingHandshake[protocol] = _Unsettled(
            self.clock.seconds() + self.handshakeWait
        )
        if self._handshakeCall is None:
            self._handshakeCall = self.clock.callLater(
                self.handshakeWait, self._handshakeWaitOver
            )

    def handshakeSettled(self, protocol: CountedByServer) -> List[Tuple[bytes, Optional[bool]]]:
        """
        C{protocol}, admitted, has entered presence, or is gone before it
        did: it waits no more, and once none is left waiting, the timer
        goes.

        @return: what was broadcast while it waited, C{(line, isBinary)}
            in order, for it to send now that it hears broadcasts.
        """
        waiting = self._awaitingHandshake
        unsettled = waiting.pop(protocol, None)
        if not waiting:
            self._cancelHandshakeCall()
        return [] if unsettled is None else unsettled.held

    def holdBroadcast(
        self, protocol: CountedByServer, line: bytes, isBinary: Optional[bool]
    ) -> bool:
        """
        Keep a broadcast for C{protocol} until its presence is settled (see
        L{handshakeSettled}).

        @return: C{False} when that would hold more than its write cap
            (C{maxWriteBuffer}) for it: it should be dropped.
        """
        unsettled = self._awaitingHandshake.get(protocol)
        if unsettled is None:
            # Not waiting (so in presence, or on its way out): nothing to
            # hold it for.
            return True
        unsettled.size += len(line) + 1
        limit = protocol.maxWriteBuffer  # type: ignore[attr-defined]
        if limit is not None and unsettled.size > limit:
            return False
        unsettled.held.append((line, isBinary))
        return True

    def _cancelHandshakeCall(self) -> None:
        call, self._handshakeCall = self._handshakeCall, None
        if call is not None and call.active():
            call.cancel()

    def _handshakeWaitOver(self) -> None:
        self._handshakeCall = None
        waiting = self._awaitingHandshake
        now = self.clock.seconds()
        while waiting:
            protocol, unsettled = next(iter(waiting.items()))
            deadline = unsettled.deadline
            if deadline > now:
                self._handshakeCall = self.clock.callLater(
                    deadline - now, self._handshakeWaitOver
                )
                return
            # Leaves the wait through handshakeSettled.
            protocol.heartbeatEnterPresence()

    # The cluster's side

    def clusterMembers(self) -> Iterable[CountedByServer]:
        """
        The live connections, for the cluster to deliver to: those without
        a session, and every session, whether a connection carries it now
        or its client is reconnecting.
        """
        sessions = self.sessions
        if sessions is None or not sessions.sessions:
            return self.connections
        return chain(
            (c for c in self.connections if c._heartbeatSession is None),
            sessions.sessions.values(),
        )

    def presenceJoined(self, name: str, node: str) -> None:
        """
        A connection of C{name} entered presence on C{node}, anywhere in
        the cluster (one call for each connection); override to act on it.
        """

    def presenceLeft(self, name: str, node: str, reason: str) -> None:
        """
        A connection of C{name} left presence on C{node}: C{reason} is
        C{"closed"}, C{"timeout"} (its heartbeat), C{"node died"} or, for a
        client's session, C{"expired"} (it did not come back within the
        resume window).
        Override to act on it; L{isOnline} tells whether C{name} has
        another connection.
        """

    # Presence and routing, for the application

    def isOnline(self, name: str) -> Deferred:
        """
        A L{Deferred} firing with whether C{name} has a connection anywhere
        in the cluster.
        """
        return self.cluster.isOnline(name)

    def connectionsOf(self, name: str) -> Deferred:
        """
        A L{Deferred} firing with the connections of C{name}: a list of
        C{(node, connection, since)} named tuples.
        """
        return self.cluster.connectionsOf(name)

    def onlineCount(self) -> Deferred:
        """
        A L{Deferred} firing with how many names are present in the
        cluster (a connection without a name counts once, under its key).
        """
        return self.cluster.onlineCount()

    def onlineNames(self, after: Optional[str] = None, count: int = 100) -> Deferred:
        """
        A L{Deferred} firing with a page of present names in byte order:
        at most C{count}, each after C{after}; pass a page's last name to
        get the next page.
        """
        return self.cluster.onlineNames(after, count)

    def sendTo(self, name: str, line: bytes, isBinary: Optional[bool] = None) -> Deferred:
        """
        Send an application line to every connection of C{name}, wherever
        in the cluster it is.

        @return: a L{Deferred} firing with how many connections it was
            handed to: this server's, and those presence records on the
            other nodes that received it (a dead node receives nothing and
            counts none; a connection that ended a moment before may still
            count); failing with L{ClusterUnavailable} when other nodes
            hold the name and could not be reached.
        @raise ValueError: C{line} holds a newline, which line peers could
            not receive whole; nobody gets any of it.
        """
        return self.cluster.sendTo(name, line, isBinary)

    def disconnect(self, name: str) -> Deferred:
        """
        Close every connection of C{name} in the cluster with C{error
        disconnected by server}.

        @return: a L{Deferred} firing with how many were told.
        """
        return self.cluster.disconnect(name)

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
    ) -> Deferred:
        """
        Send an application line to every admitted connection of the
        cluster but C{exclude} (one that has not authenticated yet hears
        nothing).  This server's connections get it at once.

        @param isBinary: how WebSocket connections get it: C{True} as a
            binary message (it came as one), else as the bytes allow.
        @return: a L{Deferred} firing with how many of this server's
            connections it was sent to, once the other nodes have it too;
            failing with L{ClusterUnavailable} when they could not be
            reached.
        @raise ValueError: C{line} holds a newline, which line peers could
            not receive whole; nobody gets any of it.
        """
        return self.cluster.broadcast(line, exclude, isBinary)

    def relay(
        self, line: bytes, exclude: object = None, isBinary: Optional[bool] = None
    ) -> None:
        """
        L{broadcast} for C{--broadcast}'s connections: the cluster has
        already logged and counted a failure to reach the other nodes.
        """
        self.broadcast(line, exclude, isBinary).addErrback(_reported)

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
        self._cancelHandshakeCall()
        self._awaitingHandshake.clear()
        if self.sessions is not None:
            self.sessions.stop()

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


def _reported(failure: Failure) -> None:
    failure.trap(ClusterUnavailable)


class _Unsettled:
    """
    A connection waiting for its presence to be settled: when its wait
    ends, and the broadcasts held for it meanwhile (their bytes counted).
    """

    __slots__ = ("deadline", "held", "size")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.held: List[Tuple[bytes, Optional[bool]]] = []
        self.size = 0
