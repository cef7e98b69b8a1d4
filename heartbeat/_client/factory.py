"""
The reconnecting client: backoff that spreads a crowd, a send buffer that
bridges outages, and a server's refusal taken at its word.
"""

from __future__ import annotations

import random as _random
from collections import deque
from typing import Callable, Deque, Dict, List, Optional, Tuple, Union

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import (
    IPushProducer,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import ReconnectingClientFactory
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._core.backoff import backoff_delay
from .._core.protocol import default_clock, peer_name
from .._framing.line import SERVER_FULL, TOKEN_EXPIRED, UNAUTHORIZED
from .._framing.resume import parse_count
from .._session.client import ClientSession
from .._session.session import (
    MISMATCH,
    UNKNOWN,
    AckScheduler,
    SessionError,
    payload_of,
)
from .connector import EndpointConnector
from .protocol import HeartbeatClientProtocol
from .timing import (
    DEFAULT_INTERVAL,
    DEFAULT_LINE_LENGTH,
    DEFAULT_PONG_TIMEOUT,
    DEFAULT_TIMEOUT,
)


class ServerRefused(Exception):
    """
    The server closed the connection with C{error <reason>}, and trying
    again would not help (C{unauthorized}, or C{token expired} when the
    factory has no way to make a fresh token).
    """

    def __init__(self, reason: bytes) -> None:
        super().__init__(reason.decode("ascii", "replace"))
        self.reason = reason


class BufferFull(Exception):
    """
    A message was sent while disconnected, and the send buffer is full.
    """


class ClientStopped(Exception):
    """
    The factory has stopped trying: nothing sent now could be delivered.
    """


# Why a session was lost, when the server answered without one.
UNSUPPORTED = "unsupported"

class HeartbeatClientFactory(ReconnectingClientFactory):
    """
    Keeps one heartbeat connection up, reconnecting after any loss.

    Connect it with L{connectEndpoint} (any client endpoint) or a classic
    C{reactor.connectTCP}.  Unlike the base class, the delays are bounded
    by L{maxDelay} (30 s), the first retry waits at most L{initialDelay},
    jitter is full (uniform in C{[0, cap]}), and the backoff resets itself
    once a connection has proven healthy (the server answered a ping or
    sent a line), not merely at TCP connect.

    @ivar maxBufferedMessages: how many messages L{sendMessage} keeps:
        while disconnected and, with a session, until the server has
        acknowledged them; one more raises L{BufferFull}.
    @ivar resume: ask the server for a session (see L{heartbeat._session}),
        so that every line reaches the other side once, in order, across
        reconnections; a server that offers none is served as before.
    @ivar fullJitter: C{False} waits the whole cap each time (for tests
        that compare a crowd's return with and without jitter).
    @ivar authToken: sent as C{auth <token>}, the first line of every
        connection, for a server that requires it: bytes, or a callable
        returning them, called for each connection and, when the server
        says when its token expires, for a fresh one before then (see
        L{heartbeat._client.refresh}).
    @ivar name: the name this client gives itself in its handshake, by
        which the server's presence knows it; C{None}: none.
    @ivar heartbeatInterval: seconds of the server's silence before a ping.
    @ivar heartbeatTimeout: seconds of the server's silence before it is
        dropped as dead.
    @ivar heartbeatPongTimeout: the least pong deadline (see
        L{heartbeat.HeartbeatProtocol}).
    @ivar maxLineLength: the longest line taken from the server.

    Each connection takes these four from the server's answer to its
    handshake, so that an operator sets them in one place; until the answer
    (and with a server that gives none) the values here apply.  A setting
    the application sets itself, on the factory or in a subclass, is its
    own and is kept whatever the server says.
    """

    protocol = HeartbeatClientProtocol
    noisy = False
    log = Logger()

    initialDelay = 1.0
    factor = 2.0
    maxDelay = 30.0
    fullJitter = True
    maxBufferedMessages = 1000
    heartbeatInterval: Optional[float] = DEFAULT_INTERVAL
    heartbeatTimeout: Optional[float] = DEFAULT_TIMEOUT
    heartbeatPongTimeout: Optional[float] = DEFAULT_PONG_TIMEOUT
    maxLineLength: int = DEFAULT_LINE_LENGTH
    authToken: Union[None, bytes, Callable[[], bytes]] = None
    name: Optional[str] = None
    resume = True

    def __init__(
        self,
        clock: Optional[IReactorTime] = None,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.clock = clock if clock is not None else default_clock()
        self._random = random
        self._buffer: Deque[Union[bytes, Tuple[bytes, bool]]] = deque()
        self._current: Optional[HeartbeatClientProtocol] = None
        self._serverError: Optional[bytes] = None
        self._connectedWaiters: List[Deferred] = []
        self._stoppedWaiters: List[Deferred] = []
        self._stopReason: Optional[Failure] = None
        self._stoppedCleanly = False
        self._session: Optional[ClientSession] = None
        self._acks = AckScheduler(self.clock)
        self._producer: Optional[IPushProducer] = None
        self._producerPaused = False

    # What applications call

    @property
    def connectedProtocol(self) -> Optional[HeartbeatClientProtocol]:
        """
        The current connection once it has proven healthy, else C{None}.
        """
        current = self._current
        return current if current is not None and current._healthy else None

    @property
    def bufferedMessages(self) -> int:
        """
        How many messages are kept: waiting for the next healthy connection
        and, with a session, not yet acknowledged by the server.
        """
        session = self._session
        kept = 0 if session is None else session.unacknowledged
        return kept + len(self._buffer)

    @property
    def sessionId(self) -> Optional[str]:
        """
        The id of the client's session with the server, or C{None} while it
        has none (before its first connection, or from a server that
        offers none).
        """
        session = self._session
        return None if session is None else session.sid

    def connectEndpoint(
        self, endpoint: IStreamClientEndpoint, description: str = ""
    ) -> EndpointConnector:
        """
        Start connecting through C{endpoint}, and reconnect through it.
        """
        connector = EndpointConnector(endpoint, self, description)
        self.connector = connector
        connector.connect()
        return connector

    def sendMessage(self, line: bytes) -> None:
        """
        Send an application line now, or after the next reconnection.

        Lines sent while disconnected (or before a new connection has proven
        healthy) are kept in order and flushed once it has.  With a session
        each line is also kept until the server acknowledges it, and sent
        again after a reconnection if it has not.

        @raise BufferFull: L{maxBufferedMessages} lines are already kept
            (disconnected, or with a session unacknowledged).
        @raise ClientStopped: the factory has stopped trying.
        @raise ValueError: C{line} holds a newline.
        """
        if b"\n" in line:
            raise ValueError("an application line must not contain b'\\n'")
        self._send(line, None)

    def _send(self, payload: bytes, isBinary: Optional[bool]) -> None:
        session = self._session
        if session is None:
            protocol = self.connectedProtocol
            if protocol is not None:
                protocol.sendMessage(payload, isBinary)
                return
        if not self.continueTrying:
            raise ClientStopped("the client has stopped trying to connect")
        kept = self.bufferedMessages
        if kept >= self.maxBufferedMessages:
            raise BufferFull(
                f"{kept} messages already wait for a connection"
                if session is None
                else f"{kept} messages already wait for the server's acknowledgement"
            )
        if session is None:
            self._buffer.append(payload if isBinary is None else (payload, isBinary))
        else:
            session.send(payload, isBinary)
        if kept + 1 >= self.maxBufferedMessages:
            self._pauseProducer()

    # Flow control: a producer of lines (standard input, say) is paused
    # while the buffer is full, and resumed once there is room.

    def registerProducer(self, producer: IPushProducer, streaming: bool = True) -> None:
        """
        Pause C{producer} whenever L{maxBufferedMessages} lines are kept, and
        resume it once there is room, so that it never meets L{BufferFull}.
        """
        self._producer = producer
        self._producerPaused = False
        if self.bufferedMessages >= self.maxBufferedMessages:
            self._pauseProducer()

    def unregisterProducer(self) -> None:
        self._producer = None

    def _pauseProducer(self) -> None:
        if self._producer is not None and not self._producerPaused:
            self._producerPaused = True
            self._producer.pauseProducing()

    def roomMade(self) -> None:
        """
        Kept lines went (acknowledged, or sent): a paused producer may go on.
        """
        if (
            self._producerPaused
            and self._producer is not None
            and self.bufferedMessages < self.maxBufferedMessages
        ):
            self._producerPaused = False
            self._producer.resumeProducing()

    def whenConnected(self) -> Deferred:
        """
        A L{Deferred} that fires with the healthy connection: at once if
        there is one, else at the next (re)connection.  It fails with
        L{ServerRefused} or L{ClientStopped} if the factory gives up first.
        """
        protocol = self.connectedProtocol
        if protocol is not None:
            return succeed(protocol)
        return self.nextConnection()

    def nextConnection(self) -> Deferred:
        """
        A L{Deferred} that fires with the next connection to prove healthy,
        never the current one; it fails as L{whenConnected} does.

        Call it from its own callback to hear of every reconnection::

            def subscribe(protocol):
                protocol.sendMessage(b"subscribe news")
                factory.nextConnection().addCallback(subscribe)

            factory.whenConnected().addCallback(subscribe)
        """
        if self._stopReason is not None:
            return fail(self._stopReason)
        waiter: Deferred = Deferred()
        self._connectedWaiters.append(waiter)
        return waiter

    def whenStopped(self) -> Deferred:
        """
        A L{Deferred} that fires once the factory has stopped for good and
        its connection is closed: with C{None} after L{stopTrying}, or
        failing with L{ServerRefused} when the server refused it.
        """
        waiter: Deferred = Deferred()
        self._stoppedWaiters.append(waiter)
        self._fireStopped()
        return waiter

    def stopTrying(self) -> None:
        """
        Stop reconnecting and close the current connection, if any.
        """
        self._giveUp(Failure(ClientStopped("stopTrying() was called")), clean=True)

    def handshakeFields(self) -> Dict[str, Optional[str]]:
        """
        What each connection asks for in its handshake; override (calling
        up) to ask for more.
        """
        fields: Dict[str, Optional[str]] = {}
        if self.name is not None:
            fields["name"] = self.name
        if self.resume:
            session = self._session
            if session is None:
                fields["resume"] = None
            else:
                fields["resume"] = session.sid
                fields["received"] = str(session.received)
        return fields

    def sessionLost(self, reason: str, inDoubt: List[bytes]) -> None:
        """
        The server could not resume the session: lines it sent while the
        client was away may be missing, and C{inDoubt}, the lines sent that
        it had not acknowledged, may or may not have reached it.  A new
        session has started; the lines sent meanwhile that had never left
        the client are sent in it.  Override to act on it (by default it is
        logged).

        @param reason: the server's (C{expired}, C{overflow}, C{unknown},
            C{mismatch}, C{closed}), or C{unsupported} when the server
            answered without a session.
        """

    # What the protocol and connector call

    def clientConnectionMade(self, protocol: HeartbeatClientProtocol) -> None:
        self._current = protocol
        self._serverError = None
        self.log.info("connected to {peer}", peer=peer_name(protocol))

    def clientConnectionHealthy(self, protocol: HeartbeatClientProtocol) -> None:
        self.resetDelay()
        if self.resume:
            self._openSession(protocol)
        buffered, self._buffer = self._buffer, deque()
        if buffered:
            self.log.info(
                "sending {count} buffered {messages}",
                count=len(buffered),
                messages="message" if len(buffered) == 1 else "messages",
            )
        session = self._session
        for kept in buffered:
            payload, isBinary = payload_of(kept)
            if session is None:
                protocol.sendMessage(payload, isBinary)
            else:
                session.send(payload, isBinary)
        self.roomMade()
        waiters, self._connectedWaiters = self._connectedWaiters, []
        for waiter in waiters:
            waiter.callback(protocol)

    def _openSession(self, protocol: HeartbeatClientProtocol) -> None:
        """
        Take the session the server's answer gives: resume ours (its lines
        the server has not received go again), or tell that it is lost and
        start the new one.
        """
        answer = protocol.heartbeatServerHandshake
        granted = answer.get("session") if answer is not None else None
        session = self._session
        if granted is None:
            if session is not None:
                self._loseSession(UNSUPPORTED)
            return
        received = parse_count((answer.get("received") or "").encode())
        if session is not None and granted == session.sid and received is not None:
            try:
                session.attach(protocol, received)
            except SessionError as e:
                # Its state is not ours: this connection cannot carry it.
                self._loseSession(MISMATCH)
                protocol.sessionBroken(str(e))
                return
            protocol._heartbeatSession = session
            replayed = session.unacknowledged
            session.replay()
            self.log.info("resumed the session: {replayed} lines sent again",
                          replayed=replayed)
            return
        if session is not None:
            self._loseSession(answer.get("lost") or UNKNOWN)
        if received != 0:
            protocol.sessionBroken(f"a new session counts {received!r} lines, not 0")
            return
        self._session = session = ClientSession(granted, self._acks, self)
        session.attach(protocol, 0)
        protocol._heartbeatSession = session

    def _loseSession(self, reason: str) -> None:
        session, self._session = self._session, None
        assert session is not None
        inDoubt = [payload_of(kept)[0] for kept in session.inDoubt()]
        # Lines that never left the client go first in the new session.
        self._buffer.extendleft(reversed(session.unwritten()))
        self.log.warn(
            "the server lost the session ({reason}): {count} lines sent may "
            "not have reached it, and lines it sent may be missing",
            reason=reason,
            count=len(inDoubt),
        )
        self.sessionLost(reason, inDoubt)

    def serverClosedWithError(self, reason: bytes) -> None:
        self._serverError = reason

    def clientConnectionLost(self, connector, reason: Failure) -> None:
        current, self._current = self._current, None
        session = self._session
        if session is not None and current is not None:
            session.detach(current)
        serverError, self._serverError = self._serverError, None
        if serverError is not None:
            self.log.warn(
                "server closed the connection: {reason}",
                reason=serverError.decode("ascii", "replace"),
            )
            # Trying again would not help, nor would the same token again
            # once it expired.
            if serverError == UNAUTHORIZED or (
                serverError == TOKEN_EXPIRED and not callable(self.authToken)
            ):
                self._giveUp(Failure(ServerRefused(serverError)))
                return
        elif self._stoppedCleanly:
            # Our own close, often cut short by the reactor's shutdown: its
            # failure is not the reason.
            self.log.info("connection closed: the client stopped")
        else:
            self.log.info(
                "connection lost: {reason}", reason=reason.getErrorMessage()
            )
        self._retryFrom(connector, atCap=serverError == SERVER_FULL)

    def clientConnectionFailed(self, connector, reason: Failure) -> None:
        self.log.info(
            "connection failed: {reason}", reason=reason.getErrorMessage()
        )
        self._retryFrom(connector)

    # Backoff

    def resetDelay(self) -> None:
        """
        Start the backoff over; unlike the base class, this never undoes
        L{stopTrying}.
        """
        self.delay = self.initialDelay
        self.retries = 0

    def retry(self, connector=None) -> None:
        self._retryFrom(connector)

    def _retryFrom(self, connector, atCap: bool = False) -> None:
        if connector is not None:
            self.connector = connector
        if not self.continueTrying:
            self._fireStopped()
            return
        if self.connector is None:
            raise ValueError("no connector to retry")
        if self.maxRetries is not None and self.retries >= self.maxRetries:
            self.log.warn("giving up after {retries} retries", retries=self.retries)
            self._giveUp(Failure(ClientStopped("maxRetries reached")))
            return
        if atCap:
            # A full server needs time, not a crowd: wait half to all of
            # the cap, still jittered so the crowd does not return at once.
            self.delay = self.maxDelay * (0.5 + 0.5 * self._random())
        else:
            self.delay = backoff_delay(
                self.retries,
                self.initialDelay,
                self.factor,
                self.maxDelay,
                self.fullJitter,
                self._random,
            )
        self.retries += 1
        self.log.info("reconnecting in {delay:.2f}s", delay=self.delay)
        self._callID = self.clock.callLater(self.delay, self._reconnect)

    def _reconnect(self) -> None:
        self._callID = None
        self.connector.connect()

    # Stopping

    def _giveUp(self, reason: Failure, clean: bool = False) -> None:
        if self._stopReason is None:
            self._stopReason = reason
            self._stoppedCleanly = clean
        ReconnectingClientFactory.stopTrying(self)
        waiters, self._connectedWaiters = self._connectedWaiters, []
        for waiter in waiters:
            waiter.errback(reason)
        current = self._current
        if current is not None:
            if self._session is not None and self._session.connection is current:
                # The session is over: the server need not keep it.
                current.sessionEnd()
            current.transport.loseConnection()
        else:
            self._fireStopped()
        self._acks.stop()

    def _fireStopped(self) -> None:
        reason = self._stopReason
        if reason is None or self._current is not None:
            return
        waiters, self._stoppedWaiters = self._stoppedWaiters, []
        for waiter in waiters:
            if self._stoppedCleanly:
                waiter.callback(None)
            else:
                waiter.errback(reason)
