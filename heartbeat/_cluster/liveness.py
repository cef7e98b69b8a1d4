"""
Node liveness: each node moves its deadline in Redis forward every
L{NodeLiveness.period} seconds, and removes the nodes whose deadline has
passed, in the same script.

The deadline is Redis's own C{TIME} plus the node's C{--node-timeout}, so
the machines' clocks never meet.  A node missed for its timeout is removed
by the first survivor to beat after that (within a period: so within the
timeout plus a second), once, whichever survivors find it: the script's
first step takes it out of the set.  A node that finds its own record
gone (Redis restarted empty, or the node was removed while it was cut
off) registers again with everything it has.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from .scripts import HEARTBEAT
from .throttle import ThrottledWarning


class NodeLiveness:
    """
    The node's heartbeat into Redis.

    @ivar period: seconds between beats: a fifth of the node timeout, at
        most one second.
    """

    log = Logger()

    def __init__(self, cluster: Any, nodeTimeout: float) -> None:
        self.cluster = cluster
        self.nodeTimeout = nodeTimeout
        self.period = min(1.0, nodeTimeout / 5)
        self._loop: Optional[LoopingCall] = None
        self._beating: Optional[Deferred] = None
        self._warn = ThrottledWarning(
            self.log,
            "node heartbeat into Redis failed: {why} ({unlogged} more since "
            "the last such line)",
            cluster.clock,
        )

    def start(self) -> None:
        self._loop = LoopingCall(self.beat)
        self._loop.clock = self.cluster.clock
        self._loop.start(self.period, now=False).addErrback(
            lambda failure: self.log.failure("node heartbeat stopped", failure)
        )

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def beat(self) -> Deferred:
        """
        One beat: register in full if Redis may disagree with this node,
        else move the deadline and reap the dead.  Never fails (the loop
        would stop); a beat still under way is not doubled.
        """
        cluster = self.cluster
        if cluster.stopped or not cluster.link.up or self._beating is not None:
            return succeed(None)
        if cluster.presence.dirty:
            d = self._register()
        else:
            schema = cluster.schema
            d = cluster.link.script(
                HEARTBEAT,
                [],
                [schema.prefix, cluster.nodeId, cluster.incarnation,
                 repr(self.nodeTimeout), schema.presenceChannel],
            ).addCallback(self._beaten)
        self._beating = d
        d.addErrback(self._failed)
        d.addBoth(self._done)
        return d

    def _register(self) -> Deferred:
        def registered(events: int) -> None:
            self.log.info(
                "node {node} registered in Redis with {count} connections "
                "({events} presence changes)",
                node=self.cluster.nodeId,
                count=self.cluster.presentCount,
                events=events,
            )

        return self.cluster.presence.resync(self.nodeTimeout).addCallback(registered)

    def _beaten(self, reply) -> Optional[Deferred]:
        registered, reaped = reply
        if reaped:
            self.log.info("removed {count} dead node(s) from the cluster", count=reaped)
        if not registered:
            self.log.warn(
                "node {node} was missing from Redis (Redis restarted empty, or "
                "the others took this node for dead); registering again",
                node=self.cluster.nodeId,
            )
            return self._register()
        return None

    def _failed(self, failure: Failure) -> None:
        self._warn(why=failure.getErrorMessage())

    def _done(self, result: object) -> None:
        self._beating = None
