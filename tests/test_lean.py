"""
What keeps a connection small and a ping cheap still behaves.
"""

from heartbeat import HeartbeatServerFactory

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
    copy, which would cost memory at every one of thousands of them."""
    factory = HeartbeatServerFactory(clock=clock)
    protocol, _ = connect(factory)
    protocol.dataReceived(b"ping 1\n")
    for name in ("heartbeatInterval", "heartbeatTimeout", "maxLineLength",
                 "_heartbeatGraced"):
        assert name not in vars(protocol)
    lose(protocol)
