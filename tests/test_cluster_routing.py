"""
The router's pure side, in memory: what it does with the link's failures
and with what other nodes publish, without a Redis.
"""

import gc

import pytest
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from heartbeat._cluster.interface import Cluster, ClusterUnavailable, PresentConnection
from heartbeat._cluster.routing import Router
from heartbeat._cluster.scripts import Schema

case = SynchronousTestCase()


@pytest.fixture
def unhandled():
    """The errors logged as nobody's (an unhandled error in a Deferred, a
    failure logged as a bug) while the test runs."""
    found = []

    def observe(event):
        if event.get("log_failure") is not None or event.get("isError"):
            found.append(event)

    globalLogPublisher.addObserver(observe)
    yield found
    gc.collect()
    globalLogPublisher.removeObserver(observe)


class HungLink:
    """A link to a Redis that hangs: every command fails."""

    up = True
    timeout = 2.0

    def __init__(self):
        self.calls = []

    def call(self, method, *args):
        self.calls.append((method, args))
        return fail(ClusterUnavailable("Redis at redis://127.0.0.1:6379/0: "
                                       "Not received Redis response in 2 seconds"))

    script = call


class Members(Cluster):
    """A node of the cluster whose presence says that alice is on n2 and n3."""

    def __init__(self):
        super().__init__("n1")
        self.clock = Clock()

    def connectionsOf(self, name):
        return succeed([PresentConnection("n2", "n2#abc.1", 1.0),
                        PresentConnection("n3", "n3#def.4", 2.0)])


def test_a_search_while_redis_hangs_answers_from_presence_at_once(unhandled):
    """The status page's search, while Redis hangs after presence answered,
    shows what presence knows without waiting out the timeout, and leaves
    nothing unhandled in the log."""
    cluster = Members()
    link = HungLink()
    router = Router(cluster, link, Schema(0))
    rows = case.successResultOf(router.inspect("alice", timeout=2.0))
    assert rows == [
        {"node": "n2", "connection": "n2#abc.1", "since": 1.0},
        {"node": "n3", "connection": "n3#def.4", "since": 2.0},
    ]
    assert sorted(args[0] for method, args in link.calls if method == "publish") == [
        "heartbeat:0:node:n2", "heartbeat:0:node:n3"]
    assert cluster.clock.getDelayedCalls() == []
    del rows, link, router
    gc.collect()
    assert unhandled == []


class QuietLink(HungLink):
    """A link to a Redis that takes every command and publishes to nodes
    that never answer."""

    def call(self, method, *args):
        self.calls.append((method, args))
        return succeed(1)


def test_stopping_ends_a_search_under_way():
    """A search still waiting for answers when the node stops is answered
    from presence then, and leaves no timer behind."""
    cluster = Members()
    router = Router(cluster, QuietLink(), Schema(0))
    d = router.inspect("alice", timeout=2.0)
    case.assertNoResult(d)
    router.stop()
    assert [row["connection"] for row in case.successResultOf(d)] == ["n2#abc.1", "n3#def.4"]
    assert cluster.clock.getDelayedCalls() == []
