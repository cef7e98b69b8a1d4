"""
The ready line server's connections: they echo or broadcast application
lines while keeping hostile peers in check.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, Dict, List, Optional

from twisted.logger import Logger
from twisted.python.failure import Failure

from .._core.protocol import peer_name
from .._framing.handshake import (
    format_handshake,
    is_handshake,
    parse_handshake,
)
from .._framing.line import (
    DISCONNECTED,
    TOO_MANY_PINGS,
    HeartbeatLineProtocol,
)
from .._framing.resume import SessionLines
from .._session.session import CLOSED
from .admission import CountedByServer

# Why the server closes a session connection, as its error line says.
SESSION_OVERFLOW = b"session overflow"
BAD_ACK = b"bad ack"

# Pings a peer may send at once, however close together, before the
# factory's minPingInterval governs its rate: enough for a person typing
# "ping" a few times, or a client measuring its round trip in a burst.
PING_BURST = 10
# What float rounding may add to the budget: a ping exactly on time is in.
_ROUNDING = 1e-6


class _FactorySetting:
    """
    A setting read from the connection's factory until the connection
    assigns its own (an instance attribute shadows this descriptor).

    The factory's settings are read, not copied into each connection:
    a copy costs memory at every one of thousands of connections.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: object, owner: Optional[type] = None):
        if instance is None:
            return self
        return getattr(instance.factory, self.name)  # type: ignore[attr-defined]


def _perLineSetting(name: str) -> property:
    """
    A setting read from the connection's factory on every line, which a
    connection cannot set for itself: a property whose getter is C code
    (L{attrgetter}) costs a fraction of what L{_FactorySetting}'s Python
    C{__get__} does, on each of the reads a ping makes.
    """
    return property(attrgetter("factory." + name))


class HeartbeatServerProtocol(CountedByServer, SessionLines, HeartbeatLineProtocol):
    """
    A server connection: registers with its factory, enforces its limits,
    echoes application lines back.  Subclass and override L{messageReceived}
    for your own application.
    """

    log = Logger()
    heartbeatInterval = _FactorySetting()  # type: ignore[assignment]
    heartbeatTimeout = _FactorySetting()  # type: ignore[assignment]
    heartbeatPongTimeout = _FactorySetting()  # type: ignore[assignment]
    maxLineLength = _perLineSetting("maxLineLength")  # type: ignore[assignment]
    lineTimeout = _perLineSetting("lineTimeout")  # type: ignore[assignment]
    maxWriteBuffer = _perLineSetting("maxWriteBuffer")  # type: ignore[assignment]
    # The ping budget, as a time (the generic cell rate algorithm): each
    # ping moves it one minPingInterval later, and a ping that finds it
    # more than PING_BURST - 1 intervals ahead of the clock is over budget.
    _pingBudgetAt: float
    # Why this side ended the connection, for its last log line; C{None}:
    # the peer ended it, or the network did.
    _endedBecause: Optional[str]
    _connectionState = {"_pingBudgetAt": 0.0, "_endedBecause": None}

    def connectionMade(self) -> None:
        if not self.heartbeatJoin():
            # A refused connection gets no heartbeat: it only hears why.
            return
        super().connectionMade()

    def connectionLost(self, reason: Failure) -> None:
        # An abort of our own reads "Connection was aborted locally": the
        # reason we aborted for is the one to tell.
        self.heartbeatLeave(self._endedBecause or reason.getErrorMessage())
        super().connectionLost(reason)

    def heartbeatAbort(self) -> None:
        self._endedBecause = "heartbeat timeout"
        super().heartbeatAbort()


    def lineReceived(self, line: bytes) -> None:
        if self.heartbeatAdmitted:
            if self.factory.jwtVerifier is not None and line.startswith(b"auth "):
                self.heartbeatTokenReceived(line.rstrip(b"\r"))
                return
            if self._heartbeatMayNegotiate and self._heartbeatFirstMessage():
                if is_handshake(line):
                    self.heartbeatNegotiate(parse_handshake, line.rstrip(b"\r"))
                    return
                self.heartbeatEnterPresence()
            super().lineReceived(line)
        else:
            self.heartbeatAuthenticate(line[:-1] if line[-1:] == b"\r" else line)

    def heartbeatAnswer(self, fields: Dict[str, Any]) -> None:
        self.sendLine(format_handshake(fields))

    def heartbeatReadHeld(self, held: List[bytes]) -> None:
        for line in held:
            if self._closingWithError or self.transport.disconnecting:
                return
            self.sessionLineReceived(line)

    def heartbeatRefuse(self, reason: bytes) -> None:
        self.closeWithError(reason, quiet=True)

    def heartbeatDisconnect(self) -> None:
        self.closeWithError(DISCONNECTED)

    def closeWithError(self, reason: bytes, quiet: bool = False) -> None:
        if self._endedBecause is None:
            self._endedBecause = reason.decode("ascii", "replace")
        self.heartbeatEndPresence()
        super().closeWithError(reason, quiet)

    def pingReceived(self, token: Optional[bytes]) -> None:
        minimum = self.factory.minPingInterval
        if minimum:
            # The time the data holding this ping arrived, already taken.
            now = self._heartbeatLastReceived
            budgetAt = self._pingBudgetAt
            if budgetAt < now:
                budgetAt = now
            elif budgetAt - now > (PING_BURST - 1) * minimum + _ROUNDING:
                self.log.warn(
                    "{peer} pings more often than every {minimum}s "
                    "(after a burst of {burst})",
                    peer=peer_name(self),
                    minimum=minimum,
                    burst=PING_BURST,
                )
                self.closeWithError(TOO_MANY_PINGS, quiet=True)
                return
            self._pingBudgetAt = budgetAt + minimum
        super().pingReceived(token)

    def messageReceived(self, line: bytes) -> None:
        session = self._heartbeatSession
        if session is None:
            self.sendLine(line)
        else:
            session.send(line)

    def sendMessage(self, line: bytes, isBinary: Optional[bool] = None) -> None:
        session = self._heartbeatSession
        if session is None:
            super().sendMessage(line, isBinary)
        elif b"\n" in line:
            raise ValueError("an application line must not contain b'\\n'")
        else:
            session.send(line)

    # A session's end, as this framing tells it

    def sessionTakenOver(self) -> None:
        self._endedBecause = "session resumed by a newer connection"
        self.heartbeatEndPresence()
        self.stopHeartbeat()
        self.transport.abortConnection()

    def sessionOverflowed(self) -> None:
        self.closeWithError(SESSION_OVERFLOW)

    def sessionBroken(self, why: str) -> None:
        self.log.info("closing {peer}: {why}", peer=peer_name(self), why=why)
        self.closeWithError(BAD_ACK, quiet=True)

    def sessionByeReceived(self) -> None:
        session = self._heartbeatSession
        self._endedBecause = "session ended by the client"
        self.heartbeatServer.sessions.end(session, CLOSED)
        self.heartbeatEndPresence()
        # Nothing after its bye is the client's session's, nor served.
        self._closingWithError = True
        self.clearLineBuffer()
        self.stopHeartbeat()
        self.transport.loseConnection()


class BroadcastServerProtocol(HeartbeatServerProtocol):
    """
    Relays each application line to every other connection of the factory.
    """

    def messageReceived(self, line: bytes) -> None:
        self.factory.relay(line, exclude=self.heartbeatMember)
