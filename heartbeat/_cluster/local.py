"""
The embedded cluster: one process that is the whole cluster.  Presence is
this node's own connections and routing is local delivery, so it costs
nothing beyond the index of named connections, and every answer is ready
at once.
"""

from __future__ import annotations

from typing import List, Optional

from twisted.internet.defer import Deferred, succeed

from .interface import Cluster, Member, NodeInfo, PresentConnection, check_line


class LocalCluster(Cluster):
    """
    A cluster of one node: the default, without Redis.
    """

    def join(self, member: Member) -> None:
        super().join(member)
        self.presenceJoined(self.nameOf(member), self.nodeId)

    def leave(self, member: Member, reason: str) -> None:
        super().leave(member, reason)
        self.presenceLeft(self.nameOf(member), self.nodeId, reason)

    def isOnline(self, name: str) -> Deferred:
        return succeed(bool(self.localMembers(name)))

    def connectionsOf(self, name: str) -> Deferred:
        return succeed(
            [
                PresentConnection(self.nodeId, self.keyOf(member), member.heartbeatSince,
                                  member.heartbeatVerified)
                for member in self.localMembers(name)
            ]
        )

    def onlineCount(self) -> Deferred:
        return succeed(len(self._named) + self._present - self._presentNamed)

    def onlineNames(self, after: Optional[str] = None, count: int = 100) -> Deferred:
        names: List[str] = list(self._named)
        names.extend(
            self.keyOf(member)
            for member in self.presentMembers()
            if member.heartbeatName is None
        )
        encoded = sorted(name.encode() for name in names)
        if after is not None:
            floor = after.encode()
            encoded = [name for name in encoded if name > floor]
        return succeed([name.decode() for name in encoded[:count]])

    def nodes(self) -> Deferred:
        return succeed([NodeInfo(self.nodeId, self._present, 0.0, True)])

    def inspect(self, name: str) -> Deferred:
        return succeed([self.describe(member) for member in self.localMembers(name)])

    def broadcast(
        self, line: bytes, exclude: object = None, isBinary: Optional[bool] = None
    ) -> Deferred:
        return succeed(self.broadcastLocally(check_line(line), exclude, isBinary))

    def sendTo(self, name: str, line: bytes, isBinary: Optional[bool] = None) -> Deferred:
        return succeed(self.deliverLocally(name, check_line(line), isBinary))

    def disconnect(self, name: str) -> Deferred:
        return succeed(self.disconnectLocally(name))
