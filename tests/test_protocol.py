"""
The mixin's timing rules, driven by a fake clock over a fake transport.
"""

import gc
import weakref

import pytest
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.protocols.basic import Int32StringReceiver, NetstringReceiver
from twisted.test import iosim

from heartbeat import HeartbeatProtocol
from heartbeat._core.wheel import TimingWheel, _wheels

from .helpers import connect, factory_for, lose, take

SLOT = TimingWheel.resolution


class NetstringHeartbeat(HeartbeatProtocol, NetstringReceiver):
    """
    The mixin on another framing: pings and pongs are netstrings.
    """

    def __init__(self):
        self.strings = []

    def sendHeartbeatPing(self, token):
        self.sendString(b"PING " + token)

    def stringReceived(self, string):
        if string.startswith(b"PING "):
            self.sendString(b"PONG " + string[5:])
        elif string.startswith(b"PONG "):
            self.heartbeatPongReceived(string[5:])
        else:
            self.strings.append(string)


def make(clock, interval=1.0, timeout=3.0, cls=NetstringHeartbeat):
    factory = factory_for(cls, clock)
    protocol, transport = connect(factory)
    protocol.heartbeatInterval = interval
    protocol.heartbeatTimeout = timeout
    # The attributes changed after connectionMade: file it anew.
    protocol.stopHeartbeat()
    protocol.startHeartbeat()
    return protocol, transport


def test_ping_after_interval_of_silence(clock):
    """A silent peer gets its first ping one interval after its last data."""
    protocol, transport = make(clock)
    clock.advance(1.0 - 2 * SLOT)
    assert transport.value() == b""
    clock.advance(2 * SLOT)
    assert take(transport) == b"6:PING 1,"


def test_pings_repeat_every_interval_while_silent(clock):
    """While the silence lasts a ping goes out every interval, no more."""
    protocol, transport = make(clock, interval=1.0, timeout=10.0)
    for n in range(1, 6):
        clock.advance(1.0 - 2 * SLOT)
        assert transport.value() == b"", n
        clock.advance(2 * SLOT)
        assert take(transport) == b"6:PING %d," % (n,)
    assert protocol.heartbeatPingsSent == 5


def test_data_postpones_the_ping(clock):
    """Any bytes received push the next ping a whole interval later."""
    protocol, transport = make(clock)
    clock.advance(0.9)
    protocol.dataReceived(b"5:hello,")
    clock.advance(0.9)
    assert transport.value() == b""
    clock.advance(0.1 + SLOT)
    assert take(transport) == b"6:PING 1,"


def test_partial_frame_is_a_sign_of_life(clock):
    """Bytes that do not complete a message still count as life."""
    protocol, transport = make(clock, interval=None, timeout=3.0)
    clock.advance(2.9)
    protocol.dataReceived(b"5:he")
    clock.advance(2.9)
    assert not transport.disconnecting
    clock.advance(0.1 + SLOT)
    assert transport.disconnected


def test_abort_at_timeout(clock):
    """A peer silent for the timeout is aborted, not closed gracefully."""
    protocol, transport = make(clock, interval=1.0, timeout=3.0)
    clock.advance(2.9)
    assert not transport.disconnecting
    clock.advance(0.1 + SLOT)
    assert transport.disconnected
    assert clock.getDelayedCalls() == []


def test_sending_does_not_postpone_the_deadline(clock):
    """Data we send (our own pings, replies) never keeps a dead peer alive."""
    protocol, transport = make(clock, interval=0.5, timeout=3.0)
    for _ in range(5):
        clock.advance(0.5)
        protocol.sendString(b"still here?")
    clock.advance(0.5 + SLOT)
    assert transport.disconnected


def test_received_data_postpones_the_deadline(clock):
    """A peer that keeps sending is never timed out."""
    protocol, transport = make(clock, interval=1.0, timeout=3.0)
    for _ in range(20):
        clock.advance(2.5)
        protocol.dataReceived(b"1:x,")
    assert not transport.disconnecting
    assert protocol.strings == [b"x"] * 20


def test_timed_out_hook_gets_the_silence(clock):
    """The hook learns how long the peer was silent, then the abort comes."""
    seen = []

    class Hooked(NetstringHeartbeat):
        def heartbeatTimedOut(self, silence):
            seen.append((silence, self.transport.disconnected))

    protocol, transport = make(clock, cls=Hooked)
    clock.pump([0.5] * 6 + [SLOT])
    assert len(seen) == 1
    assert 3.0 <= seen[0][0] <= 3.0 + SLOT
    assert seen[0][1] is False
    assert transport.disconnected


def test_interval_disabled_sends_no_pings(clock):
    """With no interval the server is passive: it only times out."""
    for interval in (None, 0):
        protocol, transport = make(clock, interval=interval, timeout=3.0)
        clock.advance(2.9)
        assert transport.value() == b""
        clock.advance(0.1 + SLOT)
        assert transport.disconnected


def test_timeout_disabled_never_aborts(clock):
    """With no timeout a silent peer is pinged forever but never dropped."""
    protocol, transport = make(clock, interval=1.0, timeout=None)
    clock.pump([1.0] * 100)
    assert not transport.disconnecting
    assert protocol.heartbeatPingsSent >= 99


def test_both_disabled_arms_no_timer(clock):
    """No interval and no timeout: not a single timer exists."""
    protocol, transport = make(clock, interval=0, timeout=None)
    assert clock.getDelayedCalls() == []
    clock.advance(1000)
    assert transport.value() == b"" and not transport.disconnecting


def test_connection_lost_cancels_every_timer(clock):
    """After the connection closes no timer is left to fire on it."""
    protocol, transport = make(clock)
    clock.advance(1.5)
    lose(protocol)
    assert clock.getDelayedCalls() == []
    clock.advance(100)
    assert transport.value() == b"6:PING 1,"
    assert not transport.disconnecting


def test_closed_connection_is_not_kept_alive(clock):
    """A closed connection can be garbage collected: no timer holds it."""
    protocol, transport = make(clock)
    ref = weakref.ref(protocol)
    lose(protocol)
    del protocol
    transport.protocol = None
    gc.collect()
    assert ref() is None
    assert clock not in _wheels


def test_start_and_stop_are_idempotent(clock):
    """Starting twice arms one timer; stopping twice is harmless."""
    protocol, transport = make(clock)
    protocol.startHeartbeat()
    clock.advance(1.0 + SLOT)
    assert take(transport) == b"6:PING 1,"
    protocol.stopHeartbeat()
    protocol.stopHeartbeat()
    assert clock.getDelayedCalls() == []


def test_round_trip_time_is_measured(clock):
    """A pong for the latest ping gives the last and smoothed RTT."""
    protocol, transport = make(clock, interval=1.0, timeout=10.0)
    assert protocol.heartbeatRtt is None
    clock.advance(1.0)
    take(transport)
    clock.advance(0.2)
    protocol.dataReceived(b"6:PONG 1,")
    assert protocol.heartbeatRtt == pytest.approx(0.2, abs=SLOT)
    assert protocol.heartbeatSmoothedRtt == protocol.heartbeatRtt
    clock.advance(1.0)
    take(transport)
    clock.advance(0.6)
    protocol.dataReceived(b"6:PONG 2,")
    assert protocol.heartbeatRtt == pytest.approx(0.6, abs=SLOT)
    # Smoothed with gain 1/8: 0.2 + (0.6 - 0.2) / 8 = 0.25.
    assert protocol.heartbeatSmoothedRtt == pytest.approx(0.25, abs=SLOT)


def test_ping_now_measures_without_waiting(clock):
    """heartbeatPing sends a ping at once and its pong is timed."""
    protocol, transport = make(clock)
    token = protocol.heartbeatPing()
    assert take(transport) == b"%d:PING %s," % (5 + len(token), token)
    clock.advance(0.05)
    protocol.dataReceived(b"%d:PONG %s," % (5 + len(token), token))
    assert protocol.heartbeatRtt == pytest.approx(0.05)


def test_late_deadline_gets_a_grace_read(clock):
    """A deadline that fires late (blocked reactor) looks once more first."""
    protocol, transport = make(clock, interval=None, timeout=3.0)
    # The reactor was blocked for 10 s: the timer fires 7 s late.
    clock.advance(10.0)
    assert not transport.disconnecting
    # Meanwhile the peer's data was waiting in the socket: read now.
    protocol.dataReceived(b"1:x,")
    clock.advance(SLOT)
    assert not transport.disconnecting
    clock.advance(3.0 + SLOT)
    assert transport.disconnected


def test_late_deadline_still_drops_a_silent_peer(clock):
    """The grace read is one look, not a reprieve for a silent peer."""
    protocol, transport = make(clock, interval=None, timeout=3.0)
    clock.advance(10.0)
    assert not transport.disconnecting
    clock.advance(2 * SLOT)
    assert transport.disconnected


def test_each_connection_keeps_its_own_deadline(clock):
    """Connections sharing one wheel time out independently, exactly."""
    a, ta = make(clock, interval=None, timeout=3.0)
    clock.advance(1.0)
    b, tb = make(clock, interval=None, timeout=3.0)
    clock.advance(2.0 + SLOT)
    assert ta.disconnected and not tb.disconnecting
    clock.advance(1.0)
    assert tb.disconnected
    assert clock.getDelayedCalls() == []


def test_clock_defaults_to_the_reactor():
    """Without a clock anywhere, the global reactor drives the timers."""
    from twisted.internet import reactor

    protocol = NetstringHeartbeat()
    protocol.makeConnection(StringTransport())
    try:
        assert protocol._heartbeatClock is reactor
    finally:
        lose(protocol)


def test_clock_attribute_wins_over_factory(clock):
    """heartbeatClock on the protocol overrides the factory's clock."""
    other = type(clock)()
    factory = factory_for(NetstringHeartbeat, clock)
    factory.protocol = type(
        "Clocked", (NetstringHeartbeat,), {"heartbeatClock": other}
    )
    protocol, transport = connect(factory)
    assert protocol._heartbeatClock is other
    lose(protocol)


def test_mixin_without_ping_framing_says_what_is_missing(clock):
    """A subclass that forgot sendHeartbeatPing gets a clear error."""

    class Bare(HeartbeatProtocol, Protocol):
        pass

    protocol, transport = connect(factory_for(Bare, clock))
    with pytest.raises(NotImplementedError, match="Bare must implement"):
        protocol.heartbeatPing()
    lose(protocol)


class Int32Heartbeat(HeartbeatProtocol, Int32StringReceiver):
    def sendHeartbeatPing(self, token):
        self.sendString(b"\x01" + token)

    def stringReceived(self, string):
        if string[:1] == b"\x01":
            self.sendString(b"\x02" + string[1:])
        elif string[:1] == b"\x02":
            self.heartbeatPongReceived(string[1:])


def test_two_peers_in_memory_measure_rtt(clock):
    """Two mixin peers over an in-memory link ping, pong and measure."""
    server = factory_for(Int32Heartbeat, clock).buildProtocol(None)
    client = factory_for(Int32Heartbeat, clock).buildProtocol(None)
    server.heartbeatInterval = client.heartbeatInterval = 1.0
    server.heartbeatTimeout = client.heartbeatTimeout = 3.0
    pump = iosim.connect(
        server, iosim.makeFakeServer(server), client, iosim.makeFakeClient(client)
    )
    for _ in range(10):
        clock.advance(0.5)
        pump.flush()
    assert not pump.clientIO.disconnecting and not pump.serverIO.disconnecting
    assert server.heartbeatPingsSent + client.heartbeatPingsSent > 0
    measured = [p.heartbeatRtt for p in (server, client) if p.heartbeatRtt is not None]
    assert measured and all(rtt < SLOT * 2 for rtt in measured)
    # Now the client hangs: nothing it would send arrives any more.
    client.dataReceived = lambda data: None
    pump.clientIO.write = lambda data: None
    for _ in range(8):
        clock.advance(0.5)
        pump.flush()
    assert pump.serverIO.disconnecting


@pytest.fixture
def wakeups(clock, monkeypatch):
    """
    The times the wheels fire: the reactor's wake-ups for heartbeats.
    """
    fired = []
    fire = TimingWheel._fire

    def counted(wheel):
        fired.append(clock.seconds())
        fire(wheel)

    monkeypatch.setattr(TimingWheel, "_fire", counted)
    return fired


def chatty(clock, count, every, interval=25.0, timeout=90.0):
    """
    C{count} connections whose peers each send a line every C{every}
    seconds, at phases spread over the first C{every} seconds.
    """
    peers = []
    for n in range(count):
        clock.advance(every / count)
        peers.append(make(clock, interval=interval, timeout=timeout))
    return peers


def speak(clock, peers, every, seconds, step=0.1):
    """
    Let C{seconds} pass; each peer speaks every C{every} seconds, in the
    order it was connected.
    """
    spoken = {id(p): p.heartbeatLastReceived for p, _ in peers}
    for _ in range(round(seconds / step)):
        clock.advance(step)
        for protocol, _ in peers:
            if clock.seconds() - spoken[id(protocol)] >= every - 1e-9:
                spoken[id(protocol)] = clock.seconds()
                protocol.dataReceived(b"5:hello,")


def test_peers_that_speak_before_their_deadlines_leave_the_reactor_asleep(
    clock, wakeups
):
    """Peers that speak every 10 s (interval 25 s) do not wake the server
    at each one's 25 s mark only to find that it spoke: the wheel fires a
    few times a minute, not once per connection per interval."""
    peers = chatty(clock, 100, 10.0)
    del wakeups[:]
    speak(clock, peers, 10.0, 250.0)
    assert all(p.heartbeatPingsSent == 0 for p, _ in peers)
    assert all(not t.disconnecting for _, t in peers)
    # The timer can only be moved sooner: the one it was armed for when a
    # peer spoke still fires, once every few seconds.
    assert len(wakeups) <= 250 / 4
    for protocol, _ in peers:
        lose(protocol)
    assert clock.getDelayedCalls() == []


def test_a_peer_that_stops_speaking_is_pinged_on_time(clock):
    """The other side: a peer that spoke every 10 s, then fell silent, is
    pinged one interval after its last line and dropped at the timeout,
    exactly, though it was filed again ahead of its deadline."""
    [(protocol, transport)] = peers = chatty(clock, 1, 10.0, interval=25.0, timeout=60.0)
    speak(clock, peers, 10.0, 50.0)
    last = protocol.heartbeatLastReceived
    take(transport)
    clock.advance(last + 25.0 - SLOT - clock.seconds())
    assert transport.value() == b""
    clock.advance(2 * SLOT)
    assert take(transport) == b"6:PING 1,"
    clock.advance(last + 60.0 - SLOT - clock.seconds())
    assert not transport.disconnecting
    clock.advance(2 * SLOT)
    assert transport.disconnecting
    assert clock.getDelayedCalls() == []


def test_silent_peers_wake_the_wheel_for_each_deadline(clock, wakeups):
    """Peers that say nothing are pinged at their deadlines: one wake-up
    for each ping or timeout that falls due, at its time."""
    peers = chatty(clock, 3, 3.0, interval=5.0, timeout=12.0)
    clock.pump([SLOT] * round(20 / SLOT))
    assert all(p.heartbeatPingsSent == 2 for p, _ in peers)
    assert all(t.disconnecting for _, t in peers)
    # Two pings and a timeout each, at three phases: nine, and no more.
    assert len(wakeups) == 9
    assert clock.getDelayedCalls() == []
