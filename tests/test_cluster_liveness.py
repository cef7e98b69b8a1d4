"""
The node's heartbeat into Redis, in memory: when it beats, and what it
asks of Redis.
"""

from types import SimpleNamespace

from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from heartbeat._cluster.liveness import NodeLiveness
from heartbeat._cluster.scripts import Schema


class RecordingLink:
    up = True
    maxRetryDelay = 1.0

    def __init__(self):
        self.scripts = []

    def script(self, source, keys, args):
        self.scripts.append(args)
        return succeed([1, 0, 0])


def node(**state):
    cluster = SimpleNamespace(
        clock=Clock(), link=RecordingLink(), schema=Schema(0), nodeId="n1",
        incarnation="abc", stopped=False,
        presence=SimpleNamespace(dirty=False),
    )
    for key, value in state.items():
        setattr(cluster, key, value)
    return cluster


def test_a_stopped_node_does_not_beat():
    """A node that has left the cluster does not move its deadline again
    (which would keep it listed as alive after it said goodbye)."""
    cluster = node(stopped=True)
    NodeLiveness(cluster, 1.0).beat()
    assert cluster.link.scripts == []
    cluster.stopped = False
    NodeLiveness(cluster, 1.0).beat()
    assert len(cluster.link.scripts) == 1
