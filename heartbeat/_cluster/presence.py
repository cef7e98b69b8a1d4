"""
This node's presence in Redis: its joins and leaves, a batch at a time,
and, whenever Redis may have drifted from the node's own truth (a write
that failed, a link that was down, a Redis restarted empty, a node removed
while it was cut off), a registration that makes Redis agree with it
again.

Joins and leaves are gathered until the end of the reactor turn, not
sent one by one: a crowd admitted in one read, or whose handshake wait
ends on one tick, is one command rather than thousands.  And one batch
is in flight at a time, of at most L{MAX_BATCH} changes: Redis runs one
script at a time, and a long one (or many sent at once, each with its
reply timeout running) would hold every other node's commands past their
timeout.

A registration reads the node's records back a page at a time, then, in
one reactor turn, puts in place of whatever waits to be written the
changes that make Redis what the node has: joins for what Redis lacks,
leaves for what it has that the node no longer has (with the reason the
node remembers), and, when Redis lost the cluster's data, leaves for the
connections that ended while it could not be told (the other nodes heard
their joins, and would never hear of their end).  Changes sent again are
harmless: a join Redis has, or a leave of a record it lacks, is not told
twice.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Deque, Dict, List, Optional, Tuple, Union

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from .identity import is_present_name, new_incarnation, parse_connection_key
from .interface import ClusterUnavailable, Member, PresentConnection
from .link import RedisLink
from .reaping import reap
from .scripts import (
    BEGIN,
    CHANGES,
    MAX_BATCH,
    REASON_CODES,
    SCAN_PAGE,
    UNREGISTER,
    Schema,
)
from .throttle import ThrottledWarning

# Leaves remembered, with their reasons, while Redis cannot be told; past
# this many, the rest are told as "closed" when Redis is back (or, if Redis
# lost its data, not at all).
MAX_UNSYNCED = 100_000

# One change: kind (J, L or F), key, name, and the join's time or the
# leave's reason code.
Change = List[str]


class NodeIdInUse(Exception):
    """
    Another process holds this node's id in the cluster, and is alive (its
    deadline has not passed).
    """


class _Mark:
    """
    The end of a registration's changes in the queue: fires its
    L{Deferred} with the number of presence events they caused once they
    are all written, or fails if one of them could not be.
    """

    def __init__(self) -> None:
        self.deferred: Deferred = Deferred()
        self.events = 0
        self.failure: Optional[Failure] = None

    def done(self) -> None:
        if self.failure is None:
            self.deferred.callback(self.events)
        else:
            self.deferred.errback(self.failure)


# Before the time in a name's record: the name was verified.
VERIFIED = b"v"


def since_record(member: Member) -> str:
    """
    What a name's record holds of one connection: when it was admitted,
    marked when a token proved its name.  In the record the join writes
    anyway, so that marking costs Redis no command.
    """
    since = repr(member.heartbeatSince)
    return "v" + since if member.heartbeatVerified else since


class RedisPresence:
    """
    Writes this node's joins and leaves to Redis, registers it, and
    answers presence queries from Redis.

    @ivar dirty: whether Redis may disagree with this node, which the next
        node heartbeat then puts right (L{register}).
    @ivar epoch: the cluster's epoch when this node last registered (see
        L{heartbeat._cluster.scripts.BEGIN}), or C{None}.
    """

    log = Logger()

    def __init__(self, cluster: Any, link: RedisLink, schema: Schema) -> None:
        self.cluster = cluster
        self.link = link
        self.schema = schema
        self.dirty = True
        self.epoch: Optional[bytes] = None
        self._generation = 0
        # Connections that left while Redis could not be told: key ->
        # (name, reason code).
        self._unsynced: Dict[str, Tuple[str, str]] = {}
        self._queue: Deque[Union[Change, _Mark]] = deque()
        # The registration whose changes are in the queue, if any: the
        # batches sent before its mark leaves the queue are its.
        self._registration: Optional[_Mark] = None
        self._flush = None
        self._sending = False
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
        self._enqueue(["J", cluster.keyOf(member), cluster.nameOf(member),
                       since_record(member)])

    def leave(self, member: Member, reason: str) -> None:
        cluster = self.cluster
        key, name, code = cluster.keyOf(member), cluster.nameOf(member), REASON_CODES[reason]
        if not self.link.up:
            self.dirty = True
            self._remember(["L", key, name, code])
            return
        self._enqueue(["L", key, name, code])

    # Writing, a batch at a time

    def _enqueue(self, change: Change) -> None:
        self._queue.append(change)
        if self._flush is None and not self._sending:
            self._flush = self.cluster.clock.callLater(0, self._next)

    def _next(self) -> None:
        self._flush = None
        if self._sending or self.cluster.stopped:
            return
        queue = self._queue
        if queue and not self.link.up:
            # Nothing can be written: the next registration will.
            self.dirty = True
            self._drop(Failure(ClusterUnavailable("the link to Redis is down")))
            return
        batch: List[Change] = []
        while queue and len(batch) < MAX_BATCH:
            item = queue[0]
            if isinstance(item, _Mark):
                if batch:
                    break
                queue.popleft()
                self._registration = None
                item.done()
            else:
                batch.append(queue.popleft())
        if batch:
            self._sending = True
            self._write(batch).addBoth(self._written)

    def _written(self, _: object) -> None:
        self._sending = False
        self._next()

    def _write(self, batch: List[Change]) -> Deferred:
        cluster = self.cluster
        generation = self._generation
        mark = self._registration

        def done(reply) -> None:
            registered, events = (int(n) for n in reply)
            if mark is not None:
                mark.events += events
            if not registered:
                # This node's record is gone (removed while it was cut off,
                # or Redis lost it): the next heartbeat registers it anew.
                outOfStep(Failure(ClusterUnavailable("this node is not registered")))

        def failed(failure: Failure) -> None:
            self._warn(why=failure.getErrorMessage())
            outOfStep(failure)

        def outOfStep(failure: Failure) -> None:
            if mark is not None and mark.failure is None:
                mark.failure = failure
            for change in batch:
                self._remember(change)
            # A registration since this batch took its snapshot after it.
            if generation == self._generation:
                self.dirty = True

        return self.link.script(
            CHANGES,
            [],
            [self.schema.prefix, cluster.nodeId, cluster.incarnation,
             self.schema.presenceChannel, *(field for change in batch for field in change)],
        ).addCallbacks(done, failed)

    def _remember(self, change: Change) -> None:
        """
        Keep a leave that Redis was not told, with its name and reason, for
        the next registration.
        """
        kind, key, name, code = change
        if kind != "J" and (key in self._unsynced or len(self._unsynced) < MAX_UNSYNCED):
            self._unsynced[key] = (name, code)

    def _drop(self, why: Failure) -> None:
        """
        Let go of every change waiting to be written, keeping the leaves;
        a registration waiting for its changes fails with C{why}.
        """
        queue, self._queue = self._queue, deque()
        self._registration = None
        for item in queue:
            if isinstance(item, _Mark):
                if item.failure is None:
                    item.failure = why
                item.done()
            else:
                self._remember(item)

    # Registering

    def register(self, timeout: float, slack: float, allowance: float) -> Deferred:
        """
        Register this node with every connection it has, as it has them.

        @param timeout: the node timeout, after which the others take this
            node for dead if it does not beat.
        @param slack: how long no node may beat before Redis takes it for
            a stall, and C{allowance}, what a stall adds to every deadline
            besides its length (see L{heartbeat._cluster.scripts}).
        @return: a L{Deferred} firing with the number of presence events
            this caused; failing with L{NodeIdInUse}, or as the link's
            commands do.
        """
        cluster = self.cluster
        schema = self.schema

        def begin(_: object = None) -> Deferred:
            return self.link.script(
                BEGIN, [],
                [schema.prefix, cluster.nodeId, cluster.incarnation, repr(timeout),
                 repr(slack), repr(allowance), new_incarnation()],
            ).addCallback(begun)

        def begun(reply) -> Deferred:
            state, epoch = reply
            if state == b"in use":
                raise NodeIdInUse(cluster.nodeId)
            if state == b"reaping":
                # This node's records of a previous retirement go first:
                # its keys may be the same.
                return reap(self.link, schema, cluster.nodeId).addCallback(begin)
            if state == b"fresh":
                return self._reconcile({}, epoch)
            return self._readOwn().addCallback(self._reconcile, epoch)

        return begin()

    def _readOwn(self) -> Deferred:
        """
        This node's records as Redis has them, a page at a time.
        """
        records: Dict[str, str] = {}
        conns = self.schema.conns(self.cluster.nodeId)

        def page(cursor: bytes) -> Deferred:
            return self.link.call(
                "execute_command", "HSCAN", conns, cursor, "COUNT", SCAN_PAGE
            ).addCallback(read)

        def read(reply) -> object:
            cursor, flat = reply
            for i in range(0, len(flat), 2):
                records[flat[i].decode("utf-8", "replace")] = flat[i + 1].decode(
                    "utf-8", "replace")
            return records if cursor == b"0" else page(cursor)

        return page(b"0")

    def _reconcile(self, old: Dict[str, str], epoch: bytes) -> Deferred:
        """
        In one turn: what Redis must change to have what this node has, in
        place of whatever waits to be written.
        """
        cluster = self.cluster
        # What waits is in the snapshot below, or gone from it (with its
        # leave's reason kept).
        self._drop(Failure(ClusterUnavailable("registering again")))
        self._generation += 1
        self.dirty = False
        unsynced, self._unsynced = self._unsynced, {}
        lost = self.epoch is not None and epoch != self.epoch
        if lost:
            self.log.warn(
                "Redis lost the cluster's data (restarted empty, or another "
                "Redis): node {node} registers again, and tells the others of "
                "the {count} connection(s) that ended meanwhile",
                node=cluster.nodeId,
                count=len(unsynced),
            )
        self.epoch = epoch
        changes: List[Change] = []
        present = set()
        for member in cluster.presentMembers():
            key, name = cluster.keyOf(member), cluster.nameOf(member)
            present.add(key)
            if old.get(key) != name:
                changes.append(["J", key, name, since_record(member)])
        for key, name in old.items():
            if key not in present:
                changes.append(["L", key, name, unsynced.get(key, (name, "c"))[1]])
        if lost:
            for key, (name, code) in unsynced.items():
                if key not in present and key not in old:
                    changes.append(["F", key, name, code])
        mark = _Mark()

        def failed(failure: Failure) -> Failure:
            self.dirty = True
            for key, remembered in unsynced.items():
                self._unsynced.setdefault(key, remembered)
            return failure

        mark.deferred.addErrback(failed)
        self._queue.extend(changes)
        self._queue.append(mark)
        self._registration = mark
        self._next()
        return mark.deferred

    def unregister(self) -> Deferred:
        """
        This node leaves the cluster now: its connections leave as closed.
        """
        cluster = self.cluster

        def retired(registered) -> Optional[Deferred]:
            if int(registered):
                return reap(self.link, self.schema, cluster.nodeId)
            return None

        return self.link.script(
            UNREGISTER, [], [self.schema.prefix, cluster.nodeId, cluster.incarnation]
        ).addCallback(retired)

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
                    verified = since.startswith(VERIFIED)
                    found.append(PresentConnection(
                        parsed.node, text, float(since[1:] if verified else since), verified))
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
