"""
The router's pure side, in memory: what it does with the link's failures
and with what other nodes publish, without a Redis.
"""

import gc
from types import SimpleNamespace

import pytest
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from heartbeat._cluster.interface import Cluster, ClusterUnavailable, PresentConnection
from heartbeat._cluster.routing import Router
from heartbeat._cluster.scripts import Schema

from .helpers import ClusterServer

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
        {"node": "n2", "connection": "n2#abc.1", "since": 1.0, "verified": False},
        {"node": "n3", "connection": "n3#def.4", "since": 2.0, "verified": False},
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


class Listener:
    """One of this node's connections, as the cluster sees it."""

    heartbeatAdmitted = heartbeatPresent = True
    heartbeatName = None
    heartbeatVerified = False
    heartbeatSince = 0.0

    def __init__(self, number, fails=False):
        self.heartbeatConnectionId = number
        self.fails = fails
        self.received = []

    def sendMessage(self, line, isBinary=None):
        if self.fails:
            raise RuntimeError("a bug in the application's protocol")
        if b"\n" in line:
            raise ValueError("an application line must not contain b'\\n'")
        self.received.append(line)

    heartbeatHear = sendMessage


def routed(members):
    cluster = Members()
    cluster.attach(ClusterServer(members))
    link = QuietLink()
    return cluster, link, Router(cluster, link, Schema(0))


@pytest.mark.parametrize("send", [
    lambda router: router.broadcast(b"two\nlines", None, None),
    lambda router: router.sendTo("n1#abc.1", b"two\nlines", None),
    lambda router: router.sendTo("alice", b"two\nlines", None),
])
def test_a_line_with_a_newline_is_refused_before_anything_is_sent(send):
    """A line holding a newline, which line peers cannot receive whole, is
    refused with ValueError before any connection, here or on another
    node, gets any of it."""
    cluster, link, router = routed([Listener(1), Listener(2)])
    with pytest.raises(ValueError, match="newline"):
        send(router)
    assert link.calls == []
    assert [member.received for member in cluster.node.members] == [[], []]


def test_the_local_cluster_refuses_a_newline_too():
    """Without Redis, the same: refused, nobody gets a part of it."""
    from heartbeat._cluster.local import LocalCluster

    cluster = LocalCluster("solo")
    members = [Listener(1), Listener(2)]
    cluster.attach(ClusterServer(members))
    for send in (cluster.broadcast, lambda line: cluster.sendTo("solo#x.1", line)):
        with pytest.raises(ValueError, match="newline"):
            send(b"two\nlines")
    assert [member.received for member in members] == [[], []]


def test_what_another_node_sends_never_raises_into_the_redis_client(unhandled):
    """A line from another node reaches every connection here, even when
    delivering to one of them raises; a line no line peer could receive
    (from a node that did not check it) is dropped with a warning, not a
    traceback through the Redis client."""
    members = [Listener(1), Listener(2, fails=True), Listener(3)]
    cluster, link, router = routed(members)
    router.broadcastReceived(b"Nn2 hello")
    assert [member.received for member in members] == [[b"hello"], [], [b"hello"]]
    assert len(unhandled) == 1
    assert "a bug in the application's protocol" in str(unhandled[0]["log_failure"].value)
    del unhandled[:]
    router.broadcastReceived(b"Nn2 two\nlines")
    router.nodeMessageReceived(b"SN" + cluster.keyOf(members[0]).encode() + b" two\nlines")
    assert [member.received for member in members] == [[b"hello"], [], [b"hello"]]
    assert unhandled == []


@pytest.mark.parametrize("name", ["a b", "a\nb", "lone \ud800", "x" * 300])
def test_a_name_that_can_be_no_ones_never_reaches_redis(name):
    """A name no connection can have (a space in it would make the line
    for 'a b' reach a as 'b ...') is no one's: nothing is published,
    nothing sent, no query asked, and nothing raises."""
    from heartbeat._cluster.presence import RedisPresence

    cluster, link, router = routed([Listener(1)])
    assert case.successResultOf(router.sendTo(name, b"hi", None)) == 0
    assert case.successResultOf(router.disconnect(name)) == 0
    presence = RedisPresence(SimpleNamespace(clock=Clock()), link, Schema(0))
    assert case.successResultOf(presence.isOnline(name)) is False
    assert case.successResultOf(presence.connectionsOf(name)) == []
    assert link.calls == []
    assert cluster.node.members[0].received == []
