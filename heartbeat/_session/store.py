"""
The server's sessions: opened and resumed through the client handshake,
kept for the resume window after their last connection is lost, bounded
in what they keep, and remembered for a while after they end so that a
client that comes back too late is told why.

L{SessionStore} keeps them in this process's memory: a client resumes
only on the server that holds its session, and a server that restarts
has forgotten them all (its clients are told C{lost=unknown}).  With
C{--redis} they live in Redis (L{heartbeat._session.redis}).
"""

from __future__ import annotations

import base64
import secrets
from collections import Counter, deque
from typing import Any, Deque, Dict, Optional, Tuple, Union

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from .._cluster.interface import CLOSED as LEFT_CLOSED
from .._cluster.interface import EXPIRED as LEFT_EXPIRED
from .._core.protocol import peer_name
from .._framing.handshake import Handshake
from .._framing.resume import parse_count
from .member import ServerSession
from .session import (
    CLOSED,
    EXPIRED,
    MISMATCH,
    OVERFLOW,
    UNKNOWN,
    AckScheduler,
)

# A session id: 128 random bits, written as 22 characters of base64url.
_ID_BYTES = 16
_ID_LENGTH = 22

# A float's rounding must not keep a session past its window.
_EPSILON = 1e-6

Fields = Dict[str, Union[str, int, None]]


def new_session_id() -> int:
    """
    A new session id: 128 random bits, as an int (which holds them in
    less memory than bytes would, at every session).
    """
    return secrets.randbits(8 * _ID_BYTES)


def session_id_text(sid: int) -> str:
    """
    A session id as the handshake carries it.
    """
    raw = sid.to_bytes(_ID_BYTES, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def parse_session_id(text: Optional[str]) -> Optional[int]:
    """
    The session id a client gave, or C{None} if it cannot be one.
    """
    if text is None or len(text) != _ID_LENGTH:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "==")
    except ValueError:
        return None
    sid = int.from_bytes(raw, "big")
    return sid if len(raw) == _ID_BYTES and session_id_text(sid) == text else None


class SessionStore:
    """
    The sessions of one server, in memory.

    The server's connections call L{negotiate} with a handshake that asks
    for a session, L{open} once the answer is written, and L{detach} when
    they end.  A session ends when its client says so, when it is away
    longer than L{window}, when more lines wait for it than L{maxLines} or
    L{maxBytes} allow, or when the server disconnects it.

    @ivar window: seconds a session lives after its last connection is
        lost.
    @ivar maxLines: unacknowledged lines a session may keep; one more ends
        it (C{overflow}).
    @ivar maxBytes: the same bound, in bytes of those lines.
    @ivar sessions: the live sessions, by id.
    @ivar acks: the scheduler that tells the sessions' counts.
    @ivar opened: sessions started.
    @ivar resumed: connections that resumed a session.
    @ivar refused: resumptions refused, by reason.
    @ivar ended: sessions ended, by reason.
    @ivar remember: seconds a session that ended is remembered, so that its
        client is told why it cannot resume (at most L{maxRemembered}).
    """

    log = Logger()
    remember = 3600.0
    maxRemembered = 10000
    sessionClass = ServerSession

    def __init__(
        self,
        clock: IReactorTime,
        cluster: Any,
        window: float = 120.0,
        maxLines: int = 10000,
        maxBytes: int = 1 << 20,
    ) -> None:
        self.clock = clock
        self.cluster = cluster
        self.window = window
        self.maxLines = maxLines
        self.maxBytes = maxBytes
        self.sessions: Dict[int, ServerSession] = {}
        self.acks = AckScheduler(clock)
        self.opened = 0
        self.resumed = 0
        self.refused: Counter = Counter()
        self.ended: Counter = Counter()
        # Connections whose handshake answer is being written: the count
        # the client gave, whether the session enters this node's presence
        # (it is new here), and whether it is resumed.
        self._opening: Dict[Any, Tuple[int, bool, bool]] = {}
        # The sessions that wait for their client, with when they expire
        # (here rather than in each session: most sessions never wait),
        # and the same in the order they expire.
        self._waiting: Dict[ServerSession, float] = {}
        self._detached: Deque[Tuple[float, ServerSession]] = deque()
        self._expiry: Optional[IDelayedCall] = None
        self._gone: Dict[int, str] = {}
        self._goneOrder: Deque[Tuple[float, int]] = deque()

    def describe(self, session: ServerSession) -> str:
        """
        A session as log lines name it: the start of its id (the whole id
        would let anyone who reads the log resume it) and its name.
        """
        name = session.heartbeatName
        short = session_id_text(session.sid)[:8]
        return short if name is None else f"{short} ({name})"

    @property
    def detachedCount(self) -> int:
        """
        How many sessions wait for their client to come back.
        """
        return len(self._waiting)

    # The handshake

    def negotiate(self, connection: Any, handshake: Handshake) -> Fields:
        """
        C{connection} asked for a session (C{resume}, bare for a new one, or
        C{resume=ID received=N}): find or start it.

        @return: the answer's fields: C{session} and C{received}, and
            C{lost} with the reason when the session asked for cannot be
            resumed (a new one is started in its place).
        """
        asked = handshake.get("resume")
        if asked is None:
            return self._start(connection)
        sid = parse_session_id(asked)
        peerReceived = parse_count(handshake.get("received", "").encode("ascii"))
        session = None if sid is None else self.sessions.get(sid)
        reason = self._refusal(connection, session, sid, peerReceived)
        if reason is not None:
            return self._lost(connection, asked, reason)
        assert session is not None and peerReceived is not None
        return self._resume(connection, session, peerReceived, False)

    def _lost(self, connection: Any, asked: str, reason: str) -> Fields:
        """
        The session C{asked} for cannot be resumed, for C{reason}: a new one
        is started, and the answer says why.
        """
        self.refused[reason] += 1
        self.log.info(
            "{peer} cannot resume session {session}: {reason}; a new one is "
            "started",
            peer=peer_name(connection),
            session=asked[:8],
            reason=reason,
        )
        fields = self._start(connection)
        fields["lost"] = reason
        return fields

    def _resume(
        self, connection: Any, session: ServerSession, peerReceived: int, new: bool
    ) -> Fields:
        connection._heartbeatSession = session
        self._opening[connection] = (peerReceived, new, True)
        return {"session": session_id_text(session.sid), "received": session.confirmed}

    def _refusal(
        self,
        connection: Any,
        session: Optional[ServerSession],
        sid: Optional[int],
        peerReceived: Optional[int],
    ) -> Optional[str]:
        """
        Why C{session} cannot be resumed by C{connection}, or C{None}.
        """
        if session is None:
            return UNKNOWN if sid is None else self._gone.get(sid, UNKNOWN)
        if session.heartbeatName != connection.heartbeatName:
            # Only its own client, under its own name, may resume it.
            return UNKNOWN
        if peerReceived is None or not (
            session.acknowledged <= peerReceived <= session.sent
        ):
            self.end(session, MISMATCH)
            return MISMATCH
        return None

    def _start(self, connection: Any) -> Fields:
        sid = new_session_id()
        session = self.sessionClass(sid, self, connection)
        self.sessions[sid] = session
        self.opened += 1
        connection._heartbeatSession = session
        self._opening[connection] = (0, True, False)
        return {"session": session_id_text(sid), "received": 0}

    def open(self, connection: Any) -> bool:
        """
        The handshake's answer is written: C{connection} carries its session
        from now on.  A connection that carried it until now (a half-open
        one the server had not yet found dead) is closed at once, and the
        lines the client has not received are written again.

        @return: whether the session started with this connection (rather
            than being resumed).
        """
        peerReceived, new, resumed = self._opening.pop(connection)
        session = connection._heartbeatSession
        if new:
            self.cluster.join(session)
        previous = session.attach(connection, peerReceived)
        self._returned(session)
        if previous is not None:
            previous.sessionTakenOver()
        replayed = session.unacknowledged
        session.replay()
        if resumed:
            self.resumed += 1
            self.log.info(
                "{peer} resumed session {session}{over}: {replayed} lines "
                "sent again, {received} received before",
                peer=peer_name(connection),
                session=self.describe(session),
                over="" if previous is None else ", taking it over from "
                + peer_name(previous),
                replayed=replayed,
                received=session.received,
            )
        return not resumed

    # Connections lost, sessions ended

    def abandon(self, connection: Any) -> None:
        """
        C{connection} ended before the answer that gives it its session
        could be written: the session waits for the next one.
        """
        peerReceived, new, resumed = self._opening.pop(connection)
        session = connection._heartbeatSession
        if new:
            self.cluster.join(session)
        if session.connection is None and session not in self._waiting:
            self._wait(session)

    def detach(self, session: ServerSession, connection: Any) -> None:
        """
        C{connection}, which carried C{session}, is lost: the session waits
        for its client for L{window} seconds.
        """
        if session.store is not self or not session.detach(connection):
            return
        self._wait(session)

    def _wait(self, session: ServerSession) -> None:
        expires = self.clock.seconds() + self.window
        self._waiting[session] = expires
        self._detached.append((expires, session))
        if self._expiry is None:
            self._expiry = self.clock.callLater(self.window, self._expire)

    def _returned(self, session: ServerSession) -> None:
        """
        C{session} waits for its client no more (it is back, or the session
        ended): once none waits, the expiry timer goes.
        """
        if self._waiting.pop(session, None) is None:
            return
        if not self._waiting:
            self._detached.clear()
            call, self._expiry = self._expiry, None
            if call is not None and call.active():
                call.cancel()

    def _expire(self) -> None:
        self._expiry = None
        now = self.clock.seconds() + _EPSILON
        detached = self._detached
        while detached and detached[0][0] <= now:
            expires, session = detached.popleft()
            # Only its latest wait counts: it may have come back since.
            if self._waiting.get(session) == expires:
                self.end(session, EXPIRED)
        if detached:
            self._expiry = self.clock.callLater(
                max(0.0, detached[0][0] - self.clock.seconds()), self._expire
            )

    def overflowed(self, session: ServerSession) -> None:
        """
        More lines wait for C{session}'s client than the store keeps: the
        session ends, and its connection (if any) is closed, so that the
        client learns it at its next handshake.
        """
        connection = session.connection
        self.end(session, OVERFLOW)
        if connection is not None:
            connection.sessionOverflowed()

    def end(self, session: ServerSession, reason: str) -> None:
        """
        End C{session} for C{reason}: it leaves presence, what it kept is
        dropped, and a client asking to resume it is told C{reason}.
        """
        if session.store is not self:
            return
        lost = session.unacknowledged
        self._remove(session, LEFT_EXPIRED if reason == EXPIRED else LEFT_CLOSED)
        self.ended[reason] += 1
        self._remember(session.sid, reason)
        if reason != CLOSED:
            self.log.info(
                "session {session} ended ({reason}), {lost} lines unacknowledged",
                session=self.describe(session),
                reason=reason,
                lost=lost,
            )

    def _remove(self, session: ServerSession, left: str) -> Any:
        """
        Take C{session} out of this store: it leaves presence for C{left},
        and what it kept is dropped.

        @return: the connection that carried it, or C{None}.
        """
        connection = session.connection
        del self.sessions[session.sid]
        self._returned(session)
        self.acks.forget(session)
        session.store = None
        session.connection = None
        session.acknowledge(session.sent)
        self.cluster.leave(session, left)
        return connection

    def _remember(self, sid: int, reason: str) -> None:
        now = self.clock.seconds()
        gone, order = self._gone, self._goneOrder
        while order and (
            order[0][0] + self.remember <= now or len(order) >= self.maxRemembered
        ):
            gone.pop(order.popleft()[1], None)
        gone[sid] = reason
        order.append((now, sid))

    def stop(self) -> None:
        """
        Cancel every timer (the server is stopping).
        """
        self.acks.stop()
        call, self._expiry = self._expiry, None
        if call is not None and call.active():
            call.cancel()
