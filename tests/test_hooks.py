"""
The mixin's hooks that other framings and the server's counters build on.
"""

from heartbeat import HeartbeatLineProtocol

from .helpers import connect, factory_for, take


class Recording(HeartbeatLineProtocol):
    heartbeatInterval = 1.0
    heartbeatTimeout = 3.0

    def __init__(self):
        self.events = []

    def heartbeatPingReceived(self, token):
        self.events.append(("ping", token, self.transport.value()))

    def heartbeatTimedOut(self, silence):
        self.events.append(("timed out", self.transport.disconnected))

    def heartbeatAbort(self):
        self.events.append(("abort",))
        self.transport.loseConnection()


def test_each_ping_received_is_reported_before_the_answer(clock):
    """A counter or flood limit sees every ping, token included, before
    the pong goes out."""
    protocol, transport = connect(factory_for(Recording, clock))
    protocol.dataReceived(b"ping\nping abc\npong 1\nhello\n")
    assert protocol.events == [("ping", None, b""), ("ping", b"abc", b"pong\n")]
    assert take(transport) == b"pong\npong abc\n"


def test_abort_hook_replaces_the_abort_after_the_timeout(clock):
    """A framing with its own close message decides how a dead peer is
    dropped; it is asked once, after heartbeatTimedOut."""
    protocol, transport = connect(factory_for(Recording, clock))
    clock.pump([0.5] * 7)
    assert protocol.events == [("timed out", False), ("abort",)]
    assert transport.disconnecting and not transport.disconnected
    assert clock.getDelayedCalls() == []
