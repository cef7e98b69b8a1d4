"""
Node liveness: each node moves its deadline in Redis forward every
L{NodeLiveness.period} seconds, and retires the nodes whose deadline has
passed, in the same script; their records are then removed a chunk at a
time (see L{heartbeat._cluster.reaping}).

The deadline is Redis's own C{TIME} plus the node's C{--node-timeout}, so
the machines' clocks never meet.  A node missed for its timeout is retired
by the first survivor to beat after that (within a period: so within the
timeout plus a second), once, whichever survivors find it: the script's
first step takes it out of the set.  Time during which no node could beat
at all (Redis hung, or restarted from its saved data) does not count: see
L{heartbeat._cluster.scripts}.  A node that finds its own record gone
(Redis restarted empty, or the node was removed while it was cut off)
registers again with everything it has.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from .presence import NodeIdInUse
from .reaping import reap
from .scripts import HEARTBEAT, REAP_CHUNK
from .throttle import ThrottledWarning


class NodeLiveness:
    """
    The node's heartbeat into Redis.

    @ivar period: seconds between beats: a fifth of the node timeout, at
        most one second.
    @ivar slack: how long no node of the cluster may have beaten before
        Redis takes it for a stall that does not count (twice the period).
    """

    log = Logger()

    def __init__(self, cluster: Any, nodeTimeout: float) -> None:
        self.cluster = cluster
        self.nodeTimeout = nodeTimeout
        self.period = min(1.0, nodeTimeout / 5)
        self.slack = 2 * self.period
        self._loop: Optional[LoopingCall] = None
        self._beating: Optional[Deferred] = None
        self._registering: Optional[Deferred] = None
        self._reaping: Optional[Deferred] = None
        self._inUse = False
        self._warn = ThrottledWarning(
            self.log,
            "node heartbeat into Redis failed: {why} ({unlogged} more since "
            "the last such line)",
            cluster.clock,
        )

    @property
    def allowance(self) -> float:
        """
        What a stall adds to every deadline besides its own length: the
        time a node takes to reconnect (the link's longest wait between
        attempts) and beat.
        """
        return self.cluster.link.maxRetryDelay + self.period

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

    def beat(self) -> None:
        """
        One beat: register if Redis may disagree with this node (and no
        registration is under way), else move the deadline and retire the
        dead.  Never raises (the loop would stop); a step still under way
        is not doubled.
        """
        cluster = self.cluster
        if cluster.stopped or not cluster.link.up:
            return
        if cluster.presence.dirty and self._registering is None:
            self._registering = self._register()
        elif self._beating is None:
            schema = cluster.schema
            self._beating = cluster.link.script(
                HEARTBEAT,
                [],
                [schema.prefix, cluster.nodeId, cluster.incarnation,
                 repr(self.nodeTimeout), schema.presenceChannel, repr(self.slack),
                 repr(self.allowance), REAP_CHUNK],
            ).addCallback(self._beaten).addErrback(self._failed).addBoth(self._beatOver)

    def _beatOver(self, _: object) -> None:
        self._beating = None

    def _register(self) -> Deferred:
        cluster = self.cluster

        def registered(events: int) -> None:
            if self._inUse:
                self._inUse = False
                self.log.info("node id {node} is free again", node=cluster.nodeId)
            self.log.info(
                "node {node} registered in Redis with {count} connections "
                "({events} presence changes)",
                node=cluster.nodeId,
                count=cluster.presentCount,
                events=events,
            )

        def failed(failure: Failure) -> None:
            if not failure.check(NodeIdInUse):
                self._failed(failure)
            elif not self._inUse:
                self._inUse = True
                self.log.error(
                    "node id {node} is in use by another process that still "
                    "beats (give each its own --node-id): serving this node's "
                    "connections only, out of the cluster, until that one "
                    "stops beating",
                    node=cluster.nodeId,
                )

        def done(_: object) -> None:
            self._registering = None

        d = cluster.presence.register(self.nodeTimeout, self.slack, self.allowance)
        return d.addCallbacks(registered, failed).addBoth(done)

    def _beaten(self, reply) -> None:
        registered, retired, pending = (int(n) for n in reply)
        cluster = self.cluster
        if retired:
            self.log.info(
                "took {count} node(s) for dead: removing their connections "
                "from presence", count=retired,
            )
        if pending and self._reaping is None:
            self._reaping = reap(cluster.link, cluster.schema).addCallbacks(
                lambda _: None, self._failed
            )
            self._reaping.addBoth(self._reaped)
        if not registered:
            if self._registering is None and not cluster.presence.dirty:
                self.log.warn(
                    "node {node} was missing from Redis (Redis restarted "
                    "empty, or the others took this node for dead); "
                    "registering again",
                    node=cluster.nodeId,
                )
            cluster.presence.dirty = True

    def _reaped(self, _: object) -> None:
        self._reaping = None

    def _failed(self, failure: Failure) -> None:
        self._warn(why=failure.getErrorMessage())
