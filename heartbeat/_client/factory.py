"""
The reconnecting client: backoff that spreads a crowd, a send buffer that
bridges outages, and a server's refusal taken at its word.
"""

from __future__ import annotations

import random as _random
from collections import deque
from typing import Callable, Deque, Dict, List, Optional, Union

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import ReconnectingClientFactory
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._core.backoff import backoff_delay
from .._core.protocol import default_clock, peer_name
from .._framing.line import SERVER_FULL, TOKEN_EXPIRED, UNAUTHORIZED
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

class HeartbeatClientFactory(ReconnectingClientFactory):
    """
    Keeps one heartbeat connection up, reconnecting after any loss.

    Connect it with L{connectEndpoint} (any client endpoint) or a classic
    C{reactor.connectTCP}.  Unlike the base class, the delays are bounded
    by L{maxDelay} (30 s), the first retry waits at most L{initialDelay},
    jitter is full (uniform in C{[0, cap]}), and the backoff resets itself
    once a connection has proven healthy (the server answered a ping or
    sent a line), not merely at TCP connect.

    @ivar maxBufferedMessages: how many messages L{sendMessage} keeps while
        disconnected; one more raises L{BufferFull}.
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

    def __init__(
        self,
        clock: Optional[IReactorTime] = None,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.clock = clock if clock is not None else default_clock()
        self._random = random
        self._buffer: Deque[bytes] = deque()
        self._current: Optional[HeartbeatClientProtocol] = None
        self._serverError: Optional[bytes] = None
        self._connectedWaiters: List[Deferred] = []
        self._stoppedWaiters: List[Deferred] = []
        self._stopReason: Optional[Failure] = None
        self._stoppedCleanly = False

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
        How many messages wait for the next healthy connection.
        """
        return len(self._buffer)

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
        healthy) are kept in order and flushed once it has.

        @raise BufferFull: disconnected, and L{maxBufferedMessages} lines
            already wait.
        @raise ClientStopped: the factory has stopped trying.
        @raise ValueError: C{line} holds a newline.
        """
        if b"\n" in line:
            raise ValueError("an application line must not contain b'\\n'")
        protocol = self.connectedProtocol
        if protocol is not None:
            protocol.sendMessage(line)
        elif not self.continueTrying:
            raise ClientStopped("the client has stopped trying to connect")
        elif len(self._buffer) >= self.maxBufferedMessages:
            raise BufferFull(
                f"{len(self._buffer)} messages already wait for a connection"
            )
        else:
            self._buffer.append(line)

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
        return {} if self.name is None else {"name": self.name}

    # What the protocol and connector call

    def clientConnectionMade(self, protocol: HeartbeatClientProtocol) -> None:
        self._current = protocol
        self._serverError = None
        self.log.info("connected to {peer}", peer=peer_name(protocol))

    def clientConnectionHealthy(self, protocol: HeartbeatClientProtocol) -> None:
        self.resetDelay()
        buffered, self._buffer = self._buffer, deque()
        if buffered:
            self.log.info(
                "sending {count} buffered {messages}",
                count=len(buffered),
                messages="message" if len(buffered) == 1 else "messages",
            )
        for line in buffered:
            protocol.sendMessage(line)
        waiters, self._connectedWaiters = self._connectedWaiters, []
        for waiter in waiters:
            waiter.callback(protocol)

    def serverClosedWithError(self, reason: bytes) -> None:
        self._serverError = reason

    def clientConnectionLost(self, connector, reason: Failure) -> None:
        self._current = None
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
        if self._current is not None:
            self._current.transport.loseConnection()
        else:
            self._fireStopped()

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
