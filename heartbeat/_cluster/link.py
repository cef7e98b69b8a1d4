"""
The node's link to Redis: two connections (one for commands, one for the
channels it listens to), kept up for as long as the node runs, with a
timeout on every command.

Importing this module imports C{txredisapi}, which imports the global
reactor: it is imported only once twistd (or the application) has
installed the reactor it wants.

Commands go over one connection, so Redis runs them in the order they
were sent: the lines one node publishes reach every other node in that
order.  A command that gets no answer within the timeout (a Redis that is
stopped or cut off hangs rather than fails) aborts its connection; losing
either connection drops the other too, so the link is up or down as a
whole, and every time it comes back it is subscribed afresh.  While it is
down, commands fail at once with L{ClusterUnavailable}: nothing waits
for Redis, and nothing queues.

Each connection is made ready here (C{AUTH}, then C{SELECT} for the
command connection), not by C{txredisapi}'s pool factory: the link keeps
one connection of each kind and decides itself when to try again and
what to say, so that a Redis that refuses this node (a wrong password, a
database it does not have) is said once, and one that does not answer is
told from one that refuses.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import txredisapi
from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._core.backoff import backoff_delay
from .address import RedisAddress
from .interface import ClusterUnavailable

# How often a link that stays down says so again.
DOWN_LOG_INTERVAL = 60.0


class RedisLink:
    """
    Keeps a node connected to Redis and subscribed to its channels.

    @ivar timeout: seconds a command (or a connection attempt) may take.
    @ivar keepalive: seconds between pings of the subscribing connection
        while the link is up; that connection otherwise only listens, and
        would never notice a Redis that hangs.  C{None}: no pings.
    @ivar maxRetryDelay: the longest wait between connection attempts.
    @ivar onUp: called each time the link comes up, subscribed.
    @ivar onDown: called each time it goes down.
    @ivar onMessage: called with C{(channel, message)}, both bytes, for
        each message published on a channel the link listens to.
    """

    log = Logger()
    maxRetryDelay = 1.0

    def __init__(
        self,
        address: RedisAddress,
        channels: Sequence[bytes],
        onMessage: Callable[[bytes, bytes], None],
        onUp: Callable[[], None],
        onDown: Callable[[], None],
        timeout: float,
        reactor,
        keepalive: Optional[float] = None,
    ) -> None:
        self.address = address
        self.channels = list(channels)
        self.onMessage = onMessage
        self.onUp = onUp
        self.onDown = onDown
        self.timeout = timeout
        self.keepalive = keepalive
        self._reactor = reactor
        self._pings: Optional[LoopingCall] = None
        self._command: Optional[txredisapi.BaseRedisProtocol] = None
        self._subscriber: Optional[_Subscriber] = None
        self._subscribed = False
        self._up = False
        self._slots: List[_Slot] = []
        self._failures = 0
        self._downSince: Optional[float] = None
        self._lastReason = "not connected yet"
        self._downCall = None
        # The timer on SUBSCRIBE's answer (txredisapi gives it none).
        self._late = None
        self._stopped = False

    @property
    def up(self) -> bool:
        return self._up

    def start(self) -> None:
        """
        Start connecting, and keep connecting until L{stop}.
        """
        self._downSince = self._reactor.seconds()
        self._scheduleDownLog(self.timeout)
        self._slots = [
            _Slot(self, _Factory(self, txredisapi.RedisProtocol)),
            _Slot(self, _Factory(self, _Subscriber)),
        ]
        for slot in self._slots:
            slot.connect()

    def stop(self) -> Deferred:
        """
        Close both connections and stop connecting.
        """
        self._stopped = True
        self._cancelDownLog()
        self._cancelLate()
        self._stopPings()
        self._up = False
        return gatherResults([slot.stop() for slot in self._slots], consumeErrors=True)

    def call(self, method: str, *args, **kwargs) -> Deferred:
        """
        Run a command (a method of C{txredisapi}'s protocol) on the
        command connection.

        @return: a L{Deferred} firing with the reply, or failing with
            L{ClusterUnavailable} when the link is down or the command
            fails or times out, or with whatever the Redis client raised
            (an argument it cannot encode): never raising, so that no
            caller (a looping call) dies of it.
        """
        connection = self._command
        if not self._up or connection is None:
            return fail(ClusterUnavailable(self._unavailable()))
        try:
            result = getattr(connection, method)(*args, **kwargs)
        except txredisapi.ConnectionError as e:
            return fail(ClusterUnavailable(f"Redis at {self.address.display}: {e}"))
        except Exception:
            return fail()
        return result.addErrback(self._failed)

    def script(self, source: str, keys: Sequence, args: Sequence) -> Deferred:
        """
        Run a Lua script: by its hash once Redis knows it, else whole.
        """
        return self.call("eval", source, list(keys), list(args))

    def _ping(self) -> None:
        subscriber = self._subscriber
        if subscriber is not None:
            # No answer within the timeout aborts the connection, and the
            # link goes down: nothing more to do with the failure.
            subscriber.execute_command("PING").addErrback(lambda failure: None)

    def _stopPings(self) -> None:
        pings, self._pings = self._pings, None
        if pings is not None and pings.running:
            pings.stop()

    def _failed(self, failure: Failure) -> Failure:
        if failure.check(txredisapi.ResponseError):
            # Redis answered: a bug of ours, or a Redis we cannot use.
            return failure
        return Failure(ClusterUnavailable(
            f"Redis at {self.address.display}: {failure.getErrorMessage()}"))

    def _unavailable(self) -> str:
        return f"Redis at {self.address.display} is unreachable ({self._lastReason})"

    # The connections' side

    def connectionMade(self, connection) -> None:
        """
        A connection to Redis is open: authenticate it and choose its
        database, then put it to use.
        """
        if self._stopped:
            connection.transport.loseConnection()
            return
        address = self.address
        ready: Deferred = succeed(None)
        if address.password is not None:
            ready.addCallback(lambda _: _asked(
                "AUTH", connection.auth(address.password, address.username)))
        if address.db and not isinstance(connection, _Subscriber):
            ready.addCallback(lambda _: _asked("SELECT", connection.select(address.db)))
        ready.addCallbacks(
            lambda _: self._connectionReady(connection),
            lambda failure: self._notReady(connection, failure),
        )

    def _notReady(self, connection, failure: Failure) -> None:
        why = failure.getErrorMessage()
        if failure.check(txredisapi.ResponseError):
            self.refused(why)
        else:
            # No answer (a Redis that hangs), or the connection lost.
            self.connectFailed(why)
        self._drop(connection, why)

    def _connectionReady(self, connection) -> None:
        if self._stopped:
            connection.transport.loseConnection()
            return
        if isinstance(connection, _Subscriber):
            self._subscriber = connection
            self._late = self._reactor.callLater(
                self.timeout, self._drop, connection, "no answer to SUBSCRIBE"
            )

            def answered(result):
                self._cancelLate()
                return result

            connection.subscribe(self.channels).addBoth(answered).addCallbacks(
                lambda _: self._subscriptionReady(connection),
                lambda failure: self._drop(connection, failure.getErrorMessage()),
            )
        else:
            self._command = connection
            self._maybeUp()

    def _subscriptionReady(self, connection) -> None:
        if connection is self._subscriber:
            self._subscribed = True
            self._maybeUp()

    def _cancelLate(self) -> None:
        late, self._late = self._late, None
        if late is not None and late.active():
            late.cancel()

    def _maybeUp(self) -> None:
        if self._stopped or self._up or self._command is None or not self._subscribed:
            return
        self._up = True
        self._failures = 0
        self._cancelDownLog()
        if self.keepalive:
            self._pings = LoopingCall(self._ping)
            self._pings.clock = self._reactor
            self._pings.start(self.keepalive, now=False).addErrback(
                lambda failure: self.log.failure("pinging Redis stopped", failure)
            )
        self.log.info(
            "connected to Redis at {address}", address=self.address.display
        )
        self.onUp()

    def connectionLost(self, connection) -> None:
        if connection is self._command:
            self._command = None
        elif connection is self._subscriber:
            self._subscriber = None
            self._subscribed = False
            self._cancelLate()
        else:
            return
        # The two go down together: the other is closed too, and both come
        # back afresh (subscribed again) when Redis does.
        for other in (self._command, self._subscriber):
            if other is not None and other.transport is not None:
                other.transport.abortConnection()
        if self._up:
            self._up = False
            self._stopPings()
            self._downSince = self._reactor.seconds()
            if not self._stopped:
                self.log.warn(
                    "lost Redis at {address}; serving this node's connections "
                    "only, and reconnecting",
                    address=self.address.display,
                )
                self._scheduleDownLog(DOWN_LOG_INTERVAL)
                self.onDown()

    def _drop(self, connection, why: str) -> None:
        self._lastReason = why
        if connection.transport is not None:
            connection.transport.abortConnection()

    def connectFailed(self, why: str) -> None:
        self._lastReason = why

    def refused(self, why: str) -> None:
        """
        Redis refused the connection (a wrong password, a database it does
        not have): said at once, then every minute with the rest.
        """
        if why != self._lastReason:
            self.log.error(
                "Redis at {address} refused this node: {why}",
                address=self.address.display,
                why=why,
            )
        self._lastReason = why

    def retryDelay(self) -> float:
        """
        How long a connection waits before its next attempt: the longer,
        the more attempts since the link was last up, at most
        L{maxRetryDelay}.
        """
        self._failures += 1
        return backoff_delay(self._failures, 0.05, 2.0, self.maxRetryDelay)

    # Saying that it is down, once and then every minute

    def _scheduleDownLog(self, delay: float) -> None:
        self._cancelDownLog()
        self._downCall = self._reactor.callLater(delay, self._logDown)

    def _cancelDownLog(self) -> None:
        call, self._downCall = self._downCall, None
        if call is not None and call.active():
            call.cancel()

    def _logDown(self) -> None:
        self._downCall = None
        if self._up or self._stopped:
            return
        self.log.warn(
            "cannot reach Redis at {address} for {seconds:.0f}s ({why}): "
            "serving this node's connections only, and retrying",
            address=self.address.display,
            seconds=self._reactor.seconds() - self._downSince,
            why=self._lastReason,
        )
        self._scheduleDownLog(DOWN_LOG_INTERVAL)


def _asked(command: str, reply: Deferred) -> Deferred:
    """
    C{reply} to C{command}, whose refusal says which command was refused.
    """

    def refused(failure: Failure) -> Failure:
        if failure.check(txredisapi.ResponseError):
            return Failure(txredisapi.ResponseError(
                f"{command} refused: {failure.getErrorMessage()}"))
        return failure

    return reply.addErrback(refused)


class _Factory(Factory):
    """
    Builds one connection of the link: bytes in and out, replies within
    the link's timeout on the link's clock.  Not C{txredisapi}'s pool
    factory, which queues every connection it is given for good and logs
    each refusal itself.
    """

    noisy = False

    def __init__(self, link: RedisLink, protocol: type) -> None:
        self.link = link
        self.protocol = protocol

    def buildProtocol(self, addr):
        connection = self.protocol(
            None, replyTimeout=self.link.timeout, convertNumbers=False
        )
        connection.factory = self
        connection.callLater = self.link._reactor.callLater
        return connection


class _Subscriber(txredisapi.SubscriberProtocol):
    def messageReceived(self, pattern, channel: bytes, message: bytes) -> None:
        # Raised into txredisapi, an error would cut the subscription and
        # lose the rest of what Redis sent in that read.
        try:
            self.factory.link.onMessage(channel, message)
        except Exception:
            RedisLink.log.failure(
                "handling a message on {channel!r} raised", channel=channel
            )


class _Slot:
    """
    One connection of the link: connected, and connected again after each
    loss, on the link's schedule.
    """

    def __init__(self, link: RedisLink, factory: _Factory) -> None:
        self.link = link
        self.factory = factory
        self.endpoint = link.address.endpoint(link._reactor, link.timeout)
        self.protocol = None
        self._retry = None
        self._attempt: Optional[Deferred] = None

    def connect(self) -> None:
        self._retry = None
        self._attempt = self.endpoint.connect(self.factory)
        self._attempt.addCallbacks(self._connected, self._failed)

    def _connected(self, protocol) -> None:
        self._attempt = None
        self.protocol = protocol
        protocol.whenDisconnected().addCallback(self._lost)
        self.link.connectionMade(protocol)

    def _failed(self, failure: Failure) -> None:
        self._attempt = None
        self.link.connectFailed(failure.getErrorMessage())
        self._again()

    def _lost(self, protocol) -> None:
        self.protocol = None
        self.link.connectionLost(protocol)
        self._again()

    def _again(self) -> None:
        if not self.link._stopped:
            self._retry = self.link._reactor.callLater(self.link.retryDelay(), self.connect)

    def stop(self) -> Deferred:
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if self._attempt is not None:
            self._attempt.cancel()
        protocol = self.protocol
        if protocol is None or protocol.transport is None:
            return succeed(None)
        gone = protocol.whenDisconnected()
        protocol.transport.loseConnection()
        return gone
