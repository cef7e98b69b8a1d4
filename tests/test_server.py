"""
The server factory: its cap, its relays, its counters and its summary.
"""

from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from heartbeat import (
    BroadcastServerProtocol,
    HeartbeatServerFactory,
    HeartbeatServerProtocol,
)

from .helpers import connect, lose, take

successResultOf = SynchronousTestCase().successResultOf


def make_factory(clock, **kwargs):
    kwargs.setdefault("heartbeatInterval", 1.0)
    kwargs.setdefault("heartbeatTimeout", 3.0)
    return HeartbeatServerFactory(clock=clock, **kwargs)


def test_echo_is_the_default(clock):
    """An application line comes back to its sender, and only to it."""
    factory = make_factory(clock)
    a, ta = connect(factory)
    b, tb = connect(factory)
    a.dataReceived(b"hello\n")
    assert ta.value() == b"hello\n"
    assert tb.value() == b""


def settled(factory, name):
    """A connection that has named itself, its answer read."""
    protocol, transport = connect(factory)
    protocol.dataReceived(b"heartbeat/1 name=%s\n" % name.encode())
    assert take(transport).startswith(b"heartbeat/1 ")
    return protocol, transport


def test_broadcast_reaches_everyone_else(clock):
    """With the broadcast protocol a line goes to every other connection."""
    factory = make_factory(clock)
    factory.protocol = BroadcastServerProtocol
    peers = [settled(factory, "p%d" % n) for n in range(4)]
    peers[0][0].dataReceived(b"news\n")
    assert [t.value() for _, t in peers] == [b""] + [b"news\n"] * 3
    assert successResultOf(factory.broadcast(b"all")) == 4


def test_the_handshake_answer_comes_before_any_broadcast(clock):
    """A client hears the answer to its handshake first, then what was
    broadcast while its handshake was on its way, in order, nothing
    lost: a chatty neighbour cannot make it take a broadcast for the
    answer."""
    factory = make_factory(clock)
    factory.protocol = BroadcastServerProtocol
    chatty, _ = settled(factory, "chatty")
    newcomer, transport = connect(factory)
    chatty.dataReceived(b"one\ntwo\n")
    assert transport.value() == b""
    newcomer.dataReceived(b"heartbeat/1 name=new\n")
    answer, *rest = transport.value().split(b"\n")
    assert answer.startswith(b"heartbeat/1 id=2 ") and answer.endswith(b" name=new")
    assert rest == [b"one", b"two", b""]
    chatty.dataReceived(b"three\n")
    assert transport.value().endswith(b"two\nthree\n")


def test_a_peer_that_never_negotiates_hears_what_it_missed_after_the_wait(clock):
    """A peer that says nothing (nc) hears the broadcasts of its first two
    seconds when the handshake wait is over, in order; one that talks first
    hears them before its own line is served."""
    factory = make_factory(clock, heartbeatInterval=5.0, heartbeatTimeout=11.0)
    factory.protocol = BroadcastServerProtocol
    chatty, _ = settled(factory, "chatty")
    silent, silentTransport = connect(factory)
    talker, talkerTransport = connect(factory)
    chatty.dataReceived(b"early\n")
    talker.dataReceived(b"hi\n")
    assert talkerTransport.value() == b"early\n"
    clock.advance(factory.handshakeWait - 0.01)
    assert silentTransport.value() == b""
    clock.advance(0.02)
    assert silentTransport.value() == b"early\nhi\n"


def test_more_held_than_the_write_cap_drops_the_peer(clock):
    """A peer for which more than its write cap of broadcasts waits (it
    never negotiates, and the others are loud) is dropped as one that
    does not read; the others carry on."""
    factory = make_factory(clock, maxWriteBuffer=100)
    factory.protocol = BroadcastServerProtocol
    loud, _ = settled(factory, "loud")
    listener, listenerTransport = settled(factory, "listener")
    mute, muteTransport = connect(factory)
    with capturedLogs() as events:
        for n in range(6):
            loud.dataReceived(b"%018d\n" % n)
    assert muteTransport.disconnecting or muteTransport.disconnected
    assert muteTransport.value() == b""
    assert listenerTransport.value().count(b"\n") == 6
    assert [e for e in events if "bytes of broadcasts wait" in e["log_format"]]
    assert not mute.heartbeatAdmitted


def test_heartbeat_settings_come_from_the_factory(clock):
    """The factory's interval, timeout and line limit govern its protocols."""
    factory = make_factory(clock, heartbeatInterval=2.0, heartbeatTimeout=5.0,
                           maxLineLength=8)
    protocol, transport = connect(factory)
    clock.advance(1.9)
    assert transport.value() == b""
    clock.advance(0.11)
    assert take(transport) == b"ping 1\n"
    clock.pump([0.5] * 6)
    assert transport.disconnected
    p2, t2 = connect(factory)
    p2.dataReceived(b"123456789\n")
    assert t2.value() == b"error line too long\n"


def test_connections_are_tracked(clock):
    """The live set grows on connect and shrinks on any loss."""
    factory = make_factory(clock)
    a, _ = connect(factory)
    b, _ = connect(factory)
    assert factory.connections == {a, b}
    lose(a)
    assert factory.connections == {b}
    assert factory.accepted == 2


def test_n_plus_first_connection_is_refused(clock):
    """With maxConnections=N, N are served and the next hears 'server full'."""
    factory = make_factory(clock, maxConnections=3)
    served = [connect(factory) for _ in range(3)]
    with capturedLogs() as events:
        refused, transport = connect(factory)
    assert transport.value() == b"error server full\n"
    assert transport.disconnecting
    assert refused not in factory.connections
    assert factory.refused == 1
    [refusal] = [e for e in events if "refused" in e["log_format"]]
    assert refusal["limit"] == 3
    # The served connections are untouched and still answered.
    for protocol, t in served:
        protocol.dataReceived(b"ping x\n")
        assert t.value() == b"pong x\n"
        assert not t.disconnecting
    # A refused connection has no heartbeat timer and leaves nothing behind.
    lose(refused)
    assert factory.connections == {p for p, _ in served}
    lose(served[0][0])
    again, t = connect(factory)
    assert t.value() == b""
    assert again in factory.connections


def test_timeouts_are_counted_and_logged(clock):
    """A silent peer's timeout is counted, logged with its silence."""
    factory = make_factory(clock)
    protocol, transport = connect(factory)
    with capturedLogs() as events:
        clock.pump([0.5] * 7)
    assert transport.disconnected
    assert factory.timeouts == 1
    [event] = [e for e in events if "silent" in e["log_format"]]
    assert 3.0 <= event["silence"] < 3.1
    assert event["log_level"] == LogLevel.info


def test_connect_and_disconnect_are_logged_with_reason(clock):
    """Operators see who came and who went, and why."""
    factory = make_factory(clock)
    with capturedLogs() as events:
        protocol, _ = connect(factory)
        lose(protocol)
    messages = [e["log_format"] for e in events]
    assert any("connected" in m for m in messages)
    [lost] = [e for e in events if "disconnected" in e["log_format"]]
    assert "closed cleanly" in lost["reason"]


def test_summary_every_minute(clock):
    """Once a minute: open connections, totals and the mean RTT."""
    factory = make_factory(clock, heartbeatInterval=30.0, heartbeatTimeout=90.0)
    factory.doStart()
    protocol, transport = connect(factory)
    protocol.heartbeatPing()
    clock.advance(0.04)
    protocol.dataReceived(b"pong 1\n")
    with capturedLogs() as events:
        clock.advance(59.0)
        assert not [e for e in events if "open" in e["log_format"]]
        clock.advance(1.0)
    [summary] = [e for e in events if "open" in e["log_format"]]
    assert summary["open"] == 1 and summary["accepted"] == 1
    assert summary["meanRtt"] == "40.0 ms"
    factory.doStop()
    lose(protocol)
    assert clock.getDelayedCalls() == []


def test_subclass_hook_gets_application_lines(clock):
    """Users replace echo by overriding messageReceived."""
    got = []

    class Upper(HeartbeatServerProtocol):
        def messageReceived(self, line):
            got.append(line)
            self.sendMessage(line.upper())

    factory = make_factory(clock)
    factory.protocol = Upper
    protocol, transport = connect(factory)
    protocol.dataReceived(b"abc\nping 5\n")
    assert got == [b"abc"]
    assert transport.value() == b"ABC\npong 5\n"
