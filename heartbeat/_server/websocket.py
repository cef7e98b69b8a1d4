"""
WebSocket connections served as connections of the line server: its
settings, cap, admission, counters and broadcast, on a port of their own
that also serves the browser client.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence
from urllib.parse import urlsplit

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.web.resource import Resource
from twisted.web.server import Site

from .._core.protocol import peer_name
from .._framing.handshake import (
    SUBPROTOCOL,
    handshake_from_json,
    json_fields,
    timing_fields,
)
from .._framing.line import (
    BAD_HANDSHAKE,
    DISCONNECTED,
    SERVER_FULL,
    SESSIONS_UNAVAILABLE,
    TOKEN_EXPIRED,
    UNAUTHORIZED,
)
from .._framing.websocket import (
    _MAX_HEARTBEAT,
    DISCONNECTED_CODE,
    INVALID_MESSAGE,
    OPEN,
    TOKEN_EXPIRED_CODE,
    TRY_AGAIN_LATER,
    UNAUTHORIZED_CODE,
    WebSocketHeartbeat,
    _control,
    close_description,
    timers_on,
)
from .._session.session import CLOSED
from .admission import CountedByServer
from .assets import Asset
from .factory import HeartbeatServerFactory

# Close codes by which a client says it is gone for good, not reconnecting.
_GOODBYES = (1000, 1001)
# Why the server closes a session's connection.
SESSION_OVERFLOW_CODE = 4008
SESSION_TAKEN_OVER = 4009

# The close code that tells a page why it was refused (not admitted, or
# its token expired).
_REFUSALS = {
    SERVER_FULL: TRY_AGAIN_LATER,
    UNAUTHORIZED: UNAUTHORIZED_CODE,
    BAD_HANDSHAKE: INVALID_MESSAGE,
    TOKEN_EXPIRED: TOKEN_EXPIRED_CODE,
    SESSIONS_UNAVAILABLE: TRY_AGAIN_LATER,
}
class HeartbeatWebSocketServerProtocol(
    CountedByServer, WebSocketHeartbeat, WebSocketServerProtocol
):
    """
    A WebSocket connection served as one more connection of the line
    server (the factory's C{heartbeatServer}): its settings, its cap, its
    admission, its counters and its broadcast.  Echoes each message, text
    as text and binary as binary; subclass and override L{messageReceived}
    for your own.

    When the server requires C{auth <token>}, it is the first message (else
    L{UNAUTHORIZED_CODE}); a server at its cap closes a new page with
    L{TRY_AGAIN_LATER}.  Each page learns the server's timing and message
    limit from C{{"type":"hello",…}} once it is admitted, and gets a JSON
    ping along with each ping frame from then on.  A client that offers
    the subprotocol C{heartbeat.v1} gets that hello in answer to its own
    (see L{heartbeat._framing.handshake}) instead.
    """

    _heartbeatNegotiating = False

    @property
    def heartbeatServer(self) -> HeartbeatServerFactory:
        return self.factory.heartbeatServer  # type: ignore[no-any-return]

    def heartbeatSettings(self) -> HeartbeatServerFactory:
        return self.heartbeatServer

    def connectionMade(self) -> None:
        self.maxWriteBuffer = self.heartbeatServer.maxWriteBuffer
        super().connectionMade()

    def onConnect(self, request) -> Optional[str]:
        if SUBPROTOCOL in request.protocols:
            self._heartbeatNegotiating = True
            return SUBPROTOCOL
        return None

    def onOpen(self) -> None:
        self.heartbeatJoin()

    def heartbeatConnectionAdmitted(self) -> None:
        if self._heartbeatNegotiating:
            # Its hello, which the answer carries everything in, is due.
            return
        # Only now: a page takes any message as proof that it is served,
        # and sends what it kept for the next connection.
        self.sendControlMessage(
            "hello",
            **json_fields(
                dict(
                    timing_fields(
                        self.heartbeatInterval,
                        self.heartbeatTimeout,
                        self.heartbeatPongTimeout,
                        self.maxLineLength,
                    )
                )
            ),
        )
        # It will send no hello, so there is no name to wait for.
        self.heartbeatEnterPresence()

    def heartbeatRefuse(self, reason: bytes) -> None:
        self._heartbeatClose(_REFUSALS[reason], reason.decode())

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        # Autobahn still delivers what arrives after our close frame (a
        # refusal, a timeout, a bad message), even in the very read that
        # opened the connection: such a connection has had its last word.
        if self.state != OPEN:
            return
        if self.heartbeatAdmitted:
            if (
                self.heartbeatServer.jwtVerifier is not None
                and not isBinary
                and payload.startswith(b"auth ")
            ):
                self.heartbeatTokenReceived(payload)
                return
            if self._heartbeatMayNegotiate and self._heartbeatFirstMessage():
                if self._heartbeatNegotiating:
                    hello = None if isBinary else _control(payload, _MAX_HEARTBEAT)
                    if hello is not None and hello["type"] == "hello":
                        self.heartbeatNegotiate(handshake_from_json, hello)
                        return
                self.heartbeatEnterPresence()
            super().onMessage(payload, isBinary)
        else:
            self.heartbeatAuthenticate(payload)

    def heartbeatAnswer(self, fields: Dict[str, Any]) -> None:
        self.sendControlMessage("hello", **json_fields(fields))

    def heartbeatReadHeld(self, held: List[Any]) -> None:
        for payload, isBinary in held:
            self.onMessage(payload, isBinary)

    def heartbeatDisconnect(self) -> None:
        self._heartbeatClose(DISCONNECTED_CODE, DISCONNECTED.decode())

    def _heartbeatClose(self, code: int, reason: str) -> None:
        self.heartbeatEndPresence()
        super()._heartbeatClose(code, reason)

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        session = self._heartbeatSession
        if (
            session is not None
            and not self.closedByMe
            and code in _GOODBYES
            and session.connection is self
        ):
            # The client closed for good (its page went, or it stopped),
            # not to reconnect: the server need not keep its session.
            self.heartbeatServer.sessions.end(session, CLOSED)
        # A close this side began is told by its own code and reason, however
        # the closing handshake ended.
        self.heartbeatLeave(close_description(*(self.heartbeatClosing or (code, reason))))

    def sendHeartbeatPing(self, token: bytes) -> None:
        super().sendHeartbeatPing(token)
        # A page takes a JSON ping for being served: none before admission.
        if self.heartbeatAdmitted:
            session = self._heartbeatSession
            count = None if session is None else session.countToTell()
            if count is None:
                self.sendControlMessage("ping", t=int(token))
            else:
                self.sendControlMessage("ping", t=int(token), n=count)

    def sendMessage(  # type: ignore[override]
        self, payload: bytes, isBinary: Optional[bool] = None, **kwargs: object
    ) -> None:
        session = self._heartbeatSession
        if session is None:
            super().sendMessage(payload, isBinary, **kwargs)
        else:
            session.send(payload, isBinary)

    def messageReceived(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)

    # A session's end, as this framing tells it

    def sessionTakenOver(self) -> None:
        self.heartbeatClosing = (SESSION_TAKEN_OVER, "session resumed by a newer connection")
        self.heartbeatEndPresence()
        self.stopHeartbeat()
        self._heartbeatAbortClosing()

    def sessionOverflowed(self) -> None:
        self._heartbeatClose(SESSION_OVERFLOW_CODE, "session overflow")


class BroadcastWebSocketServerProtocol(HeartbeatWebSocketServerProtocol):
    """
    Relays each message to every other admitted connection, line peers
    included: to pages, text as text and binary as binary.  A message that
    holds a newline (byte 0x0A, text or binary) is refused with a close
    (L{INVALID_MESSAGE}): line peers could not receive it whole.
    """

    def messageReceived(self, payload: bytes, isBinary: bool) -> None:
        if b"\n" in payload:
            self._heartbeatLog.info(
                "{peer} sent a message with a newline", peer=peer_name(self)
            )
            self._heartbeatClose(INVALID_MESSAGE, "a message must not contain a newline")
            return
        self.heartbeatServer.relay(payload, exclude=self.heartbeatMember, isBinary=isBinary)


def origin_pattern(origin: str) -> str:
    """
    An origin as a browser sends it (C{https://app.example.com}, C{*} in
    the host matching anything) as Autobahn matches it: with its port.

    @raise ValueError: not an http or https origin.
    """
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
        raise ValueError(f"{origin!r} is not an origin such as https://example.com")
    port = parts.port or {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{parts.hostname}:{port}"


class HeartbeatWebSocketServerFactory(WebSocketServerFactory):
    """
    Serves WebSocket connections as part of a L{HeartbeatServerFactory}.

    @ivar heartbeatServer: the line server whose settings, cap, counters
        and broadcast the WebSocket connections share.
    """

    protocol = HeartbeatWebSocketServerProtocol
    noisy = False

    def __init__(
        self,
        heartbeatServer: HeartbeatServerFactory,
        allowedOrigins: Optional[Sequence[str]] = None,
        **kwargs: object,
    ):
        """
        @param allowedOrigins: the origins whose pages may connect (see
            L{origin_pattern}); others are refused at the handshake (400), so
            that a page elsewhere cannot use its visitors' browsers to reach
            the server.  Programs, which send no C{Origin}, are not affected.
            C{None}: pages from anywhere.
        """
        super().__init__(**kwargs)
        self.heartbeatServer = heartbeatServer
        self.clock = heartbeatServer.clock
        self._batched_timer = timers_on(self.clock)
        self.setProtocolOptions(
            webStatus=False,
            failByDrop=False,
            allowedOrigins=(
                ["*"]
                if allowedOrigins is None
                else [origin_pattern(origin) for origin in allowedOrigins]
            ),
            # Pages from files say "null": anyone's, so allowed only to all.
            allowNullOrigin=allowedOrigins is None,
        )


def websocket_site(factory: HeartbeatWebSocketServerFactory) -> Site:
    """
    The HTTP side of the WebSocket port: C{/} upgrades to WebSocket, and
    C{/heartbeat.js} is the browser client, which any page may import.
    """
    root = Resource()
    root.putChild(b"", _UpgradeOnly(WebSocketResource(factory)))
    root.putChild(b"heartbeat.js", Asset("heartbeat.js", crossOrigin=True))
    # Bounds a connection that never finishes its upgrade; after the
    # upgrade the heartbeat governs it.
    timeout = factory.heartbeatServer.heartbeatTimeout or 60.0
    site = Site(root, timeout=timeout, reactor=factory.clock)
    site.noisy = False
    return site


class _UpgradeOnly(Resource):
    """
    Hands WebSocket upgrades over; a plain GET is told where the client is,
    instead of being failed (and logged) as a broken handshake.
    """

    isLeaf = True

    def __init__(self, websocket: WebSocketResource) -> None:
        super().__init__()
        self._websocket = websocket

    def render(self, request):
        if (request.getHeader(b"upgrade") or b"").lower() == b"websocket":
            return self._websocket.render(request)
        # Twisted knows no phrase for 426: RFC 9110's.
        request.setResponseCode(426, b"Upgrade Required")
        request.setHeader(b"upgrade", b"websocket")
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"A WebSocket endpoint: connect with the client at /heartbeat.js.\n"
