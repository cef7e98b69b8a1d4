"""
How a node writes its presence to Redis, in memory: in batches, one at a
time, in order, through a registration.
"""

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from heartbeat._cluster.interface import Cluster
from heartbeat._cluster.presence import RedisPresence
from heartbeat._cluster.scripts import BEGIN, CHANGES, MAX_BATCH, Schema

from .helpers import ClusterServer

case = SynchronousTestCase()


class HeldLink:
    """A link whose scripts are answered when the test says."""

    up = True

    def __init__(self):
        self.sent = []

    def script(self, source, keys, args):
        d = Deferred()
        self.sent.append((source, args, d))
        return d

    def answer(self, reply):
        source, args, d = self.sent.pop(0)
        d.callback(reply)
        return source, args


class Connection:
    heartbeatPresent = True
    heartbeatVerified = False
    heartbeatSince = 1.0

    def __init__(self, number, name=None):
        self.heartbeatConnectionId = number
        self.heartbeatName = name


def node(count):
    cluster = Cluster("n1")
    cluster.clock = Clock()
    cluster.stopped = False
    connections = [Connection(n, f"c{n}") for n in range(1, count + 1)]
    cluster.attach(ClusterServer(connections))
    link = HeldLink()
    return cluster, link, RedisPresence(cluster, link, Schema(0)), connections


def changes(args):
    """The changes a CHANGES script carries, as (kind, name) pairs."""
    fields = args[4:]
    return [(fields[i], fields[i + 2]) for i in range(0, len(fields), 4)]


def test_a_crowd_is_written_a_batch_at_a_time():
    """A crowd of joins in one turn is a few scripts of at most MAX_BATCH
    changes, and the next goes only once the last is answered: no script
    waits behind many others, its reply timeout running."""
    cluster, link, presence, connections = node(2 * MAX_BATCH + 5)
    presence.dirty = False
    for connection in connections:
        presence.join(connection)
    cluster.clock.advance(0)
    assert len(link.sent) == 1
    sizes = []
    while link.sent:
        source, args = link.answer([1, 0])
        assert source == CHANGES
        sizes.append(len(changes(args)))
    assert sizes == [MAX_BATCH, MAX_BATCH, 5]
    assert not presence.dirty


def test_what_changes_while_registering_is_written_after_it():
    """A registration's changes go first, then what happened since, in
    order: a connection that leaves just after the registration's snapshot
    ends up gone from Redis, not registered again."""
    cluster, link, presence, connections = node(3)
    d = presence.register(1.0, 0.4, 1.2)
    source, args = link.answer([b"fresh", b"epoch1"])
    assert source == BEGIN
    # The snapshot is taken: the registration's changes are under way.
    connections[0].heartbeatPresent = False
    presence.leave(connections[0], "closed")
    cluster.clock.advance(0)
    source, args = link.answer([1, 3])
    assert changes(args) == [("J", "c1"), ("J", "c2"), ("J", "c3")]
    assert case.successResultOf(d) == 3
    source, args = link.answer([1, 1])
    assert changes(args) == [("L", "c1")]
    assert link.sent == [] and not presence.dirty


def test_after_redis_lost_its_data_the_ends_it_missed_are_told():
    """Registering into a Redis whose epoch is new (it lost the cluster's
    data) tells the leaves of the connections that ended while it could
    not be told; into the same Redis, they were told already."""
    cluster, link, presence, connections = node(2)
    presence.register(1.0, 0.4, 1.2)
    link.answer([b"fresh", b"epoch1"])
    link.answer([1, 2])
    link.up = False
    connections[1].heartbeatPresent = False
    presence.leave(connections[1], "timeout")
    link.up = True
    d = presence.register(1.0, 0.4, 1.2)
    link.answer([b"fresh", b"epoch2"])
    source, args = link.answer([1, 2])
    assert changes(args) == [("J", "c1"), ("F", "c2")]
    assert args[-1] == "t"
    assert case.successResultOf(d) == 2
