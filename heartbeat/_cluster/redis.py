"""
The cluster on Redis: every server given the same Redis is a node of one
cluster, with presence and routing across all of them.

Presence is written by each node for its own connections (L{presence}),
kept honest by the nodes' heartbeats into Redis (L{liveness}), and lines
cross nodes over publish and subscribe (L{routing}); the link to Redis
(L{link}) is shared by all three, and by anything else that keeps state
in the same Redis.

Without Redis a node goes on serving its own connections: their
heartbeats, echoes and broadcasts within the node.  What needs the other
nodes fails at once with L{ClusterUnavailable}, and when Redis is back
the node registers again with what it has.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Union

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from .address import RedisAddress, parse_redis_url
from .interface import Cluster, Member, NodeInfo
from .link import RedisLink
from .liveness import NodeLiveness
from .presence import RedisPresence
from .routing import Router
from .scripts import NODES, Schema, parse_events

DEFAULT_NODE_TIMEOUT = 5.0


class RedisCluster(Cluster):
    """
    This node's part in a cluster on Redis.  Give it to the server's
    factory (C{HeartbeatServerFactory(cluster=...)}), call L{start} once
    the reactor runs and L{stop} (a L{Deferred}) before it stops.

    @ivar nodeTimeout: seconds after which the others take this node for
        dead if they have not heard from it.
    @ivar clock: the reactor that drives the link and the heartbeat.
    @ivar stopped: whether the node has left the cluster (it is stopping).
    @ivar observer: whether this process only looks at the cluster (a
        supervisor serving its workers' status page): it asks and sends,
        but is no node, and holds no connections.
    """

    log = Logger()

    def __init__(
        self,
        address: Union[RedisAddress, str],
        nodeId: Optional[str] = None,
        nodeTimeout: float = DEFAULT_NODE_TIMEOUT,
        reactor=None,
        observer: bool = False,
    ) -> None:
        super().__init__(nodeId)
        if isinstance(address, str):
            address = parse_redis_url(address)
        self.observer = observer
        if reactor is None:
            from twisted.internet import reactor
        self.clock = reactor
        self.address = address
        self.nodeTimeout = nodeTimeout
        self.schema = schema = Schema(address.db)
        # An observer hears only the answers to its own questions.
        self._channels = {
            schema.nodeChannel(self.nodeId).encode(): self._nodeMessageReceived,
        }
        if not observer:
            self._channels[schema.presenceChannel.encode()] = self._presenceReceived
            self._channels[schema.broadcastChannel.encode()] = self._broadcastReceived
        self.liveness = NodeLiveness(self, nodeTimeout)
        self.link = RedisLink(
            address,
            list(self._channels),
            self._messageReceived,
            self._linkUp,
            self._linkDown,
            timeout=min(2.0, nodeTimeout / 2),
            reactor=reactor,
            keepalive=self.liveness.period,
        )
        self.presence = RedisPresence(self, self.link, schema)
        self.router = Router(self, self.link, schema)
        self.stopped = False
        # Called as the node stops, before it leaves: what waits to be
        # written to Redis goes first (a session store's writes).
        self.beforeLeaving: List[Callable[[], None]] = []

    @property
    def up(self) -> bool:
        return self.link.up

    def start(self) -> None:
        self.log.info(
            "{what} {node} joining the cluster on Redis at {address} (node "
            "timeout {timeout}s)",
            what="observer" if self.observer else "node",
            node=self.nodeId,
            address=self.address.display,
            timeout=self.nodeTimeout,
        )
        self.link.start()
        if not self.observer:
            self.liveness.start()

    def stop(self) -> Deferred:
        """
        Leave the cluster at once: this node's connections leave presence
        as closed (when Redis can be told), and the link closes.
        """
        for flush in self.beforeLeaving:
            flush()
        self.stopped = True
        self.liveness.stop()
        self.router.stop()
        if self.link.up and not self.observer:
            d = self.presence.unregister()
            d.addErrback(
                lambda failure: self.log.warn(
                    "could not leave the cluster cleanly ({why}): the others "
                    "will remove this node after its timeout",
                    why=failure.getErrorMessage(),
                )
            )
        else:
            d = succeed(None)
        return d.addBoth(lambda _: self.link.stop())

    def _linkUp(self) -> None:
        # Whatever happened while the link was down, Redis may disagree.
        self.presence.dirty = True
        if not self.observer:
            self.liveness.beat()

    def _linkDown(self) -> None:
        self.presence.dirty = True

    # Presence

    def join(self, member: Member) -> None:
        super().join(member)
        if not self.stopped:
            self.presence.join(member)

    def leave(self, member: Member, reason: str) -> None:
        super().leave(member, reason)
        if not self.stopped:
            self.presence.leave(member, reason)

    def isOnline(self, name: str) -> Deferred:
        return self.presence.isOnline(name)

    def connectionsOf(self, name: str) -> Deferred:
        return self.presence.connectionsOf(name)

    def onlineCount(self) -> Deferred:
        return self.presence.onlineCount()

    def onlineNames(self, after: Optional[str] = None, count: int = 100) -> Deferred:
        return self.presence.onlineNames(after, count)

    def nodes(self) -> Deferred:
        def infos(rows) -> List[NodeInfo]:
            return [
                NodeInfo(node.decode("ascii", "replace"), int(count), float(heard),
                         float(left) > 0)
                for node, heard, left, count in rows
            ]

        return self.link.script(NODES, [], [self.schema.prefix]).addCallback(infos)

    def inspect(self, name: str) -> Deferred:
        return self.router.inspect(name, self.link.timeout)

    # Routing

    def broadcast(
        self, line: bytes, exclude: object = None, isBinary: Optional[bool] = None
    ) -> Deferred:
        return self.router.broadcast(line, exclude, isBinary)

    def sendTo(self, name: str, line: bytes, isBinary: Optional[bool] = None) -> Deferred:
        return self.router.sendTo(name, line, isBinary)

    def disconnect(self, name: str) -> Deferred:
        return self.router.disconnect(name)

    # What the other nodes publish

    def _messageReceived(self, channel: bytes, message: bytes) -> None:
        handler = self._channels.get(channel)
        if handler is not None:
            handler(message)

    def _presenceReceived(self, message: bytes) -> None:
        for node, name, reason in parse_events(message):
            if reason is None:
                self.presenceJoined(name, node)
            else:
                self.presenceLeft(name, node, reason)

    def _broadcastReceived(self, message: bytes) -> None:
        self.router.broadcastReceived(message)

    def _nodeMessageReceived(self, message: bytes) -> None:
        self.router.nodeMessageReceived(message)
