"""
The server factory's heartbeat counters, which the summary, the status page
and the metrics read.
"""

import pytest

from heartbeat import HeartbeatServerFactory

from .helpers import connect, lose


class Recording(HeartbeatServerFactory):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.samples = []

    def roundTripMeasured(self, protocol, rtt):
        self.samples.append((protocol, rtt))


def test_pings_are_counted_both_ways(clock):
    """Pings sent to silent peers, and the peers' own pings, add up on the
    factory across connections."""
    factory = Recording(heartbeatInterval=1.0, heartbeatTimeout=3.0, clock=clock)
    a, _ = connect(factory)
    b, _ = connect(factory)
    clock.advance(1.0)
    assert factory.pingsSent == 2
    a.dataReceived(b"ping\nping 7\n")
    b.dataReceived(b"pong 1\n")
    assert factory.pingsReceived == 2
    lose(a)
    lose(b)
    assert (factory.pingsSent, factory.pingsReceived) == (2, 2)


def test_each_round_trip_reaches_the_factory(clock):
    """Every answered ping gives the factory one sample, with its connection."""
    factory = Recording(heartbeatInterval=1.0, heartbeatTimeout=3.0, clock=clock)
    protocol, _ = connect(factory)
    clock.advance(1.0)
    clock.advance(0.25)
    protocol.dataReceived(b"pong 1\npong 1\n")
    assert factory.samples == [(protocol, pytest.approx(0.25))]

