"""
One side of a session: how many lines it has received, and the lines it
has sent that the other side has not yet counted.

Counts, not sequence numbers: a line carries nothing extra.  Each side
counts the application lines it hands to its application; when a new
connection opens, each tells the other its count, drops what the count
covers and sends the rest again, in order.  Because a connection delivers
in order, the next line received is always the one after the count.  The
counts also travel on the heartbeats and, when lines flow without one
between them, on acknowledgements of their own (L{AckScheduler}), so that
the lines kept stay few under load and none once idle.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple, Union

from twisted.internet.interfaces import IDelayedCall, IReactorTime

# A line as kept: its bytes, or (bytes, isBinary) where the framing cares.
Kept = Union[bytes, Tuple[bytes, bool]]

# Why a session could not be resumed, as the server's answer says it
# (C{lost=...}), and why a session ended.
EXPIRED = "expired"  # its client was away longer than the window
OVERFLOW = "overflow"  # more lines waited for its client than the server keeps
UNKNOWN = "unknown"  # the server does not know it (restarted without a store)
MISMATCH = "mismatch"  # the client's counts are not the session's
CLOSED = "closed"  # its client ended it, or the server disconnected it


class SessionError(ValueError):
    """
    The peer broke the session's rules (it acknowledged lines never sent):
    its state is not this side's.
    """


def payload_of(kept: Kept) -> Tuple[bytes, Optional[bool]]:
    """
    A kept line as C{(bytes, isBinary)}.
    """
    if isinstance(kept, tuple):
        return kept
    return kept, None


class Held:
    """
    In a connection's place for its session while the store finds it: what
    the client sends meanwhile is held, to be read once the answer is
    written, and what the application sends it is held, to go through the
    session once it is found.

    @ivar input: what the client sent, as the framing received it.
    @ivar output: what the application sent, C{(payload, isBinary)}.
    """

    pending = True
    store = None
    connection = None

    def __init__(self) -> None:
        self.input: List[Any] = []
        self.output: List[Tuple[bytes, Optional[bool]]] = []

    def send(self, payload: bytes, isBinary: Optional[bool] = None) -> None:
        self.output.append((payload, isBinary))

    def countToTell(self) -> None:
        return None


class Session:
    """
    The state of one side of a session.

    The connection it is attached to (see L{attach}) provides
    C{sessionWrite(payload, isBinary)}, C{sessionReplay(kept)},
    C{sessionAck(count)} and C{sessionDeliver(payload, isBinary)}.

    @ivar received: application lines received from the other side and
        handed to this side's application.
    @ivar sent: application lines sent in the session, the first one
        numbered 1.
    @ivar connection: the connection the session is attached to, or
        C{None} while its client is reconnecting.
    @ivar ackEvery: received lines after which an acknowledgement goes at
        once, without waiting for the scheduler.
    """

    __slots__ = ("received", "sent", "_unacked", "_unackedBytes", "connection", "_owed")

    ackEvery = 64
    # Not a L{Held}: the connection reads through the session.
    pending = False

    def __init__(self) -> None:
        self.received = 0
        self.sent = 0
        # None while every line is acknowledged.  A list, not a deque: a
        # deque's first block alone is over 500 bytes, and thousands of
        # sessions that each keep a line or two at once would leave that
        # much per session in the process's memory for good.
        self._unacked: Optional[List[Kept]] = None
        self._unackedBytes = 0
        self.connection: Any = None
        # Lines received since the count was last told to the other side.
        self._owed = 0

    @property
    def acknowledged(self) -> int:
        """
        How many of the lines sent the other side has counted.
        """
        return self.sent - self.unacknowledged

    @property
    def unacknowledged(self) -> int:
        """
        How many lines are kept, sent but not yet counted by the other side.
        """
        unacked = self._unacked
        return 0 if unacked is None else len(unacked)

    @property
    def unacknowledgedBytes(self) -> int:
        return self._unackedBytes

    def unacknowledgedLines(self) -> List[Kept]:
        """
        The lines kept, oldest first.
        """
        return [] if self._unacked is None else list(self._unacked)

    def keptLines(self, start: int, stop: int) -> List[Kept]:
        """
        The lines kept from the C{start}th to before the C{stop}th, counted
        from the oldest (0).
        """
        unacked = self._unacked
        if unacked is None or stop <= start:
            return []
        return unacked[max(0, start) : stop]

    # Sending

    def keep(self, payload: bytes, isBinary: Optional[bool] = None) -> None:
        """
        Number C{payload} as the next line of the session and keep it until
        the other side counts it.
        """
        unacked = self._unacked
        if unacked is None:
            unacked = self._unacked = []
        unacked.append(payload if isBinary is None else (payload, isBinary))
        self._unackedBytes += len(payload)
        self.sent += 1

    def send(self, payload: bytes, isBinary: Optional[bool] = None) -> None:
        """
        Send an application line in the session: kept, and written at once
        when attached.
        """
        self.keep(payload, isBinary)
        connection = self.connection
        if connection is not None:
            connection.sessionWrite(payload, isBinary)

    def acknowledge(self, count: int) -> None:
        """
        The other side has received C{count} lines of the session: drop the
        ones kept that this covers.

        @raise SessionError: C{count} is more than was sent.  A count below
            what was already acknowledged is stale and ignored.
        """
        unacked = self._unacked
        if unacked is None:
            if count > self.sent:
                raise SessionError(f"acknowledged {count} of {self.sent} lines sent")
            return
        drop = count - (self.sent - len(unacked))
        if drop <= 0:
            return
        if drop > len(unacked):
            raise SessionError(f"acknowledged {count} of {self.sent} lines sent")
        if drop == len(unacked):
            self._unacked = None
            self._unackedBytes = 0
            return
        size = 0
        for kept in unacked[:drop]:
            size += len(kept if not isinstance(kept, tuple) else kept[0])
        del unacked[:drop]
        self._unackedBytes -= size

    def countReceived(self, count: int) -> bool:
        """
        The other side's count arrived on its connection (see
        L{acknowledge}).

        @return: whether it was good; if not, the connection has been told
            that the other side broke the session's rules
            (C{sessionBroken}), and reads no further.
        """
        try:
            self.acknowledge(count)
        except SessionError as e:
            self.connection.sessionBroken(str(e))
            return False
        return True

    def replay(self) -> None:
        """
        Write every kept line to the connection just attached, in order.
        """
        unacked = self._unacked
        if unacked is not None and self.connection is not None:
            self.connection.sessionReplay(unacked)

    # Receiving

    def receive(self, payload: bytes, isBinary: Optional[bool] = None) -> None:
        """
        An application line arrived from the other side: count it, hand it
        to this side's application, and see that the count is told.
        """
        self.received += 1
        owed = self._owed + 1
        if owed >= self.ackEvery:
            self.tellCount()
        else:
            self._owed = owed
            if owed == 1:
                self.acks().owe(self)
        self.connection.sessionDeliver(payload, isBinary)

    @property
    def confirmed(self) -> int:
        """
        How many of the lines received this side may tell the other it has:
        all of them, unless they must first be recorded (in Redis).
        """
        return self.received

    def countToTell(self) -> int:
        """
        The count, for a heartbeat or acknowledgement about to carry it.
        """
        self._owed = 0
        return self.confirmed

    def tellCount(self) -> None:
        """
        Send the count now, on a line of its own, if it is owed and there
        is a connection to carry it.
        """
        if self._owed and self.connection is not None:
            self.connection.sessionAck(self.countToTell())

    def acks(self) -> "AckScheduler":
        """
        The scheduler that tells this session's count once lines stop
        coming.
        """
        raise NotImplementedError

    # Connections

    def attach(self, connection: Any, peerReceived: int) -> Any:
        """
        Carry the session over C{connection} from now on: the other side has
        received C{peerReceived} lines, so the kept lines after those are
        due again (L{replay}); the count about to be told in the handshake
        is owed no more.

        @return: the connection it was attached to until now, or C{None}.
        @raise SessionError: C{peerReceived} is more than was sent, or less
            than the other side had already acknowledged: its state is not
            this side's.
        """
        if not self.acknowledged <= peerReceived <= self.sent:
            raise SessionError(
                f"the other side counts {peerReceived} lines received; "
                f"{self.acknowledged} to {self.sent} would match"
            )
        self.acknowledge(peerReceived)
        previous, self.connection = self.connection, connection
        self._owed = 0
        return previous

    def detach(self, connection: Any) -> bool:
        """
        C{connection} is lost: lines are kept, not written, until the next
        one.

        @return: whether the session was attached to it (and now is not).
        """
        if self.connection is not connection:
            return False
        self.connection = None
        # The next handshake tells the count.
        self.acks().forget(self)
        return True


class AckScheduler:
    """
    Tells the counts that sessions owe, once lines stop coming: one timer
    for every session of a server (or a client), armed while any owes.

    @ivar delay: seconds after a session's first untold line before its
        count goes on a line of its own.
    """

    def __init__(self, clock: IReactorTime, delay: float = 0.2) -> None:
        self.clock = clock
        self.delay = delay
        self._owing: List[Session] = []
        self._call: Optional[IDelayedCall] = None

    def owe(self, session: Session) -> None:
        self._owing.append(session)
        if self._call is None:
            self._call = self.clock.callLater(self.delay, self._tell)

    def forget(self, session: Session) -> None:
        """
        C{session} owes nothing any more (it ended, or lost its connection:
        the next handshake tells its count); once none owes, the timer goes.
        """
        owing = self._owing
        if session in owing:
            owing.remove(session)
            if not owing:
                self.stop()

    def _tell(self) -> None:
        self._call = None
        owing, self._owing = self._owing, []
        for session in owing:
            session.tellCount()

    def stop(self) -> None:
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()
        self._owing = []
