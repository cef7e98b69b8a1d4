"""
Heartbeats over WebSocket (Autobahn): the mixin's framing, a server that
joins the line server's connections, and a reconnecting client.

Two kinds of ping travel together.  A ping frame is answered by the peer's
WebSocket stack, in a browser even while the page's scripts are throttled
or frozen, so it keeps such a tab's connection alive and measures the
network's round trip.  A JSON ping, C{{"type":"ping","t":N}}, is answered
by the page's own code, which cannot see ping frames: it tells that code
the server is alive.
"""
from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, Iterable, Optional, Tuple

from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from .._core.protocol import HeartbeatProtocol, peer_name
from .writecap import WriteCap

# Close codes, in the range RFC 6455 leaves to applications; heartbeat.js
# knows them by the same numbers.
HEARTBEAT_TIMEOUT = 4000
UNAUTHORIZED_CODE = 4001
DISCONNECTED_CODE = 4002
TOKEN_EXPIRED_CODE = 4003
INVALID_MESSAGE = 4007
TRY_AGAIN_LATER = 4013
# RFC 6455's own, for a message over the size limit.
MESSAGE_TOO_BIG = 1009
# What RFC 6455 says a close without a status code was.
NO_STATUS = 1005

# RFC 6455's names of its codes, for a close that gives no reason.
_CODE_NAMES = {
    1000: "normal closure",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    NO_STATUS: "no status",
    1006: "abnormal closure",
    1007: "invalid payload",
    1008: "policy violation",
    MESSAGE_TOO_BIG: "message too big",
    1010: "mandatory extension",
    1011: "internal error",
}

# An application heartbeat is a small JSON object; anything longer is an
# application message, and never parsed.  A hello, with a name and a
# session in it, is the longest.
_MAX_HEARTBEAT = 2048

# heartbeat.js reads a text message of up to 2048 characters as a heartbeat,
# and a character (a UTF-16 unit) takes up to 3 bytes of UTF-8: a message
# sent to a page is checked up to this many bytes.
_MAX_PAGE_HEARTBEAT = 3 * _MAX_HEARTBEAT

OPEN = WebSocketProtocol.STATE_OPEN

# Message types reserved for heartbeats: "hello" carries the handshake (see
# heartbeat._framing.handshake) and the server's timing.
_CONTROL = ("ping", "pong", "hello")
# On a connection that carries a session, "ack" carries a count too.
_SESSION_CONTROL = _CONTROL + ("ack",)


def _control(payload: bytes, limit: int, types: Tuple[str, ...] = _CONTROL) -> Optional[dict]:
    """
    The JSON object in C{payload} if it is a heartbeat's (its C{type} is
    one of C{types}) and at most C{limit} bytes long, else C{None}.
    """
    if payload[:1] != b"{" or len(payload) > limit:
        return None
    try:
        message = json.loads(payload)
    except ValueError:
        return None
    if isinstance(message, dict) and message.get("type") in types:
        return message
    return None


def _count(n: object) -> Optional[int]:
    # A session's count, as a JSON heartbeat carries it.
    if isinstance(n, int) and not isinstance(n, bool) and n >= 0:
        return n
    return None


def parse_app_heartbeat(payload: bytes) -> Optional[Tuple[str, object]]:
    """
    Read a text message as an application heartbeat, if it is one.

    @return: C{(type, t)} for a JSON object whose C{type} is C{ping},
        C{pong} or C{hello} (C{t} is its C{"t"} member, or C{None}); C{None}
        for any other message, which is the application's.
    """
    message = _control(payload, _MAX_HEARTBEAT)
    return None if message is None else (message["type"], message.get("t"))


def app_message(kind: str, **fields: object) -> bytes:
    """
    An application control message such as C{{"type":"pong","t":3}}.
    """
    return json.dumps({"type": kind, **fields}, separators=(",", ":")).encode()


def _token(t: object) -> Optional[bytes]:
    # Our pings carry the mixin's token, a counter, as a JSON number.
    if isinstance(t, int) and not isinstance(t, bool):
        return b"%d" % (t,)
    return None


def _is_text(payload: bytes) -> bool:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def close_description(code: Optional[int], reason: Optional[str]) -> str:
    """
    A close as a log line gives it: its code, and its reason or, without
    one, what the code means (a close frame without a code is C{1005}).
    """
    if code is None:
        code = NO_STATUS
    reason = reason or _CODE_NAMES.get(code)
    return f"{code} {reason}" if reason else str(code)


def timers_on(clock: IReactorTime) -> SimpleNamespace:
    """
    Autobahn's handshake timers, driven by C{clock} like ours, so that a
    test's L{Clock} governs them too.
    """
    return SimpleNamespace(call_later=clock.callLater)

class WebSocketHeartbeat(HeartbeatProtocol):
    """
    The heartbeat mixin's framing for Autobahn: mix in before
    C{WebSocketServerProtocol} or C{WebSocketClientProtocol}.

    Every frame is a sign of life.  Pings are ping frames carrying the
    token; pong frames and JSON pongs carrying it back give the round trip.
    JSON pings are answered with a JSON pong carrying the same C{t}.  Other
    messages go to L{messageReceived}.  A peer silent past the timeout gets
    a close frame (L{HEARTBEAT_TIMEOUT}, C{"heartbeat timeout"}); Autobahn
    aborts the connection if no answer comes within C{closeHandshakeTimeout}.

    @ivar maxLineLength: the longest application message accepted, in
        bytes; a longer one closes the connection with L{MESSAGE_TOO_BIG}.
        Heartbeats always fit, however small this is.  C{None}: only
        Autobahn's own limits.
    @ivar maxWriteBuffer: bytes that may wait unsent to a peer that does not
        read; past that the connection is aborted, as a line connection's
        is (L{WriteCap}).  C{None}: no cap.
    @ivar heartbeatClosing: C{(code, reason)} of the close frame by which
        this side ended the connection (a timeout, a message too big), or
        C{None}.  It is why the connection ended, whatever Autobahn makes of
        the end of the closing handshake (a peer that never answers it).
    """

    heartbeatFraming = "websocket"
    maxLineLength: Optional[int] = None
    maxWriteBuffer: Optional[int] = None
    heartbeatClosing: Optional[Tuple[int, str]] = None
    # The session the connection carries, if it asked for one (see
    # heartbeat._framing.resume, whose counts ride on the JSON heartbeats).
    _heartbeatSession: Any
    _connectionState = {"_heartbeatSession": None}
    # Text messages that begin with one of these go as binary: the peer
    # reads such a text message as something else (a client's "auth ",
    # a fresh token, on a server that verifies tokens).
    _binaryPrefixes: Tuple[bytes, ...] = ()

    def heartbeatSettings(self) -> Any:
        """
        What this connection takes its C{heartbeatInterval},
        C{heartbeatTimeout}, C{heartbeatPongTimeout} (if it has one: else
        the class's) and C{maxLineLength} from when it connects: by default
        itself (its class attributes), as with any L{HeartbeatProtocol}.
        """
        return self

    # Twisted's and Autobahn's side

    def connectionMade(self) -> None:
        settings = self.heartbeatSettings()
        self.heartbeatInterval = settings.heartbeatInterval
        self.heartbeatTimeout = settings.heartbeatTimeout
        self.heartbeatPongTimeout = getattr(
            settings, "heartbeatPongTimeout", self.heartbeatPongTimeout
        )
        # Autobahn copies its factory's options into the connection here.
        super().connectionMade()
        self.setMessageLimit(settings.maxLineLength)
        if self.maxWriteBuffer is not None:
            self._writeCap = WriteCap.attach(self)

    def setMessageLimit(self, limit: Optional[int]) -> None:
        """
        Hold application messages to C{limit} bytes (L{maxLineLength}).
        """
        self.maxLineLength = limit
        if limit is not None:
            # Autobahn would close on any frame over its limits, heartbeats
            # included: they get room for both, and onMessage holds
            # application messages to the application's limit.
            self.maxFramePayloadSize = max(limit, _MAX_HEARTBEAT)
            self.maxMessagePayloadSize = max(limit, _MAX_HEARTBEAT)

    def onPing(self, payload: bytes) -> None:
        self.heartbeatPingReceived(payload or None)
        super().onPing(payload)  # type: ignore[misc]

    def onPong(self, payload: bytes) -> None:
        self.heartbeatPongReceived(payload or None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        session = self._heartbeatSession
        if session is not None and session.pending:
            session.input.append((payload, isBinary))
            return
        message = None if isBinary else _control(
            payload, _MAX_HEARTBEAT, _CONTROL if session is None else _SESSION_CONTROL
        )
        if message is None:
            limit = self.maxLineLength
            if limit is not None and len(payload) > limit:
                self._heartbeatTooBig(len(payload))
            elif session is None:
                self.messageReceived(payload, isBinary)
            else:
                session.receive(payload, isBinary)
            return
        kind = message["type"]
        if session is not None and kind != "hello":
            count = _count(message.get("n"))
            if count is not None and not session.countReceived(count):
                return
        if kind == "ping":
            t = message.get("t")
            self.heartbeatPingReceived(_token(t))
            if session is None:
                self.sendControlMessage("pong", t=t)
            else:
                self.sendControlMessage("pong", t=t, n=session.countToTell())
        elif kind == "pong":
            self.heartbeatPongReceived(_token(message.get("t")))
        elif kind == "hello":
            self.helloReceived(message)

    def _max_message_size_exceeded(self, size: int, limit: int, reason: str) -> None:
        # Autobahn's hook for a frame or message over its own limits, which
        # it would log and close on itself: the same close as ours, logged
        # once.  Failed, so that Autobahn gathers no more of the message.
        self.failedByMe = True
        self._heartbeatTooBig(size)

    def onCloseHandshakeTimeout(self) -> None:
        closing = self.heartbeatClosing
        if closing is None:
            super().onCloseHandshakeTimeout()  # type: ignore[misc]
            return
        # The peer did not answer the close frame that told it why: it is
        # gone, as this side presumed.  Aborted without Autobahn's warning,
        # which would blame the closing handshake.
        self.closeHandshakeTimeoutCall = None
        self._heartbeatAbortClosing()

    def sendData(self, data: bytes, sync: bool = False, chopsize: Optional[int] = None) -> None:
        # Everything Autobahn writes passes here: messages, pings, closes.
        cap = self._writeCap
        if cap is not None and not cap.allow(len(data)):
            return
        super().sendData(data, sync, chopsize)  # type: ignore[misc]

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        # As for a line connection: the cap refers back to this one.
        self._writeCap = None
        # Autobahn leaves this timer behind when the peer drops the
        # connection before answering our close frame.
        call = getattr(self, "closeHandshakeTimeoutCall", None)
        if call is not None:
            self.closeHandshakeTimeoutCall = None
            if call.active():
                call.cancel()

    # Ours

    def messageReceived(self, payload: bytes, isBinary: bool) -> None:
        """
        Override to handle an application message (heartbeats never arrive
        here).
        """

    def helloReceived(self, message: dict) -> None:
        """
        The peer sent C{{"type":"hello", ...}}: a client's handshake, or a
        server's answer to it.  Ignored unless overridden.
        """

    def sendMessage(  # type: ignore[override]
        self, payload: bytes, isBinary: Optional[bool] = None, **kwargs: object
    ) -> None:
        """
        Send a message once the connection is open; dropped while closing.

        @param isBinary: when not true, bytes that are valid UTF-8 go as a
            text message and any others as a binary one, so a line from the
            line server always reaches a browser intact.  And a message that
            the peer would read as a heartbeat (a small JSON object whose
            C{type} is C{ping}, C{pong} or C{hello}, or C{ack} on a
            connection that carries a session) goes as binary: an
            application message must never pass for one.  So does a
            client's message that a server would take for a fresh token
            (C{auth ...}).
        """
        if self.state != OPEN:  # type: ignore[attr-defined]
            return
        if not isBinary:
            types = _CONTROL if self._heartbeatSession is None else _SESSION_CONTROL
            isBinary = (
                not _is_text(payload)
                or payload.startswith(self._binaryPrefixes)
                or _control(payload, _MAX_PAGE_HEARTBEAT, types) is not None
            )
        super().sendMessage(payload, isBinary, **kwargs)  # type: ignore[misc]

    # What a session writes (see heartbeat._session.session.Session)

    def sessionWrite(self, payload: bytes, isBinary: Optional[bool] = None) -> None:
        WebSocketHeartbeat.sendMessage(self, payload, isBinary)

    def sessionReplay(self, kept: Iterable[Any]) -> None:
        for message in kept:
            if isinstance(message, bytes):
                self.sessionWrite(message)
            else:
                self.sessionWrite(*message)

    def sessionAck(self, count: int) -> None:
        self.sendControlMessage("ack", n=count)

    def sessionDeliver(self, payload: bytes, isBinary: Optional[bool] = None) -> None:
        self.messageReceived(payload, bool(isBinary))

    def sessionEnd(self) -> None:
        """
        A client's close frame, which its factory sends as it stops, ends
        the session: nothing more to say.
        """

    def sessionBroken(self, why: str) -> None:
        self._heartbeatLog.info(
            "closing {peer}: {why}", peer=peer_name(self), why=why
        )
        self._heartbeatClose(INVALID_MESSAGE, "bad ack")

    def sendControlMessage(self, kind: str, **fields: object) -> None:
        """
        Send C{{"type": kind, …fields}} in a frame of its own: small, never
        compressed, and exempt from the size limit meant for application
        messages (which may be set below a heartbeat's size).
        """
        if self.state == OPEN:  # type: ignore[attr-defined]
            self.sendFrame(opcode=1, payload=app_message(kind, **fields))  # type: ignore[attr-defined]

    def sendHeartbeatPing(self, token: bytes) -> None:
        self.sendPing(token)  # type: ignore[attr-defined]

    def heartbeatAbort(self) -> None:
        # The close frame tells a peer that was only deaf why.
        self._heartbeatClose(HEARTBEAT_TIMEOUT, "heartbeat timeout")

    def _heartbeatTooBig(self, length: int) -> None:
        self._heartbeatLog.info(
            "{peer} sent a message of {length} bytes, over the {limit}-byte limit",
            peer=peer_name(self),
            length=length,
            limit=self.maxLineLength,
        )
        self._heartbeatClose(MESSAGE_TOO_BIG, "message too big")

    def _heartbeatClose(self, code: int, reason: str) -> None:
        """
        Close with a frame that tells the peer why; what the peer sends after
        it is not served.  The connection is aborted if no answer comes
        within C{closeHandshakeTimeout}; without that timeout nothing would
        end the wait, so it is aborted at once instead.
        """
        self.stopHeartbeat()
        if self.heartbeatClosing is None:
            self.heartbeatClosing = (code, reason)
        if self.state == OPEN and self.closeHandshakeTimeout > 0:  # type: ignore[attr-defined]
            # Not sendClose, which refuses RFC 6455's own codes (1009).
            self.sendCloseFrame(code, reason.encode(), isReply=False)  # type: ignore[attr-defined]
        else:
            self._heartbeatAbortClosing()

    def _heartbeatAbortClosing(self) -> None:
        # What Autobahn's dropConnection does, less its warning: this side
        # has logged why it closes.
        self.wasClean = False
        self.wasNotCleanReason = self.heartbeatClosing[1]  # type: ignore[index]
        self.transport.abortConnection()  # type: ignore[attr-defined]
