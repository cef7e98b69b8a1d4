"""
Sessions in Redis (C{--redis}): a client resumes on any node of the
cluster, and a server that restarts loses nothing that Redis kept.

The node that holds a session keeps it in memory, as the in-memory store
does, and records it in Redis, one script per reactor turn for all its
sessions (L{heartbeat._session.scripts}).  A line the server sends is
written to its client only once Redis has it ("a line is counted as sent
only once it is in the store"), and the count of the client's lines that
the server's application has received is told to the client only once
Redis has it too, in the same script as the lines the application sent
in answer: so whatever the client holds, Redis holds the rest, and a node
that resumes the session after this one (or after its restart) carries
on from exactly there.

A client that resumes on another node moves its session there: that node
takes it in one script, which raises its epoch and tells the node that
held it, which closes the connection it may still have and forgets it.
A node's writes are refused once the session is another's, so two nodes
never both write it.  While Redis cannot be reached, a session's lines
wait (within its bounds), the writes are tried again every half second,
and a client cannot resume on a node that does not hold its session: it
is told to try again.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, Union

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from .._cluster.interface import CLOSED as LEFT_CLOSED
from .._cluster.throttle import ThrottledWarning
from .._framing.handshake import Handshake
from .._framing.resume import parse_count
from .member import ServerSession
from .scripts import COMMIT, END, TAKE
from .session import MISMATCH, UNKNOWN, Kept
from .store import Fields, SessionStore, parse_session_id, session_id_text

# How a WebSocket client gets a line, as Redis keeps it: its first byte.
_FLAGS = {None: b"N", False: b"T", True: b"B"}
_BINARY = {flag: isBinary for isBinary, flag in _FLAGS.items()}


def _encoded(kept: Kept) -> bytes:
    if isinstance(kept, tuple):
        return _FLAGS[kept[1]] + kept[0]
    return b"N" + kept


def _decoded(stored: bytes) -> Tuple[bytes, Optional[bool]]:
    return stored[1:], _BINARY.get(stored[:1])


class RedisServerSession(ServerSession):
    """
    A session this node holds and records in Redis.

    @ivar epoch: the session's epoch in Redis, as this node knows it.
    @ivar committed: the lines received whose count Redis has.
    @ivar stored: the lines sent that Redis has (and that may be written).
    @ivar told: the count last told to the client.
    """

    __slots__ = ("epoch", "committed", "stored", "told")

    def __init__(self, sid: int, store: Any, connection: Any) -> None:
        super().__init__(sid, store, connection)
        self.epoch = 1
        self.committed = 0
        self.stored = 0
        self.told = 0

    @property
    def confirmed(self) -> int:
        return self.committed

    def countToTell(self) -> int:
        # What is told is what Redis has; what it gets later is told once
        # it has it (see recorded).
        self._owed = 0
        self.told = self.committed
        return self.committed

    def send(self, payload: bytes, isBinary: Optional[bool] = None) -> None:
        if self.keepWithin(payload, isBinary):
            self.store.changed(self)

    def receive(self, payload: bytes, isBinary: Optional[bool] = None) -> None:
        super().receive(payload, isBinary)
        # The count goes to Redis with whatever the application sent in
        # answer, in one script.
        if self.store is not None:
            self.store.changed(self)

    def acknowledge(self, count: int) -> None:
        before = self.unacknowledged
        super().acknowledge(count)
        if self.unacknowledged != before and self.store is not None:
            self.store.changed(self)

    def replay(self) -> None:
        connection = self.connection
        if connection is not None:
            kept = self.keptLines(0, self.stored - self.acknowledged)
            if kept:
                connection.sessionReplay(kept)

    def recorded(self, received: int, sent: int) -> None:
        """
        Redis has the count up to C{received} and the lines up to C{sent}:
        those lines may go to the client now.
        """
        if received > self.committed:
            self.committed = received
            if received > self.told and self.store is not None:
                # Lines told before Redis had them are owed again.
                self._owed = self._owed or 1
                self.acks().owe(self)
        stored = self.stored
        if sent <= stored:
            return
        self.stored = sent
        connection = self.connection
        if connection is not None:
            acked = self.acknowledged
            lines = self.keptLines(stored - acked, sent - acked)
            if lines:
                connection.sessionReplay(lines)


class RedisSessionStore(SessionStore):
    """
    The sessions of one node of a cluster on Redis.

    @ivar retryDelay: seconds between attempts to write to Redis while it
        cannot be reached.
    @ivar maxBatch: sessions written in one script, at most.
    """

    sessionClass = RedisServerSession
    retryDelay = 0.5
    maxBatch = 200

    def __init__(
        self,
        cluster: Any,
        window: float = 120.0,
        maxLines: int = 10000,
        maxBytes: int = 1 << 20,
    ) -> None:
        super().__init__(cluster.clock, cluster, window, maxLines, maxBytes)
        self.link = cluster.link
        self.schema = cluster.schema
        self.owner = f"{cluster.nodeId}#{cluster.incarnation}"
        self._dirty: Dict[RedisServerSession, None] = {}
        self._flush: Optional[IDelayedCall] = None
        cluster.router.handlers[b"T"] = self._takenElsewhere
        cluster.beforeLeaving.append(self._commit)
        self._warn = ThrottledWarning(
            self.log,
            "writing sessions to Redis failed: {why}; their lines wait, and "
            "the writes are tried again ({unlogged} more failed since the "
            "last such line)",
            cluster.clock,
        )

    # The handshake

    def negotiate(self, connection: Any, handshake: Handshake) -> Union[Fields, Deferred]:
        asked = handshake.get("resume")
        if asked is None:
            return self._start(connection)
        sid = parse_session_id(asked)
        peerReceived = parse_count(handshake.get("received", "").encode("ascii"))
        if sid is None or peerReceived is None:
            return self._lost(connection, asked, UNKNOWN if sid is None else MISMATCH)
        held = self.sessions.get(sid)
        d = self.link.script(
            TAKE,
            [],
            [
                self.schema.prefix,
                asked,
                self.owner,
                self.cluster.nodeId,
                connection.heartbeatName or "",
                peerReceived,
                self.schema.nodeChannelPrefix,
                "" if held is None else str(held.epoch),
                int(self.remember),
            ],
        )
        return d.addCallback(self._taken, connection, sid, asked, peerReceived)

    def _taken(
        self, reply: List[Any], connection: Any, sid: int, asked: str, peerReceived: int
    ) -> Fields:
        status = reply[0].decode("ascii", "replace")
        if status == "here":
            session = self.sessions.get(sid)
            reason = self._refusal(connection, session, sid, peerReceived)
            if reason is not None:
                return self._lost(connection, asked, reason)
            return self._resume(connection, session, peerReceived, False)
        if status != "taken":
            return self._lost(connection, asked, status)
        old = self.sessions.get(sid)
        if old is not None:
            self._forget(old)
        epoch, received, sent, lines = int(reply[1]), int(reply[2]), int(reply[3]), reply[4]
        session = self.sessionClass(sid, self, connection)
        session.epoch = epoch
        session.received = session.committed = received
        session.sent = sent - len(lines)
        for line in lines:
            session.keep(*_decoded(line))
        session.stored = session.sent
        self.sessions[sid] = session
        return self._resume(connection, session, peerReceived, True)

    def _start(self, connection: Any) -> Fields:
        fields = super()._start(connection)
        # Its record in Redis, at once: a client that resumes elsewhere
        # finds it.
        self.changed(connection._heartbeatSession)
        return fields

    # Writing to Redis

    def changed(self, session: RedisServerSession) -> None:
        """
        C{session} has something Redis does not: it goes in the next write.
        """
        if session.store is not self:
            return
        self._dirty[session] = None
        if self._flush is None:
            self._flush = self.clock.callLater(0, self._commit)

    def _commit(self) -> None:
        call, self._flush = self._flush, None
        if call is not None and call.active():
            call.cancel()
        dirty = list(self._dirty)
        self._dirty.clear()
        for start in range(0, len(dirty), self.maxBatch):
            self._write(dirty[start : start + self.maxBatch])

    def _write(self, batch: List[RedisServerSession]) -> None:
        args: List[Any] = [self.schema.prefix, self.owner, self.cluster.nodeId, int(self.remember)]
        written = []
        for session in batch:
            if session.store is not self:
                continue
            acked = session.acknowledged
            new = session.keptLines(session.stored - acked, session.sent - acked)
            args += [
                session_id_text(session.sid),
                session.epoch,
                session.received,
                acked,
                session.sent - len(new),
                len(new),
                repr(self.window),
                session.heartbeatName or "",
            ]
            args += [_encoded(kept) for kept in new]
            written.append((session, session.received, session.sent))
        if not written:
            return
        self.link.script(COMMIT, [], args).addCallbacks(
            self._written, self._failed, callbackArgs=(written,), errbackArgs=(written,)
        )

    def _written(self, results: List[Any], written: List[Tuple[RedisServerSession, int, int]]) -> None:
        for (session, received, sent), ok in zip(written, results):
            if session.store is not self:
                continue
            if int(ok):
                session.recorded(received, sent)
            else:
                self._forget(session)

    def _failed(self, failure: Failure, written: List[Tuple[RedisServerSession, int, int]]) -> None:
        self._warn(why=failure.getErrorMessage())
        for session, _, _ in written:
            if session.store is self:
                self._dirty[session] = None
        call, self._flush = self._flush, None
        if call is not None and call.active():
            call.cancel()
        self._flush = self.clock.callLater(self.retryDelay, self._commit)

    # Sessions that end, or move to another node

    def end(self, session: ServerSession, reason: str) -> None:
        if session.store is not self:
            return
        self._dirty.pop(session, None)  # type: ignore[call-overload]
        super().end(session, reason)
        self.link.script(
            END,
            [],
            [
                self.schema.prefix,
                session_id_text(session.sid),
                self.owner,
                session.epoch,  # type: ignore[attr-defined]
                reason,
                int(self.remember),
            ],
        ).addErrback(lambda failure: self._warn(why=failure.getErrorMessage()))

    def _takenElsewhere(self, message: bytes) -> None:
        """
        Another node took a session over (its client resumed there): this
        node's copy, and the connection it may still have, go.
        """
        text, _, epoch = message.partition(b" ")
        sid = parse_session_id(text.decode("ascii", "replace"))
        session = None if sid is None else self.sessions.get(sid)
        if session is not None and epoch.isdigit() and session.epoch < int(epoch):
            self._forget(session)

    def _forget(self, session: RedisServerSession) -> None:
        """
        C{session} is another node's now: it leaves this node, and its
        connection here, half-open or not, is closed at once.
        """
        if session.store is not self:
            return
        self._dirty.pop(session, None)
        connection = self._remove(session, LEFT_CLOSED)
        self.log.info(
            "session {session} moved to another node", session=self.describe(session)
        )
        if connection is not None:
            connection.sessionTakenOver()

    def stop(self) -> None:
        super().stop()
        call, self._flush = self._flush, None
        if call is not None and call.active():
            call.cancel()
