"""
What keeps a connection small and a ping cheap still behaves.
"""

from heartbeat import HeartbeatServerFactory, HeartbeatServerProtocol
from heartbeat._core.protocol import _SLOT_DEFAULTS

from .helpers import connect, lose, take


def test_a_connection_may_override_the_factory_setting(clock):
    """Server connections follow the factory's settings, yet one
    connection can be given its own interval without touching the rest."""
    factory = HeartbeatServerFactory(
        heartbeatInterval=1.0, heartbeatTimeout=3.0, clock=clock
    )
    a, ta = connect(factory)
    b, tb = connect(factory)
    a.heartbeatInterval = 2.0
    a.stopHeartbeat()
    a.startHeartbeat()
    clock.advance(1.01)
    assert (take(ta), take(tb)) == (b"", b"ping 1\n")
    clock.advance(0.99)
    assert take(ta) == b"ping 1\n"
    factory.heartbeatTimeout = 5.0
    assert b.heartbeatTimeout == 5.0
    lose(a)
    lose(b)
    assert clock.getDelayedCalls() == []


def test_settings_are_not_copied_into_each_connection(clock):
    """Each connection reads the factory's settings instead of holding a
    copy, and keeps its heartbeat state in slots, not in its dictionary:
    either would cost memory at every one of thousands of connections."""
    factory = HeartbeatServerFactory(clock=clock)
    protocol, transport = connect(factory)
    protocol.dataReceived(b"ping 1\n")
    protocol.heartbeatPing()
    protocol.dataReceived(b"pong 1\n")
    assert protocol.heartbeatRtt == 0.0
    copied = {"heartbeatInterval", "heartbeatTimeout", "maxLineLength",
              "lineTimeout", "maxWriteBuffer"}
    assert not (copied | set(_SLOT_DEFAULTS)) & set(vars(protocol))
    lose(protocol)


def test_a_subclass_init_need_not_call_up(clock):
    """A protocol with its own __init__ that never calls the mixin's still
    starts with a clean heartbeat state."""

    class Own(HeartbeatServerProtocol):
        def __init__(self):
            self.seen = []

    factory = HeartbeatServerFactory(clock=clock)
    factory.protocol = Own
    protocol, transport = connect(factory)
    assert protocol.heartbeatRtt is None
    assert protocol.heartbeatPingsSent == 0
    clock.advance(25.01)
    assert transport.value() == b"ping 1\n"
    lose(protocol)
    assert clock.getDelayedCalls() == []


def _attributes(protocol):
    return set(vars(protocol))


def test_a_connection_sets_no_attribute_after_it_is_made(clock):
    """Whatever a connection goes through (pings both ways, application
    lines, a line split over reads, a ping flood, an error), it sets no
    attribute it did not have once connected: one first set later, on
    connections accepted in a burst, costs each of them a whole attribute
    dictionary of its own."""
    for authToken in (None, b"secret"):
        factory = HeartbeatServerFactory(
            clock=clock, authToken=authToken, maxLineLength=20
        )
        protocol, transport = connect(factory)
        initial = _attributes(protocol)
        if authToken:
            protocol.dataReceived(b"auth secret\n")
        protocol.dataReceived(b"ping 1\nhello\n")
        protocol.dataReceived(b"hel")
        clock.advance(0.5)
        protocol.dataReceived(b"lo\n")
        protocol.heartbeatPing()
        protocol.dataReceived(b"pong 1\n")
        clock.advance(25.01)
        protocol.dataReceived(b"ping\n" * 11)
        assert b"error too many pings\n" in take(transport)
        protocol.dataReceived(b"x" * 30 + b"\n")
        lose(protocol)
        assert _attributes(protocol) == initial
