"""
This node's presence in Redis: one script for the joins and leaves of a
reactor turn (at most L{MAX_BATCH} of them), and, whenever Redis may have
drifted from the node's own truth (a write that failed, a link that was
down, a Redis restarted empty, a node removed while it was cut off), one
script that makes Redis agree with it again.

Joins and leaves are gathered until the end of the reactor turn, not
sent one by one: a crowd admitted in one read, or whose handshake wait
ends on one tick, is one command rather than thousands, each with its
reply to wait for.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from .identity import is_present_name, parse_connection_key
from .interface import Member, PresentConnection
from .link import RedisLink
from .scripts import CHANGES, REASON_CODES, REGISTER, UNREGISTER, Schema
from .throttle import ThrottledWarning

# Leaves remembered, with their reasons, while Redis cannot be told; past
# this many, the rest are told as "closed" when Redis is back.
MAX_UNSYNCED = 100_000

# Joins and leaves sent in one script, at most.
MAX_BATCH = 1000


class RedisPresence:
    """
    Writes this node's joins and leaves to Redis, and answers presence
    queries from it.

    @ivar dirty: whether Redis may disagree with this node, which the next
        node heartbeat then puts right (L{resync}).
    """

    log = Logger()

    def __init__(self, cluster: Any, link: RedisLink, schema: Schema) -> None:
        self.cluster = cluster
        self.link = link
        self.schema = schema
        self.dirty = True
        self._generation = 0
        self._unsynced: Dict[str, str] = {}
        self._changes: List[List[str]] = []
        self._flush = None
        self._warn = ThrottledWarning(
            self.log,
            "presence write failed: {why}; this node re-registers at its next "
            "heartbeat ({unlogged} more failed since the last such line)",
            cluster.clock,
        )

    def join(self, member: Member) -> None:
        if not self.link.up:
            self.dirty = True
            return
        cluster = self.cluster
        self._queue(["J", cluster.keyOf(member), cluster.nameOf(member),
                     repr(member.heartbeatSince)])

    def leave(self, member: Member, reason: str) -> None:
        cluster = self.cluster
        key = cluster.keyOf(member)
        code = REASON_CODES[reason]
        if not self.link.up:
            self._remember(key, code)
            return
        self._queue(["L", key, cluster.nameOf(member), code])

    def _queue(self, change: List[str]) -> None:
        self._changes.append(change)
        if self._flush is None:
            self._flush = self.cluster.clock.callLater(0, self._send)

    def _send(self) -> None:
        self._flush = None
        changes, self._changes = self._changes, []
        if self.cluster.stopped:
            return
        for start in range(0, len(changes), MAX_BATCH):
            self._write(changes[start:start + MAX_BATCH])

    def _write(self, changes: List[List[str]]) -> None:
        cluster = self.cluster
        generation = self._generation
        unsynced = [(key, code) for kind, key, _, code in changes if kind == "L"]
        d = self.link.script(
            CHANGES,
            [],
            [self.schema.prefix, cluster.nodeId, cluster.incarnation,
             self.schema.presenceChannel, *(field for change in changes for field in change)],
        )

        def done(registered):
            if not registered:
                # This node's record is gone (removed while it was cut off,
                # or Redis lost it): the next heartbeat registers it anew.
                self._outOfStep(generation, unsynced)

        def failed(failure: Failure):
            self._warn(why=failure.getErrorMessage())
            self._outOfStep(generation, unsynced)

        d.addCallbacks(done, failed)

    def _outOfStep(self, generation: int, unsynced) -> None:
        for key, code in unsynced:
            self._remember(key, code)
        # A resync sent since this write took its snapshot after it.
        if generation == self._generation:
            self.dirty = True

    def _remember(self, key: str, code: str) -> None:
        self.dirty = True
        if len(self._unsynced) < MAX_UNSYNCED:
            self._unsynced[key] = code

    def resync(self, timeout: float) -> Deferred:
        """
        Register this node with every connection it has, as it has them:
        Redis drops what this node no longer has (a leave for each, with
        its reason when this node remembers it) and adds what it lacks (a
        join for each).

        @return: a L{Deferred} firing with the number of presence events
            this caused.
        """
        cluster = self.cluster
        # What waits to be sent is in the snapshot below, or gone from it
        # (with its reason kept).
        for kind, key, _, code in self._changes:
            if kind == "L":
                self._remember(key, code)
        self._changes = []
        self._generation += 1
        self.dirty = False
        unsynced, self._unsynced = self._unsynced, {}
        records: List[str] = []
        for member in cluster.presentMembers():
            records += [cluster.keyOf(member), cluster.nameOf(member),
                        repr(member.heartbeatSince)]
        reasons: List[str] = []
        for key, code in unsynced.items():
            reasons += [key, code]
        d = self.link.script(
            REGISTER,
            [],
            [self.schema.prefix, cluster.nodeId, cluster.incarnation, repr(timeout),
             self.schema.presenceChannel, len(records) // 3, *records, *reasons],
        )

        def failed(failure: Failure) -> Failure:
            self.dirty = True
            for key, code in unsynced.items():
                self._unsynced.setdefault(key, code)
            return failure

        return d.addErrback(failed)

    def unregister(self) -> Deferred:
        """
        This node leaves the cluster now: its connections leave as closed.
        """
        cluster = self.cluster
        return self.link.script(
            UNREGISTER,
            [],
            [self.schema.prefix, cluster.nodeId, cluster.incarnation,
             self.schema.presenceChannel],
        )

    # Queries

    def isOnline(self, name: str) -> Deferred:
        if not is_present_name(name):
            return succeed(False)
        return self.link.call("exists", self.schema.name(name)).addCallback(bool)

    def connectionsOf(self, name: str) -> Deferred:
        if not is_present_name(name):
            return succeed([])

        def connections(records: Dict[bytes, bytes]) -> List[PresentConnection]:
            found = []
            for key, since in records.items():
                text = key.decode("ascii", "replace")
                parsed = parse_connection_key(text)
                if parsed is not None:
                    found.append(PresentConnection(parsed.node, text, float(since)))
            return sorted(found, key=lambda c: (c.since, c.connection))

        return self.link.call("hgetall", self.schema.name(name)).addCallback(connections)

    def onlineCount(self) -> Deferred:
        return self.link.call("zcard", self.schema.names)

    def onlineNames(self, after: Optional[str], count: int) -> Deferred:
        start = b"-" if after is None else b"(" + after.encode()
        return self.link.call(
            "execute_command", "ZRANGEBYLEX", self.schema.names, start, b"+",
            "LIMIT", 0, count,
        ).addCallback(lambda names: [name.decode("utf-8", "replace") for name in names])

