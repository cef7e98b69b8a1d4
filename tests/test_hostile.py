"""
Limits that keep a hostile or careless peer from hurting the server:
slowloris lines, slow readers, ping floods, missing authentication, floods
of refused connections.
"""

import socket

from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs

from heartbeat import HeartbeatServerFactory
from heartbeat._server.tcp import enable_tcp_keepalive, keepalive_settings

from .helpers import connect, lose, take


class HalfCloseTransport(StringTransport):
    def loseWriteConnection(self):
        self.writeClosed = True


def make(clock, transport=None, **kwargs):
    kwargs.setdefault("heartbeatInterval", 10.0)
    kwargs.setdefault("heartbeatTimeout", 30.0)
    factory = HeartbeatServerFactory(clock=clock, **kwargs)
    return factory, connect(factory, transport or HalfCloseTransport())


# Slowloris


def test_dribbled_line_is_cut_at_line_timeout(clock):
    """A peer sending a byte every few seconds without a newline is closed
    once its line is older than lineTimeout."""
    factory, (protocol, transport) = make(clock, lineTimeout=5.0)
    for _ in range(3):
        protocol.dataReceived(b"x")
        clock.advance(2.0)
    assert transport.value() == b""
    protocol.dataReceived(b"x")  # 6 s after the line's first byte
    assert transport.value() == b"error line timeout\n"


def test_finished_lines_restart_the_line_clock(clock):
    """Slow but complete lines are never cut: each line gets its own time."""
    factory, (protocol, transport) = make(clock, lineTimeout=5.0)
    for n in range(10):
        protocol.dataReceived(b"part")
        clock.advance(3.0)
        protocol.dataReceived(b" %d\nnext" % n)
        clock.advance(3.0)
    assert b"error" not in transport.value()
    assert transport.value().count(b"part") == 10


def test_silent_squatter_is_closed_at_timeout(clock):
    """A peer that connects and never sends is dropped at the timeout."""
    factory, (protocol, transport) = make(clock, heartbeatTimeout=30.0)
    clock.pump([1.0] * 29)
    assert not transport.disconnecting
    clock.pump([1.0, 0.01])
    assert transport.disconnected


# Slow reader


def test_slow_reader_is_dropped_past_the_write_cap(clock):
    """A peer that stops reading is dropped once maxWriteBuffer bytes wait;
    until then nothing is lost."""
    factory, (protocol, transport) = make(clock, maxWriteBuffer=10_000)
    assert transport.streaming
    transport.producer.pauseProducing()  # the transport's buffer is full
    with capturedLogs() as events:
        for _ in range(100):  # exactly the cap: kept
            protocol.sendMessage(b"x" * 99)
        assert not transport.disconnecting
        protocol.sendMessage(b"x" * 99)
        protocol.sendMessage(b"x" * 99)
    assert transport.disconnected
    assert len([e for e in events if "reads too slowly" in e["log_format"]]) == 1
    assert len(transport.value()) == 100 * 100


def test_reader_that_catches_up_is_kept(clock):
    """Pauses that drain in time never count against a peer."""
    factory, (protocol, transport) = make(clock, maxWriteBuffer=10_000)
    for _ in range(50):
        transport.producer.pauseProducing()
        for _ in range(50):
            protocol.sendMessage(b"y" * 99)
        transport.producer.resumeProducing()
    assert not transport.disconnecting


def test_a_lost_connection_and_its_unsent_data_are_freed_at_once(clock):
    """A connection with the write cap, lost with data still unsent, is
    freed (with that data) as soon as it is let go, not at some later run
    of the garbage collector's cycle search."""
    import gc
    import weakref

    from heartbeat._framing.line import HeartbeatLineProtocol

    from .helpers import factory_for

    capped = type("Capped", (HeartbeatLineProtocol,), {"maxWriteBuffer": 10_000})
    protocol, transport = connect(factory_for(capped, clock))
    transport.producer.pauseProducing()
    protocol.sendMessage(b"unsent")
    gone = weakref.ref(protocol)
    gc.disable()
    try:
        lose(protocol)
        transport.unregisterProducer()  # as a real transport does when lost
        del protocol
        assert gone() is None
    finally:
        gc.enable()


def test_broadcast_to_a_slow_reader_spares_everyone_else(clock):
    """One slow reader among broadcast receivers is dropped; the writer and
    the others get every line."""
    from heartbeat import BroadcastServerProtocol

    factory = HeartbeatServerFactory(clock=clock, maxWriteBuffer=5_000)
    factory.protocol = BroadcastServerProtocol
    writer, tw = connect(factory, HalfCloseTransport())
    fast, tf = connect(factory, HalfCloseTransport())
    slow, ts = connect(factory, HalfCloseTransport())
    # Their first lines settle them: they hear broadcasts from then on.
    fast.dataReceived(b"pong\n")
    slow.dataReceived(b"pong\n")
    ts.producer.pauseProducing()
    for n in range(100):
        writer.dataReceived(b"line %03d %s\n" % (n, b"z" * 90))
    assert ts.disconnected
    assert tf.value().count(b"\n") == 100 and not tf.disconnecting
    writer.dataReceived(b"ping 1\n")
    assert tw.value() == b"pong 1\n"


# Ping flood


def test_ping_flood_gets_too_many_pings(clock):
    """Pings faster than one per minPingInterval use up the burst of 10 and
    then the one over budget gets 'error too many pings', then the close."""
    factory, (protocol, transport) = make(clock, minPingInterval=1.0)
    for n in range(10):
        protocol.dataReceived(b"ping %d\n" % n)
        clock.advance(0.01)
    assert take(transport) == b"".join(b"pong %d\n" % n for n in range(10))
    protocol.dataReceived(b"ping 10\n")
    assert transport.value() == b"error too many pings\n"


def test_pings_in_one_packet_are_a_flood(clock):
    """Many pings in one read count as pings at the same instant: ten
    answered, then the close."""
    factory, (protocol, transport) = make(clock, minPingInterval=1.0)
    protocol.dataReceived(b"ping\n" * 100)
    assert transport.value() == b"pong\n" * 10 + b"error too many pings\n"


def test_a_burst_of_ten_is_always_answered(clock):
    """A person typing 'ping' ten times in a few seconds, or a client
    measuring its round trip ten times in a row, is answered every time,
    and again once the budget has refilled."""
    factory, (protocol, transport) = make(
        clock, minPingInterval=1.0, heartbeatInterval=60.0, heartbeatTimeout=120.0
    )
    for burst in range(3):
        for n in range(10):
            protocol.dataReceived(b"ping %d\n" % n)
        assert take(transport) == b"".join(b"pong %d\n" % n for n in range(10))
        clock.advance(10.0)
    assert not transport.disconnecting


def test_sustained_rate_above_the_floor_is_refused(clock):
    """One ping every 0.9 s against a 1 s floor: answered while the burst
    lasts, refused once it is spent."""
    factory, (protocol, transport) = make(clock, minPingInterval=1.0)
    while b"error" not in transport.value():
        protocol.dataReceived(b"ping\n")
        clock.advance(0.9)
    # Ping k comes at 0.9 k s, when the budget (10 at once, and one more
    # each second) holds 10 + 0.9 k: pings 0 to 90 are within it.
    assert transport.value().count(b"pong\n") == 91


def test_honest_pinger_is_never_struck(clock):
    """A client pinging at exactly the floor is never refused, nor one at
    twice the floor that now and then measures its round trip ten times in
    a row."""
    for every, bursts in ((1.0, False), (2.0, True)):
        factory, (protocol, transport) = make(clock, minPingInterval=1.0)
        for n in range(300):
            protocol.dataReceived(b"ping %d\n" % n)
            if bursts and n % 15 == 0:
                protocol.dataReceived(b"ping again\n" * 9)
            clock.advance(every)
        assert b"error" not in transport.value()


# Authentication


def test_right_token_gets_no_reply_and_proceeds(clock):
    """'auth <token>' first: no answer, then the connection works."""
    factory, (protocol, transport) = make(clock, authToken=b"s3cret")
    protocol.dataReceived(b"auth s3cret\r\nping 1\n")
    assert transport.value() == b"pong 1\n"
    clock.advance(10)
    assert not transport.disconnecting
    lose(protocol)
    assert clock.getDelayedCalls() == []


def test_wrong_first_line_is_unauthorized_at_once(clock):
    """A wrong token, or any other first line, gets 'error unauthorized'."""
    for first in [b"auth wrong", b"auth s3cret2", b"ping 1", b"hello", b"auth"]:
        factory, (protocol, transport) = make(clock, authToken=b"s3cret")
        protocol.dataReceived(first + b"\nping 2\n")
        assert transport.value() == b"error unauthorized\n", first


def test_silence_is_unauthorized_at_the_auth_timeout(clock):
    """No auth line within authTimeout: 'error unauthorized'."""
    factory, (protocol, transport) = make(
        clock, authToken=b"s3cret", authTimeout=5.0
    )
    clock.advance(4.9)
    assert transport.value() == b""
    clock.advance(0.2)
    assert transport.value() == b"error unauthorized\n"


def test_token_comparison_is_constant_time(clock, monkeypatch):
    """The token is compared with hmac.compare_digest."""
    import hmac

    calls = []
    original = hmac.compare_digest
    monkeypatch.setattr(
        hmac, "compare_digest", lambda a, b: calls.append((a, b)) or original(a, b)
    )
    factory, (protocol, transport) = make(clock, authToken=b"s3cret")
    protocol.dataReceived(b"auth guess\n")
    assert calls == [(b"guess", b"s3cret")]


def test_open_server_needs_no_auth(clock):
    """Without a token the first line is an ordinary line."""
    factory, (protocol, transport) = make(clock)
    protocol.dataReceived(b"hello\n")
    assert transport.value() == b"hello\n"


# Connection flood


def test_refusals_are_logged_once_per_window(clock):
    """A flood of refused connections makes one log line per window, with a
    count of the rest."""
    factory = HeartbeatServerFactory(clock=clock, maxConnections=1)
    connect(factory)
    with capturedLogs() as events:
        for _ in range(500):
            connect(factory, HalfCloseTransport())
        clock.advance(10.0)
        connect(factory, HalfCloseTransport())
    lines = [e for e in events if "refused" in e["log_format"]]
    assert [e["unlogged"] for e in lines] == [0, 499]
    assert factory.refused == 501


def test_refused_connection_lingers_briefly_then_goes(clock):
    """A refused peer that never closes is aborted after the linger."""
    factory = HeartbeatServerFactory(clock=clock, maxConnections=1)
    connect(factory)
    protocol, transport = connect(factory, HalfCloseTransport())
    assert transport.writeClosed and not transport.disconnected
    clock.advance(protocol.errorLinger + 0.01)
    assert transport.disconnected
    lose(protocol)
    # The first connection's heartbeat, and its wait for a handshake.
    assert len(clock.getDelayedCalls()) == 2


# Kernel keepalive


def test_keepalive_settings_match_the_heartbeat():
    """Probes start after the interval and fit in the timeout; unacked data
    fails the connection after the timeout."""
    assert keepalive_settings(25.0, 90.0) == (25, 22, 3, 90000)
    assert keepalive_settings(25.0, None) == (25, 22, 3, 90000)
    assert keepalive_settings(25.0, 55.0) == (25, 10, 3, 55000)
    assert keepalive_settings(None, 55.0) == (28, 9, 3, 55000)
    assert keepalive_settings(0.2, 0.6) == (1, 1, 3, 600)


def test_keepalive_is_set_on_the_real_socket(clock):
    """--tcp-keepalive sets SO_KEEPALIVE, TCP_KEEP* and TCP_USER_TIMEOUT."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    try:
        transport = StringTransport()
        transport.getHandle = lambda: accepted
        factory = HeartbeatServerFactory(
            clock=clock, heartbeatInterval=25.0, heartbeatTimeout=55.0,
            tcpKeepalive=True,
        )
        connect(factory, transport)
        get = lambda level, name: accepted.getsockopt(level, getattr(socket, name))
        assert get(socket.SOL_SOCKET, "SO_KEEPALIVE") == 1
        assert get(socket.IPPROTO_TCP, "TCP_KEEPIDLE") == 25
        assert get(socket.IPPROTO_TCP, "TCP_KEEPINTVL") == 10
        assert get(socket.IPPROTO_TCP, "TCP_KEEPCNT") == 3
        assert get(socket.IPPROTO_TCP, "TCP_USER_TIMEOUT") == 55000
    finally:
        for s in (listener, client, accepted):
            s.close()


def test_keepalive_skips_non_tcp_sockets():
    """On a UNIX socket there is nothing to set, and no error."""
    a, b = socket.socketpair()
    try:
        transport = StringTransport()
        transport.getHandle = lambda: a
        assert enable_tcp_keepalive(transport, 25.0, 55.0) is False
    finally:
        a.close()
        b.close()


def test_write_cap_leaves_line_receiver_flow_control_alone(clock):
    """The protocol's own pauseProducing still pauses line delivery, as
    LineReceiver's does, with the write cap on."""
    factory, (protocol, transport) = make(clock, maxWriteBuffer=10_000)
    protocol.pauseProducing()
    protocol.dataReceived(b"one\ntwo\n")
    assert transport.value() == b""
    protocol.resumeProducing()
    assert transport.value() == b"one\ntwo\n"


def test_broadcast_skips_connections_yet_to_authenticate(clock):
    """A stranger that has not sent its auth line hears no broadcast."""
    from heartbeat import BroadcastServerProtocol

    factory = HeartbeatServerFactory(clock=clock, authToken=b"s3cret")
    factory.protocol = BroadcastServerProtocol
    member, tm = connect(factory, HalfCloseTransport())
    member.dataReceived(b"auth s3cret\npong\n")
    stranger, tx = connect(factory, HalfCloseTransport())
    other, to = connect(factory, HalfCloseTransport())
    other.dataReceived(b"auth s3cret\nnews\n")
    assert tm.value() == b"news\n"
    assert tx.value() == b""
