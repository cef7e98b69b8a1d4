"""
C{/presence.json} when the cluster cannot answer: a clear 503, never a
traceback in the log.
"""

import json

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from heartbeat._cluster.interface import ClusterUnavailable
from heartbeat._status.presence import PresenceResource


class HungCluster:
    """A cluster whose Redis hangs: each name's connections are asked for,
    and every question times out."""

    nodeId = "n1"
    up = True

    def __init__(self):
        self.pending = []

    def onlineNames(self, after, count):
        return succeed(["alice", "bob"])

    def connectionsOf(self, name):
        d = Deferred()
        self.pending.append(d)
        return d

    def nodes(self):
        return succeed([])


def render(resource, **args):
    request = DummyRequest([b""])
    request.args = {key.encode(): [value.encode()] for key, value in args.items()}
    assert resource.render(request) == NOT_DONE_YET
    return request


def test_a_hung_redis_is_a_503_that_says_why_and_logs_nothing():
    """While Redis hangs, /presence.json answers 503 with the reason, and
    the operator's log holds no traceback."""
    cluster = HungCluster()
    resource = PresenceResource(cluster)
    logged = []
    resource.log = Logger(observer=logged.append)
    request = render(resource)
    assert not request.finished
    why = "Redis at redis://127.0.0.1:6379/0: Not received Redis response in 2 seconds"
    for d in cluster.pending:
        d.errback(ClusterUnavailable(why))
    assert request.finished
    assert request.responseCode == 503
    assert json.loads(b"".join(request.written)) == {"error": why}
    assert logged == []
