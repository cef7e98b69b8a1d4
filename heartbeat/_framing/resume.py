"""
The wire format of a session connection (a client that asked to resume,
see L{heartbeat._framing.handshake}): counts on heartbeats, explicit
acknowledgements, and the escaping that keeps application lines from
passing for either.

Each side counts the application lines it has received in the session;
the count travels on the heartbeats both sides already send and, when
lines flow without a heartbeat between them, on a line of its own::

    ping <token> <count>    a ping carrying the sender's count
    pong <token> <count>    its answer, carrying the answerer's
    ack <count>             the count alone
    bye                     (client) the session is over: do not keep it

A ping or pong without a count is still one (a person typing C{ping}).
An application line that begins with C{.}, C{ping}, C{pong}, C{ack},
C{bye}, C{error}, C{auth} or C{heartbeat/} is sent with one C{.} in
front of it, and the receiver strips one leading C{.} from every
application line: so no line a peer writes can pass for a control line
(nor for a fresh token and its answer, see
L{heartbeat._server.tokens}), whatever it holds.  A
connection that never asked for a session sees none of this.

Over WebSocket the counts are members of the JSON heartbeats
(C{{"type":"ping","t":3,"n":120}}, C{{"type":"ack","n":120}}), and an
application message that would read as one (a text message holding such
a JSON object) goes as a binary message.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Tuple

from .handshake import PREFIX
from .line import AUTH, ERROR, PING, PONG, heartbeat_line, parse_heartbeat

ACK = b"ack"
BYE = b"bye"
ESCAPE = b"."

# The beginnings that make an application line need its escape.
_RESERVED = (ESCAPE, PING, PONG, ACK, BYE, ERROR, AUTH, PREFIX)

# A count is a decimal number of at most this many digits.
_MAX_DIGITS = 20


def escape(line: bytes) -> bytes:
    """
    An application line as a session connection writes it: with a C{.}
    in front when it could otherwise read as a control line.
    """
    return ESCAPE + line if line.startswith(_RESERVED) else line


def unescape(line: bytes) -> bytes:
    """
    An application line as a session connection read it: one leading C{.}
    stripped.
    """
    return line[1:] if line[:1] == ESCAPE else line


def parse_count(text: bytes) -> Optional[int]:
    """
    A count as the wire carries it (decimal digits, no sign), or C{None}.
    """
    if 0 < len(text) <= _MAX_DIGITS and text.isdigit() and text.isascii():
        return int(text)
    return None


def parse_control(line: bytes) -> Optional[Tuple[bytes, Optional[bytes], Optional[int]]]:
    """
    Read a line of a session connection as a control line, if it is one.

    @return: C{(kind, token, count)}: kind C{ping} or C{pong} (token and
        count each C{None} when absent), C{ack} (no token) or C{bye} (no
        token, no count); C{None} for an application line.
    """
    kind = line[:4]
    if kind == PING or kind == PONG:
        heartbeat = parse_heartbeat(line)
        if heartbeat is not None:
            return heartbeat[0], heartbeat[1], None
        token, space, count = line[5:].partition(b" ")
        number = parse_count(count)
        if space and number is not None and parse_heartbeat(kind + b" " + token):
            return kind, token, number
        return None
    if line[:4] == ACK + b" ":
        number = parse_count(line[4:])
        return None if number is None else (ACK, None, number)
    if line == BYE:
        return BYE, None, None
    return None


def control_line(kind: bytes, token: Optional[bytes], count: Optional[int]) -> bytes:
    """
    The control line for C{kind} carrying C{token} and C{count}, without
    its terminator.
    """
    words = [kind]
    if token is not None:
        words.append(token)
    if count is not None:
        words.append(b"%d" % (count,))
    return b" ".join(words)


class SessionLines:
    """
    A line connection's part in a session: mix in before
    L{heartbeat._framing.line.HeartbeatLineProtocol}.

    Once the handshake has given the connection a session (an object in
    C{_heartbeatSession}; see L{heartbeat._session.session.Session}), its
    lines are read as this module's wire format: control lines carry the
    other side's count to the session, application lines are unescaped
    and handed to the session, which counts them and delivers them to
    C{messageReceived}.  Until then, and for ever on a connection that did
    not ask for a session, nothing changes.

    The role (server or client) says what a broken session, a C{bye} and
    losing the session to another connection mean, in
    L{sessionBroken}, L{sessionByeReceived} and L{sessionTakenOver}.
    """

    _heartbeatSession: Any

    def sessionLineReceived(self, line: bytes) -> None:
        session = self._heartbeatSession
        if session.pending:
            session.input.append(line)
            return
        control = parse_control(line)
        if control is None:
            session.receive(line[1:] if line[:1] == ESCAPE else line)
            return
        kind, token, count = control
        if count is not None and not session.countReceived(count):
            return
        if kind == PING:
            self.heartbeatPingReceived(token)  # type: ignore[attr-defined]
            self.pingReceived(token)
        elif kind == PONG:
            self.heartbeatPongReceived(token)  # type: ignore[attr-defined]
        elif kind == BYE:
            self.sessionByeReceived()

    # The heartbeats carry the count

    def pingReceived(self, token: Optional[bytes]) -> None:
        session = self._heartbeatSession
        if session is None or token is None:
            self.sendLine(heartbeat_line(PONG, token))  # type: ignore[attr-defined]
        else:
            self.sendLine(control_line(PONG, token, session.countToTell()))  # type: ignore[attr-defined]

    def sendHeartbeatPing(self, token: bytes) -> None:
        session = self._heartbeatSession
        count = None if session is None else session.countToTell()
        self.sendLine(control_line(PING, token, count))  # type: ignore[attr-defined]

    # What the session writes

    def sessionWrite(self, payload: bytes, isBinary: Optional[bool] = None) -> None:
        self.sendLine(escape(payload))  # type: ignore[attr-defined]

    def sessionReplay(self, kept: Iterable[Any]) -> None:
        """
        Write the lines kept for the other side again, in one write.
        """
        lines = [
            escape(line if isinstance(line, bytes) else line[0]) + b"\n"
            for line in kept
        ]
        cap = self._writeCap  # type: ignore[attr-defined]
        if cap is None or cap.allow(sum(map(len, lines))):
            self.transport.writeSequence(lines)  # type: ignore[attr-defined]

    def sessionAck(self, count: int) -> None:
        self.sendLine(control_line(ACK, None, count))  # type: ignore[attr-defined]

    def sessionDeliver(self, payload: bytes, isBinary: Optional[bool] = None) -> None:
        self.messageReceived(payload)  # type: ignore[attr-defined]

    def sessionEnd(self) -> None:
        """
        (Client) tell the server the session is over, before closing.
        """
        self.sendLine(BYE)  # type: ignore[attr-defined]

    # The role's

    def sessionBroken(self, why: str) -> None:
        """
        The other side broke the session's rules (see
        L{heartbeat._session.session.SessionError}).
        """
        raise NotImplementedError

    def sessionByeReceived(self) -> None:
        """
        The other side ended the session with C{bye}.
        """

    def sessionTakenOver(self) -> None:
        """
        A newer connection resumed the session this one carried: close at
        once.
        """
        raise NotImplementedError
