"""
The one interface for what crosses processes: presence (who is connected,
where, since when), routing (a line to everyone, or to a name wherever it
is connected) and the counters of both.

L{Cluster} holds what every implementation shares: this node's own
present members, found by name without touching the network, and the
delivery of a line to them.  An implementation adds where the rest of the
cluster is: nowhere (L{heartbeat._cluster.local.LocalCluster}, the single
process) or in Redis (L{heartbeat._cluster.redis.RedisCluster}).
"""

from __future__ import annotations

from typing import (
    Dict,
    Iterable,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Protocol,
)

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from .._core.protocol import peer_name
from .identity import (
    check_node_id,
    connection_key,
    default_node_id,
    new_incarnation,
    parse_connection_key,
)

# Why a connection left presence.
CLOSED = "closed"
TIMEOUT = "timeout"
NODE_DIED = "node died"
# A session's client did not come back within the resume window.
EXPIRED = "expired"
REASONS = (CLOSED, TIMEOUT, NODE_DIED, EXPIRED)


def check_line(line: bytes) -> bytes:
    """
    @raise ValueError: C{line} holds a newline, which a line peer could
        not receive whole: refused before any connection gets any of it.
    """
    if b"\n" in line:
        raise ValueError(
            "a line sent through the cluster must not contain a newline (b'\\n')"
        )
    return line


class ClusterUnavailable(Exception):
    """
    The rest of the cluster could not be reached (Redis is down, hung or
    cut off): what needed it did not happen.  What this node could do by
    itself (deliver to its own connections) was done.
    """


class Member(Protocol):
    """
    What the cluster needs of a connection: a server connection of either
    framing is one.

    @ivar heartbeatConnectionId: its number on this node, never reused.
    @ivar heartbeatName: its name, or C{None}.
    @ivar heartbeatVerified: whether a token the server verified gave it
        its name, rather than the client claiming it.
    @ivar heartbeatSince: the clock's time it was admitted.
    @ivar heartbeatPresent: whether it is in presence now.
    @ivar heartbeatAdmitted: whether it hears broadcasts (at once once it
        is in presence; until then, held for it: see L{heartbeatHear}).
    """

    heartbeatConnectionId: int
    heartbeatName: Optional[str]
    heartbeatVerified: bool
    heartbeatSince: float
    heartbeatPresent: bool
    heartbeatAdmitted: bool
    heartbeatSmoothedRtt: Optional[float]
    heartbeatFraming: str

    def sendMessage(self, line: bytes, isBinary: Optional[bool] = None) -> None:
        ...

    def heartbeatHear(self, line: bytes, isBinary: Optional[bool]) -> None:
        """
        A broadcast for this connection: sent now, or held until its
        presence is settled, so that the answer to its handshake is the
        first thing it hears.
        """

    def heartbeatDisconnect(self) -> None:
        """
        Close the connection, telling the peer it was disconnected by the
        server.
        """


class ClusterNode(Protocol):
    """
    What the cluster needs of the server it serves: its live connections,
    and the hooks that hear presence change anywhere in the cluster.
    """

    def clusterMembers(self) -> Iterable[Member]:
        ...

    def presenceJoined(self, name: str, node: str) -> None:
        ...

    def presenceLeft(self, name: str, node: str, reason: str) -> None:
        ...


class PresentConnection(NamedTuple):
    """
    One connection of a present name.

    @ivar node: the node it is connected to.
    @ivar connection: its cluster-wide key (see L{heartbeat._cluster.identity}).
    @ivar since: when it was admitted, in seconds since the epoch by its
        node's clock.
    @ivar verified: whether its name was proved by a token the server
        verified (C{--jwt-key-file}), rather than claimed by the client.
    """

    node: str
    connection: str
    since: float
    verified: bool = False


class NodeInfo(NamedTuple):
    """
    One node of the cluster, as the operator's view shows it.

    @ivar lastHeard: seconds since the node was last heard from.
    """

    node: str
    connections: int
    lastHeard: float
    alive: bool


class Cluster:
    """
    Presence and routing for one node.  The server calls L{join} and
    L{leave} as its connections enter and leave presence; the application
    calls the queries and the sends, each of which returns a L{Deferred}.

    @ivar nodeId: this node's id.
    @ivar incarnation: this life of the node (see L{heartbeat._cluster.identity}).
    @ivar messagesSent: lines handed to the rest of the cluster.
    @ivar messagesReceived: lines received from other nodes.
    @ivar messagesFailed: lines that could not be handed over.
    """

    log = Logger()

    def __init__(self, nodeId: Optional[str] = None) -> None:
        """
        @raise ValueError: C{nodeId} cannot be a node id.
        """
        self.nodeId = check_node_id(nodeId) if nodeId is not None else default_node_id()
        self.incarnation = new_incarnation()
        self.messagesSent = 0
        self.messagesReceived = 0
        self.messagesFailed = 0
        self.node: Optional[ClusterNode] = None
        # Only named members are indexed: an unnamed one is found by its
        # number, so that it costs no entry here.
        self._named: Dict[str, List[Member]] = {}
        self._present = 0
        self._presentNamed = 0

    @property
    def up(self) -> bool:
        """
        Whether the rest of the cluster can be reached now.
        """
        return True

    @property
    def presentCount(self) -> int:
        """
        How many of this node's connections are in presence.
        """
        return self._present

    def attach(self, node: ClusterNode) -> None:
        self.node = node

    def start(self) -> None:
        """
        Begin serving: an implementation connects here.
        """

    def stop(self) -> Deferred:
        """
        Stop serving: this node leaves the cluster at once.
        """
        return succeed(None)

    # Identity

    def keyOf(self, member: Member) -> str:
        """
        The cluster-wide key of C{member}.
        """
        return connection_key(self.nodeId, self.incarnation, member.heartbeatConnectionId)

    def nameOf(self, member: Member) -> str:
        """
        The name C{member} is present under: its own, or its key.
        """
        name = member.heartbeatName
        return name if name is not None else self.keyOf(member)

    # Presence, from the server

    def join(self, member: Member) -> None:
        """
        C{member} enters presence (the server has set C{heartbeatPresent}).
        """
        self._present += 1
        name = member.heartbeatName
        if name is not None:
            self._presentNamed += 1
            self._named.setdefault(name, []).append(member)

    def leave(self, member: Member, reason: str) -> None:
        """
        C{member} leaves presence, for C{reason} (one of L{REASONS}).
        """
        self._present -= 1
        name = member.heartbeatName
        if name is not None:
            members = self._named.get(name)
            if members is not None and member in members:
                self._presentNamed -= 1
                members.remove(member)
                if not members:
                    del self._named[name]

    # This node's own members

    def localMembers(self, name: str) -> List[Member]:
        """
        This node's present members under C{name}.
        """
        members = self._named.get(name)
        if members is not None:
            return list(members)
        key = parse_connection_key(name)
        if (
            key is None
            or key.node != self.nodeId
            or key.incarnation != self.incarnation
            or self.node is None
        ):
            return []
        # An unnamed connection: a scan, the price of indexing none.
        for member in self.node.clusterMembers():
            if (
                member.heartbeatConnectionId == key.number
                and member.heartbeatPresent
                and member.heartbeatName is None
            ):
                return [member]
        return []

    def describe(self, member: Member) -> Dict[str, object]:
        """
        What the operator's search shows of one of this node's connections.
        """
        return {
            "node": self.nodeId,
            "connection": self.keyOf(member),
            "since": member.heartbeatSince,
            "verified": member.heartbeatVerified,
            "rtt": member.heartbeatSmoothedRtt,
            "transport": member.heartbeatFraming,
            "peer": peer_name(member),
        }

    def presentMembers(self) -> Iterator[Member]:
        if self.node is not None:
            for member in self.node.clusterMembers():
                if member.heartbeatPresent:
                    yield member

    def deliverLocally(self, name: str, line: bytes, isBinary: Optional[bool]) -> int:
        members = self.localMembers(name)
        for member in members:
            self._deliver(member.sendMessage, member, line, isBinary)
        return len(members)

    def broadcastLocally(
        self, line: bytes, exclude: object, isBinary: Optional[bool]
    ) -> int:
        sent = 0
        if self.node is not None:
            for member in list(self.node.clusterMembers()):
                if member is not exclude and member.heartbeatAdmitted:
                    self._deliver(member.heartbeatHear, member, line, isBinary)
                    sent += 1
        return sent

    def _deliver(self, send, member: Member, line: bytes, isBinary: Optional[bool]) -> None:
        # One connection's failure (a bug in its protocol) must not keep
        # the line from the others, nor reach whoever handed it over (the
        # Redis client, for a line from another node).
        try:
            send(line, isBinary)
        except Exception:
            self.log.failure("sending a line to {peer} raised", peer=peer_name(member))

    def disconnectLocally(self, name: str) -> int:
        members = self.localMembers(name)
        for member in members:
            member.heartbeatDisconnect()
        return len(members)

    def presenceJoined(self, name: str, node: str) -> None:
        if self.node is not None:
            try:
                self.node.presenceJoined(name, node)
            except Exception:
                self.log.failure("presenceJoined({name!r}, {node!r}) raised",
                                 name=name, node=node)

    def presenceLeft(self, name: str, node: str, reason: str) -> None:
        if self.node is not None:
            try:
                self.node.presenceLeft(name, node, reason)
            except Exception:
                self.log.failure("presenceLeft({name!r}, {node!r}, {reason!r}) raised",
                                 name=name, node=node, reason=reason)

    # Queries, for the application

    def isOnline(self, name: str) -> Deferred:
        """
        Whether C{name} has a connection anywhere in the cluster.
        """
        raise NotImplementedError

    def connectionsOf(self, name: str) -> Deferred:
        """
        Every connection of C{name}, as L{PresentConnection}s.
        """
        raise NotImplementedError

    def onlineCount(self) -> Deferred:
        """
        How many names are present (a connection without one counts once,
        under its key).
        """
        raise NotImplementedError

    def onlineNames(self, after: Optional[str] = None, count: int = 100) -> Deferred:
        """
        A page of present names, in byte order: at most C{count} of them,
        each after C{after}.  Pass the page's last name to get the next.
        """
        raise NotImplementedError

    def nodes(self) -> Deferred:
        """
        Every node of the cluster, as L{NodeInfo}s.
        """
        raise NotImplementedError

    def inspect(self, name: str) -> Deferred:
        """
        Every connection of C{name} with what its node knows of it (see
        L{describe}): its round trip, transport and peer.  A node that does
        not answer in time leaves only what presence knows.
        """
        raise NotImplementedError

    # Routing, for the application

    def broadcast(
        self, line: bytes, exclude: object = None, isBinary: Optional[bool] = None
    ) -> Deferred:
        """
        Send C{line} to every admitted connection of the cluster but
        C{exclude}.  This node's connections get it at once.

        @raise ValueError: C{line} holds a newline (see L{check_line}).

        @return: a L{Deferred} firing with how many of this node's
            connections got it, once the rest of the cluster has it too;
            failing with L{ClusterUnavailable} when it could not be handed
            to the rest.
        """
        raise NotImplementedError

    def sendTo(self, name: str, line: bytes, isBinary: Optional[bool] = None) -> Deferred:
        """
        Send C{line} to every connection of C{name} (a name, or a
        connection's key), wherever it is.

        @return: a L{Deferred} firing with how many connections it was
            handed to: this node's that got it, and those that presence
            records on the other nodes that received it (a node that is
            dead, or not listening, receives nothing and counts none); a
            connection that ended a moment before may still be counted.
            Failing with L{ClusterUnavailable} when other nodes could not
            be reached.
        @raise ValueError: C{line} holds a newline (see L{check_line}).
        """
        raise NotImplementedError

    def disconnect(self, name: str) -> Deferred:
        """
        Close every connection of C{name}, wherever it is, with C{error
        disconnected by server}.  The count is as L{sendTo}'s.

        @return: a L{Deferred} firing with how many connections were told.
        """
        raise NotImplementedError
