"""
The newline-delimited wire format: heartbeats, application lines, errors.
"""

from __future__ import annotations

from typing import Optional, Tuple

from twisted.internet.interfaces import IDelayedCall
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from .._core.protocol import HeartbeatProtocol, peer_name
from .writecap import WriteCap

PING = b"ping"
PONG = b"pong"
AUTH = b"auth"
ERROR = b"error"

# The reasons a server gives in its last line, C{error <reason>}.
LINE_TOO_LONG = b"line too long"
LINE_TIMEOUT = b"line timeout"
SERVER_FULL = b"server full"
BAD_HANDSHAKE = b"bad handshake"
TOO_MANY_PINGS = b"too many pings"
UNAUTHORIZED = b"unauthorized"
TOKEN_EXPIRED = b"token expired"
DISCONNECTED = b"disconnected by server"
SESSIONS_UNAVAILABLE = b"sessions unavailable"

# What a token may hold: printable ASCII but the space.
_TOKEN_BYTES = bytes(range(0x21, 0x7F))


def parse_heartbeat(line: bytes) -> Optional[Tuple[bytes, Optional[bytes]]]:
    """
    Read a line (without its terminator) as a heartbeat, if it is one.

    @return: C{(b"ping" or b"pong", token or None)}, or C{None} for any
        other line, a malformed heartbeat included: those are the
        application's.
    """
    # Bytes methods, not a regular expression: this runs for every line,
    # and a regex match cost a third of the library's time per ping.
    kind = line[:4]
    if kind != PING and kind != PONG:
        return None
    if len(line) == 4:
        return kind, None
    token = line[5:]
    if (
        line[4] != 0x20
        or not 0 < len(token) <= 64
        or token.translate(None, _TOKEN_BYTES)
    ):
        return None
    return kind, token


def heartbeat_line(kind: bytes, token: Optional[bytes]) -> bytes:
    """
    The line for a ping or pong carrying C{token}, without its terminator.
    """
    return kind if token is None else kind + b" " + token


class HeartbeatLineProtocol(HeartbeatProtocol, LineReceiver):
    """
    Heartbeats over newline-delimited lines, with a hook for the rest.

    Lines end in C{\\n}; a trailing C{\\r} is stripped.  C{ping [token]} is
    answered at once with C{pong [token]}; C{pong [token]} is a sign of
    life; every other line goes to L{messageReceived}, as bytes.

    @ivar maxLineLength: the longest line accepted, without its terminator;
        a longer one gets C{error line too long} and a close.
    @ivar errorLinger: seconds a connection closed with an error keeps
        reading (and discarding) before it is aborted, so that the peer can
        read the error before the close resets the connection.
    @ivar lineTimeout: seconds a line may take to arrive whole, counted from
        its first byte; a peer dribbling bytes without ever finishing a line
        gets C{error line timeout} when more of it arrives after that.
        C{None}: no limit but the line length.
    @ivar maxWriteBuffer: bytes that may wait unsent to a peer that does not
        read; past that the connection is aborted, so one slow reader cannot
        grow the process.  C{None}: no cap.
    @ivar heartbeatFraming: the framing's name, for the status page.
    """

    delimiter = b"\n"
    maxLineLength = 65536
    errorLinger = 1.0
    lineTimeout: Optional[float] = None
    maxWriteBuffer: Optional[int] = None
    heartbeatFraming = "line"

    _closingWithError: bool
    _lingerCall: Optional[IDelayedCall]
    _partialSince: Optional[float]
    # Set on every new connection (see HeartbeatProtocol): ours, and the two
    # that LineReceiver would set on the first data.
    _connectionState = {
        "_closingWithError": False,
        "_lingerCall": None,
        "_partialSince": None,
        "_buffer": b"",
        "_busyReceiving": False,
        # The session the connection carries, if it asked for one.
        "_heartbeatSession": None,
    }

    @property
    def MAX_LENGTH(self) -> int:  # type: ignore[override]
        # LineReceiver counts a trailing \r against the limit; we do not.
        return self.maxLineLength + 1

    def connectionMade(self) -> None:
        if self.maxWriteBuffer is not None:
            self._writeCap = WriteCap.attach(self)
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:
        if self._closingWithError:
            # Read and dropped until the peer closes (see closeWithError).
            return
        super().dataReceived(data)
        if self.lineTimeout is not None and not self._closingWithError:
            if data[-1:] == b"\n":
                self._partialSince = None
            else:
                self._checkPartialLine(data)

    def _checkPartialLine(self, data: bytes) -> None:
        now = self._heartbeatLastReceived
        if b"\n" in data or self._partialSince is None:
            self._partialSince = now
        elif now - self._partialSince > self.lineTimeout:  # type: ignore[operator]
            self.closeWithError(LINE_TIMEOUT)

    def lineReceived(self, line: bytes) -> None:
        if line[-1:] == b"\r":
            line = line[:-1]
        elif len(line) > self.maxLineLength:
            self.lineLengthExceeded(line)
            return
        if self._heartbeatSession is not None:
            self.sessionLineReceived(line)
            return
        heartbeat = parse_heartbeat(line)
        if heartbeat is None:
            self.messageReceived(line)
        elif heartbeat[0] == PING:
            self.heartbeatPingReceived(heartbeat[1])
            self.pingReceived(heartbeat[1])
        else:
            self.heartbeatPongReceived(heartbeat[1])

    def sessionLineReceived(self, line: bytes) -> None:
        """
        A line of a connection that carries a session: the session framing
        (L{heartbeat._framing.resume.SessionLines}) reads it.
        """
        raise NotImplementedError

    def pingReceived(self, token: Optional[bytes]) -> None:
        """
        The peer pinged: answer at once with the same token.
        """
        self.sendLine(heartbeat_line(PONG, token))

    def messageReceived(self, line: bytes) -> None:
        """
        Override to handle an application line (no terminator, not decoded).
        """

    def sendMessage(self, line: bytes, isBinary: Optional[bool] = None) -> None:
        """
        Send one application line; the terminator is added here.

        @param isBinary: ignored, as a line is bytes whatever it holds;
            taken so that a broadcast can make the same call to line and
            WebSocket connections.
        @raise ValueError: C{line} holds a newline, which would split it.
        """
        if b"\n" in line:
            raise ValueError("an application line must not contain b'\\n'")
        self.sendLine(line)

    def sendLine(self, line: bytes) -> None:
        cap = self._writeCap
        if cap is not None and not cap.allow(len(line) + 1):
            return
        self.transport.write(line + b"\n")  # type: ignore[union-attr]

    def sendHeartbeatPing(self, token: bytes) -> None:
        self.sendLine(heartbeat_line(PING, token))

    def lineLengthExceeded(self, line: bytes) -> None:
        self.closeWithError(LINE_TOO_LONG)

    def closeWithError(self, reason: bytes, quiet: bool = False) -> None:
        """
        Send C{error <reason>} and close, without losing that line.

        Closing a socket that still has unread input makes the kernel send
        a reset, which can destroy the error before the peer reads it.  So
        the write side is shut once the line is flushed, input is read and
        dropped until the peer closes, and after L{errorLinger} seconds the
        connection is aborted anyway.

        @param quiet: do not log it (the caller logs, or throttles).
        """
        if self._closingWithError:
            return
        self._closingWithError = True
        if not quiet:
            self._heartbeatLog.info(
                "closing {peer}: {reason}",
                peer=peer_name(self),
                reason=reason.decode("ascii", "replace"),
            )
        self.stopHeartbeat()
        # Ends the parsing of what this read brought; later reads are dropped.
        self.clearLineBuffer()
        self.sendLine(ERROR + b" " + reason)
        transport = self.transport
        halfClose = getattr(transport, "loseWriteConnection", None)
        if halfClose is None:
            transport.loseConnection()  # type: ignore[union-attr]
            return
        halfClose()
        self._lingerCall = self._heartbeatResolveClock().callLater(
            self.errorLinger, transport.abortConnection  # type: ignore[union-attr]
        )

    def connectionLost(self, reason: Failure) -> None:
        if self._lingerCall is not None:
            if self._lingerCall.active():
                self._lingerCall.cancel()
            self._lingerCall = None
        # The cap refers back to this connection: without this, the two
        # (and the transport's unsent data) would wait for the garbage
        # collector's cycle search.
        self._writeCap = None
        super().connectionLost(reason)

