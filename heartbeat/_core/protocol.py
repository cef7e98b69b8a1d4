"""
L{HeartbeatProtocol}: liveness for any Twisted protocol.
"""

from __future__ import annotations

from typing import Optional

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from .wheel import RESOLUTION, Slot, wheel_for

# A ping or deadline this close to due counts as due, so float rounding of a
# slot's time can never make the wheel fire a member again and again.
_EPSILON = 1e-6

# A deadline firing this late means the reactor was blocked (a long
# computation, a stopped process): the peer's data may sit unread.
_BLOCKED = 0.05

# RFC 6298's gains: of the newest sample in the smoothed round-trip time
# (SRTT), and of its distance from it in the round trip's variation (RTTVAR).
_RTT_GAIN = 0.125
_VARIATION_GAIN = 0.25
# The pong deadline is SRTT + 4 x RTTVAR, as TCP's retransmission timeout.
_VARIATION_WEIGHT = 4


# The mixin's per-connection state and its value before it is first set.
_SLOT_DEFAULTS = {
    "_heartbeatClock": None,
    "_heartbeatLastReceived": 0.0,
    "_heartbeatSlot": None,
    # When the latest ping went out, until its pong comes back; and the
    # ping's before it, still unanswered when the latest went out.
    "_heartbeatPingSentAt": None,
    "_heartbeatEarlierPingSentAt": None,
    "_heartbeatPingsSent": 0,
    "_heartbeatRtt": None,
    # Set by the first round-trip sample: the peer answers pings.
    "_heartbeatSmoothedRtt": None,
    "_heartbeatRttVariation": 0.0,
    "_heartbeatGraced": False,
    # The framing's write cap (L{heartbeat._framing.writecap.WriteCap}), if any.
    "_writeCap": None,
}


def default_clock() -> IReactorTime:
    from twisted.internet import reactor

    return reactor  # type: ignore[return-value]


class HeartbeatProtocol:
    """
    Mix in before a protocol class to ping a silent peer and drop a dead one.

    Any bytes received are a sign of life; only received data postpones the
    deadline, never data sent.  After C{heartbeatInterval} seconds of
    silence L{sendHeartbeatPing} is called, and again every interval while
    the silence lasts; after C{heartbeatTimeout} seconds of silence
    L{heartbeatTimedOut} is called and the connection is aborted.

    A peer that has answered one of our pings has shown that it answers:
    from then on a ping it leaves unanswered, with nothing else heard
    either, for the pong deadline (L{heartbeatPongDeadline}: the measured
    round trip plus four times its variation, as TCP's retransmission
    timer, never below C{heartbeatPongTimeout}) means it is dead, however
    much of the timeout is left.  Such a peer has one ping outstanding at a
    time: it is pinged again only once its ping is answered or past that
    deadline, so that round trips longer than the interval are measured
    instead of piling pings onto a slow link.  A peer that has never
    answered keeps the timeout rule alone.

    The framing is the subclass's: it provides L{sendHeartbeatPing}, answers
    the peer's pings in its own format, and calls L{heartbeatPongReceived}
    with the token of each pong.  Subclasses that override C{connectionMade},
    C{dataReceived} or C{connectionLost} must call up to this class.

    @ivar heartbeatInterval: seconds of silence before a ping; C{None} or
        C{0} sends no pings.
    @ivar heartbeatTimeout: seconds of silence before the peer is declared
        dead; C{None} or C{0} never declares it.  The bound for every peer,
        whatever the pong deadline says.
    @ivar heartbeatPongTimeout: the least pong deadline, in seconds; C{None}
        or C{0} turns the pong deadline off (the timeout alone drops).
    @ivar heartbeatClock: the L{IReactorTime} driving the timers; when
        C{None}, the factory's C{clock}, else the global reactor.
    """

    heartbeatInterval: Optional[float] = 25.0
    heartbeatTimeout: Optional[float] = 90.0
    heartbeatPongTimeout: Optional[float] = 5.0
    heartbeatClock: Optional[IReactorTime] = None

    # Per-connection state lives in slots, filled when the connection is
    # made.  And a subclass names in C{_connectionState} every attribute a
    # connection of it may ever set, with its initial value, so that it is
    # set on every new connection at once.  An attribute first set later
    # (on the first data, on an error) by connections accepted in a burst
    # turns each one's attribute dictionary into a full dictionary of its
    # own, some 270 bytes more than the 8 an attribute costs otherwise:
    # CPython shares one table of attribute names among a class's instances
    # while there is room in it, and the room shrinks with each instance.
    __slots__ = tuple(_SLOT_DEFAULTS)
    _connectionState = _SLOT_DEFAULTS
    _initialState = tuple(_SLOT_DEFAULTS.items())

    # Not "log": the framing's own base class may hold that name (Autobahn's
    # protocols do, with a logger of another kind).
    _heartbeatLog = Logger()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        initial: dict = {}
        for klass in reversed(cls.__mro__):
            initial.update(klass.__dict__.get("_connectionState", {}))
        cls._initialState = tuple(initial.items())

    def __new__(cls, *args, **kwargs):
        # Here rather than in __init__, which subclasses often define without
        # calling up; and slots start out unset.
        self = super().__new__(cls)
        for name, value in cls._initialState:
            setattr(self, name, value)
        return self

    # Twisted protocol methods

    def connectionMade(self) -> None:
        self.startHeartbeat()
        super().connectionMade()  # type: ignore[misc]

    def dataReceived(self, data: bytes) -> None:
        clock = self._heartbeatClock
        if clock is not None:
            now = clock.seconds()
            # The time to the peer's next data, if it keeps its pace.
            pace = now - self._heartbeatLastReceived
            self._heartbeatLastReceived = now
            slot = self._heartbeatSlot
            if slot is not None and slot.number * RESOLUTION <= now + pace:
                # This slot would come due before the peer next speaks, only
                # to find that it spoke: file the connection again now,
                # rather than wake the reactor for nothing then.
                self._heartbeatRefile(slot)
        super().dataReceived(data)  # type: ignore[misc]

    def connectionLost(self, reason: Failure) -> None:
        self.stopHeartbeat()
        super().connectionLost(reason)  # type: ignore[misc]

    # Public API

    @property
    def heartbeatRtt(self) -> Optional[float]:
        """
        Seconds between the last answered ping and its pong, or C{None}.
        """
        return self._heartbeatRtt

    @property
    def heartbeatSmoothedRtt(self) -> Optional[float]:
        """
        The round-trip time smoothed over samples as TCP does (gain 1/8).
        """
        return self._heartbeatSmoothedRtt

    @property
    def heartbeatRttVariation(self) -> Optional[float]:
        """
        How far samples stray from the smoothed round trip, smoothed as TCP
        smooths it (RFC 6298's RTTVAR, gain 1/4), or C{None} before the
        first sample.
        """
        if self._heartbeatSmoothedRtt is None:
            return None
        return self._heartbeatRttVariation

    @property
    def heartbeatPongDeadline(self) -> Optional[float]:
        """
        Seconds a ping may now go unanswered, with nothing else heard, before
        the peer is declared dead: the smoothed round trip plus four times
        its variation, never below C{heartbeatPongTimeout}.  C{None} while
        the rule does not apply: the peer has never answered a ping, or
        C{heartbeatPongTimeout} is C{0}.
        """
        if not self.heartbeatPongTimeout or self._heartbeatSmoothedRtt is None:
            return None
        return self._heartbeatPingLifetime()

    @property
    def heartbeatPingsSent(self) -> int:
        """
        How many pings this connection has sent.
        """
        return self._heartbeatPingsSent

    @property
    def heartbeatLastReceived(self) -> float:
        """
        The clock's time when the peer last sent anything.
        """
        return self._heartbeatLastReceived

    def startHeartbeat(self) -> None:
        """
        Start watching the peer, as if it had just sent something.

        Called by C{connectionMade}; calling it again does nothing.
        """
        if self._heartbeatClock is not None:
            return
        self._heartbeatClock = clock = self._heartbeatResolveClock()
        self._heartbeatLastReceived = clock.seconds()
        self._heartbeatArm()

    def stopHeartbeat(self) -> None:
        """
        Stop every timer of this connection and drop its place on the wheel.

        Called by C{connectionLost}; calling it again does nothing.
        """
        clock = self._heartbeatClock
        if clock is None:
            return
        if self._heartbeatSlot is not None:
            wheel_for(clock).unschedule(self, self._heartbeatSlot)
            self._heartbeatSlot = None
        self._heartbeatClock = None

    def heartbeatPing(self) -> bytes:
        """
        Send a ping now, whatever the silence, to measure the round trip.

        @return: the token sent, which the peer's pong will carry back.
        """
        self._heartbeatPingsSent += 1
        token = b"%d" % (self._heartbeatPingsSent,)
        clock = self._heartbeatClock or self._heartbeatResolveClock()
        self._heartbeatEarlierPingSentAt = self._heartbeatPingSentAt
        self._heartbeatPingSentAt = clock.seconds()
        self.sendHeartbeatPing(token)
        return token

    def heartbeatPongReceived(self, token: Optional[bytes]) -> None:
        """
        The framing calls this with the token of each pong received.

        A pong for the latest ping, or for the one before it if that was
        still unanswered when the latest went out, gives a round-trip
        sample; others (no token, a ping answered already, a forged token)
        are only signs of life.
        """
        clock = self._heartbeatClock
        if clock is None or token is None:
            return
        sentAt = self._heartbeatPingSentAt
        if sentAt is not None and token == b"%d" % (self._heartbeatPingsSent,):
            self._heartbeatPingSentAt = None
            self._heartbeatSample(clock.seconds() - sentAt)
            # Data only ever postpones what the wheel holds this connection
            # for, but this pong may bring its next ping forward: the ping
            # was held back until the pong or the deadline.
            slot = self._heartbeatSlot
            if slot is not None:
                self._heartbeatRefile(slot)
            return
        sentAt = self._heartbeatEarlierPingSentAt
        if sentAt is not None and token == b"%d" % (self._heartbeatPingsSent - 1,):
            self._heartbeatEarlierPingSentAt = None
            self._heartbeatSample(clock.seconds() - sentAt)

    def _heartbeatSample(self, rtt: float) -> None:
        """
        Fold a round-trip sample into the estimates, as RFC 6298 does.
        """
        self._heartbeatRtt = rtt
        smoothed = self._heartbeatSmoothedRtt
        if smoothed is None:
            self._heartbeatSmoothedRtt = rtt
            self._heartbeatRttVariation = rtt / 2
        else:
            variation = self._heartbeatRttVariation
            self._heartbeatRttVariation = variation + _VARIATION_GAIN * (
                abs(smoothed - rtt) - variation
            )
            self._heartbeatSmoothedRtt = smoothed + _RTT_GAIN * (rtt - smoothed)
        self.heartbeatRoundTrip(rtt)

    # Hooks for subclasses

    def heartbeatPingReceived(self, token: Optional[bytes]) -> None:
        """
        The framing calls this for each ping from the peer, before it
        answers; override to count or limit them.
        """

    def sendHeartbeatPing(self, token: bytes) -> None:
        """
        Write a ping carrying C{token} in this protocol's framing.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement sendHeartbeatPing"
        )

    def heartbeatRoundTrip(self, rtt: float) -> None:
        """
        A pong answered this connection's latest ping after C{rtt} seconds.
        """

    def heartbeatTimedOut(self, silence: float) -> None:
        """
        The peer has been silent for C{silence} seconds: past the timeout,
        or with our ping unanswered past the pong deadline.

        Called just before the connection is aborted; by default, logs it.
        """
        timeout = self.heartbeatTimeout
        if timeout and silence + _EPSILON >= timeout:
            self._heartbeatLog.info(
                "{peer} silent for {silence:.3f}s (timeout {timeout}s), aborting",
                peer=peer_name(self),
                silence=silence,
                timeout=timeout,
            )
        else:
            self._heartbeatLog.info(
                "{peer} silent for {silence:.3f}s, ping {token} unanswered "
                "past the pong deadline ({deadline:.3f}s), aborting",
                peer=peer_name(self),
                silence=silence,
                token=self._heartbeatPingsSent,
                deadline=self._heartbeatPingLifetime(),
            )

    def heartbeatAbort(self) -> None:
        """
        Drop the dead peer's connection, right after L{heartbeatTimedOut}.

        By default at once, with C{abortConnection}: a graceful close can
        hang on a peer that reads nothing.  A framing with a close message
        of its own (WebSocket's close frame) may send it first, as long as
        the connection is aborted soon after.
        """
        self.transport.abortConnection()  # type: ignore[attr-defined]

    # The wheel's side

    def _heartbeatResolveClock(self) -> IReactorTime:
        clock = self.heartbeatClock
        if clock is None:
            clock = getattr(getattr(self, "factory", None), "clock", None)
        return clock if clock is not None else default_clock()

    def _heartbeatPingLifetime(self) -> float:
        """
        How long a ping to a peer that has answered before stays
        outstanding: SRTT + 4 x RTTVAR, never below C{heartbeatPongTimeout}.
        """
        floor = self.heartbeatPongTimeout or 0.0
        smoothed = self._heartbeatSmoothedRtt
        if smoothed is None:
            return floor
        return max(
            floor, smoothed + _VARIATION_WEIGHT * self._heartbeatRttVariation
        )

    def _heartbeatNextEvent(self, last: float) -> Optional[float]:
        """
        When this connection's next ping or deadline falls due, or C{None}.

        @param last: when the peer last sent anything.
        """
        timeout = self.heartbeatTimeout
        when = last + timeout if timeout else None
        interval = self.heartbeatInterval
        sentAt = self._heartbeatPingSentAt
        if sentAt is None or self._heartbeatSmoothedRtt is None:
            # Nothing outstanding, or a peer that has never answered: the
            # next ping comes an interval after we last heard or pinged.
            if interval:
                ping = (last if sentAt is None or sentAt < last else sentAt) + interval
                if when is None or ping < when:
                    when = ping
            return when
        expires = sentAt + self._heartbeatPingLifetime()
        if sentAt >= last and self.heartbeatPongTimeout:
            # Nothing heard since our ping: dead at its deadline.
            return expires if when is None or expires < when else when
        if interval:
            ping = max(expires, (last if sentAt < last else sentAt) + interval)
            if when is None or ping < when:
                when = ping
        return when

    def _heartbeatArm(self) -> None:
        """
        File this connection on the wheel for its next ping or deadline.
        """
        when = self._heartbeatNextEvent(self._heartbeatLastReceived)
        if when is not None:
            self._heartbeatSlot = wheel_for(self._heartbeatClock).schedule(
                self, when
            )

    def _heartbeatRefile(self, slot: Slot) -> None:
        """
        Take this connection out of C{slot} and file it for what it now
        waits for.
        """
        wheel_for(self._heartbeatClock).unschedule(self, slot)
        self._heartbeatSlot = None
        self._heartbeatArm()

    def _heartbeatDue(self, now: float, lateness: float) -> None:
        self._heartbeatSlot = None
        if self._heartbeatClock is None:
            return
        last = self._heartbeatLastReceived
        silence = now - last
        timeout = self.heartbeatTimeout
        dead = timeout and silence + _EPSILON >= timeout
        sentAt = self._heartbeatPingSentAt
        if (
            not dead
            and sentAt is not None
            and sentAt >= last
            and self._heartbeatSmoothedRtt is not None
            and self.heartbeatPongTimeout
        ):
            dead = now + _EPSILON >= sentAt + self._heartbeatPingLifetime()
        if dead:
            if lateness > _BLOCKED and not self._heartbeatGraced:
                # The reactor was blocked: the peer's answer may be waiting
                # unread.  Look again one slot later, once the reactor has
                # read its sockets.
                wheel = wheel_for(self._heartbeatClock)
                self._heartbeatGraced = True
                self._heartbeatSlot = wheel.schedule(self, now + wheel.resolution)
                return
            self.stopHeartbeat()
            self.heartbeatTimedOut(silence)
            self.heartbeatAbort()
            return
        self._heartbeatGraced = False
        if self.heartbeatInterval:
            # Every deadline up to now has been dealt with: what falls due
            # now is the ping.
            ping = self._heartbeatNextEvent(last)
            if ping is not None and ping <= now + _EPSILON:
                self.heartbeatPing()
        if self._heartbeatClock is not None:
            self._heartbeatArm()


def peer_name(protocol: object) -> str:
    """
    A readable name for the peer of C{protocol}, for log lines.
    """
    transport = getattr(protocol, "transport", None)
    if transport is None:
        return "unconnected peer"
    try:
        address = transport.getPeer()
    except Exception:
        return "peer"
    return address_name(address)


def address_name(address: object) -> str:
    """
    An address as a log line shows it: C{host:port}, or C{unix:path}.
    """
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is not None and port is not None:
        return f"{host}:{port}"
    name = getattr(address, "name", None)
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    return f"unix:{name}" if name else str(address)
