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
import random as _random
from types import SimpleNamespace
from typing import Any, Callable, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Site

from ._assets import Asset
from ._client import HeartbeatClientFactory
from ._line import AUTH, SERVER_FULL, UNAUTHORIZED
from ._protocol import HeartbeatProtocol, _peer
from ._server import CountedByServer, HeartbeatServerFactory
from ._writecap import WriteCap

# Close codes, in the range RFC 6455 leaves to applications; heartbeat.js
# knows them by the same numbers.
HEARTBEAT_TIMEOUT = 4000
UNAUTHORIZED_CODE = 4001
INVALID_MESSAGE = 4007
TRY_AGAIN_LATER = 4013
# RFC 6455's own, for a message over the size limit.
MESSAGE_TOO_BIG = 1009

# The close code that tells a page why it was not admitted.
_REFUSALS = {SERVER_FULL: TRY_AGAIN_LATER, UNAUTHORIZED: UNAUTHORIZED_CODE}

# An application heartbeat is a small JSON object; anything longer is an
# application message, and never parsed.
_MAX_HEARTBEAT = 256

# heartbeat.js reads a text message of up to 256 characters as a heartbeat,
# and a character (a UTF-16 unit) takes up to 3 bytes of UTF-8: a message
# sent to a page is checked up to this many bytes.
_MAX_PAGE_HEARTBEAT = 3 * _MAX_HEARTBEAT

_OPEN = WebSocketProtocol.STATE_OPEN

# Message types reserved for heartbeats: "hello" carries the server's
# timing to a page when it opens.
_CONTROL = ("ping", "pong", "hello")


def _control(payload: bytes, limit: int) -> Optional[dict]:
    """
    The JSON object in C{payload} if it is a heartbeat's (its C{type} is
    reserved) and at most C{limit} bytes long, else C{None}.
    """
    if payload[:1] != b"{" or len(payload) > limit:
        return None
    try:
        message = json.loads(payload)
    except ValueError:
        return None
    if isinstance(message, dict) and message.get("type") in _CONTROL:
        return message
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


def _timers_on(clock: IReactorTime) -> SimpleNamespace:
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
    """

    heartbeatFraming = "websocket"
    maxLineLength: Optional[int] = None
    maxWriteBuffer: Optional[int] = None

    def heartbeatSettings(self) -> Any:
        """
        What this connection takes its C{heartbeatInterval},
        C{heartbeatTimeout} and C{maxLineLength} from when it connects: by
        default itself (its class attributes), as with any
        L{HeartbeatProtocol}.
        """
        return self

    # Twisted's and Autobahn's side

    def connectionMade(self) -> None:
        settings = self.heartbeatSettings()
        self.heartbeatInterval = settings.heartbeatInterval
        self.heartbeatTimeout = settings.heartbeatTimeout
        self.maxLineLength = limit = settings.maxLineLength
        # Autobahn copies its factory's options into the connection here.
        super().connectionMade()
        if limit is not None:
            # Autobahn would close on any frame over its limits, heartbeats
            # included: they get room for both, and onMessage holds
            # application messages to the application's limit.
            self.maxFramePayloadSize = max(limit, _MAX_HEARTBEAT)
            self.maxMessagePayloadSize = max(limit, _MAX_HEARTBEAT)
        if self.maxWriteBuffer is not None:
            self._writeCap = WriteCap.attach(self)

    def onPing(self, payload: bytes) -> None:
        self.heartbeatPingReceived(payload or None)
        super().onPing(payload)  # type: ignore[misc]

    def onPong(self, payload: bytes) -> None:
        self.heartbeatPongReceived(payload or None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        heartbeat = None if isBinary else parse_app_heartbeat(payload)
        if heartbeat is None:
            limit = self.maxLineLength
            if limit is not None and len(payload) > limit:
                self._heartbeatLog.info(
                    "{peer} sent a message of {length} bytes, over the "
                    "{limit}-byte limit",
                    peer=_peer(self),
                    length=len(payload),
                    limit=limit,
                )
                self._heartbeatClose(MESSAGE_TOO_BIG, "message too big")
            else:
                self.messageReceived(payload, isBinary)
        elif heartbeat[0] == "ping":
            self.heartbeatPingReceived(_token(heartbeat[1]))
            self.sendControlMessage("pong", t=heartbeat[1])
        elif heartbeat[0] == "pong":
            self.heartbeatPongReceived(_token(heartbeat[1]))

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

    def sendMessage(  # type: ignore[override]
        self, payload: bytes, isBinary: Optional[bool] = None, **kwargs: object
    ) -> None:
        """
        Send a message once the connection is open; dropped while closing.

        @param isBinary: when not true, bytes that are valid UTF-8 go as a
            text message and any others as a binary one, so a line from the
            line server always reaches a browser intact.  And a message that
            the peer would read as a heartbeat (a small JSON object whose
            C{type} is C{ping}, C{pong} or C{hello}) goes as binary: an
            application message must never pass for one.
        """
        if self.state != _OPEN:  # type: ignore[attr-defined]
            return
        if not isBinary:
            isBinary = (
                not _is_text(payload)
                or _control(payload, _MAX_PAGE_HEARTBEAT) is not None
            )
        super().sendMessage(payload, isBinary, **kwargs)  # type: ignore[misc]

    def sendControlMessage(self, kind: str, **fields: object) -> None:
        """
        Send C{{"type": kind, …fields}} in a frame of its own: small, never
        compressed, and exempt from the size limit meant for application
        messages (which may be set below a heartbeat's size).
        """
        if self.state == _OPEN:  # type: ignore[attr-defined]
            self.sendFrame(opcode=1, payload=app_message(kind, **fields))  # type: ignore[attr-defined]

    def sendHeartbeatPing(self, token: bytes) -> None:
        self.sendPing(token)  # type: ignore[attr-defined]

    def heartbeatAbort(self) -> None:
        # The close frame tells a peer that was only deaf why.
        self._heartbeatClose(HEARTBEAT_TIMEOUT, "heartbeat timeout")

    def _heartbeatClose(self, code: int, reason: str) -> None:
        """
        Close with a frame that tells the peer why; what the peer sends after
        it is not served.  Autobahn aborts the connection if no answer comes
        within C{closeHandshakeTimeout}; without that timeout nothing would
        end the wait, so the connection is dropped at once instead.
        """
        self.stopHeartbeat()
        if self.state == _OPEN and self.closeHandshakeTimeout > 0:  # type: ignore[attr-defined]
            # Not sendClose, which refuses RFC 6455's own codes (1009).
            self.sendCloseFrame(code, reason.encode(), isReply=False)  # type: ignore[attr-defined]
        else:
            self.wasClean = False
            self.wasNotCleanReason = reason
            self.dropConnection(abort=True)  # type: ignore[attr-defined]


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
    ping along with each ping frame from then on.
    """

    @property
    def heartbeatServer(self) -> HeartbeatServerFactory:
        return self.factory.heartbeatServer  # type: ignore[no-any-return]

    def heartbeatSettings(self) -> HeartbeatServerFactory:
        return self.heartbeatServer

    def connectionMade(self) -> None:
        self.maxWriteBuffer = self.heartbeatServer.maxWriteBuffer
        super().connectionMade()

    def onOpen(self) -> None:
        self.heartbeatJoin()

    def heartbeatConnectionAdmitted(self) -> None:
        # Only now: a page takes any message as proof that it is served,
        # and sends what it kept for the next connection.
        self.sendControlMessage(
            "hello",
            interval=self.heartbeatInterval,
            timeout=self.heartbeatTimeout,
            maxLength=self.maxLineLength,
        )

    def heartbeatRefuse(self, reason: bytes) -> None:
        self._heartbeatClose(_REFUSALS[reason], reason.decode())

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        # Autobahn still delivers what arrives after our close frame (a
        # refusal, a timeout, a bad message), even in the very read that
        # opened the connection: such a connection has had its last word.
        if self.state != _OPEN:
            return
        if self.heartbeatAdmitted:
            super().onMessage(payload, isBinary)
        else:
            self.heartbeatAuthenticate(payload)

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        self.heartbeatLeave(f"{code} {reason or ''}")

    def sendHeartbeatPing(self, token: bytes) -> None:
        super().sendHeartbeatPing(token)
        # A page takes a JSON ping for being served: none before admission.
        if self.heartbeatAdmitted:
            self.sendControlMessage("ping", t=int(token))

    def messageReceived(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)


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
                "{peer} sent a message with a newline", peer=_peer(self)
            )
            self._heartbeatClose(INVALID_MESSAGE, "a message must not contain a newline")
            return
        self.heartbeatServer.broadcast(payload, exclude=self, isBinary=isBinary)


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
        self._batched_timer = _timers_on(self.clock)
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
        request.setResponseCode(426)
        request.setHeader(b"upgrade", b"websocket")
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"A WebSocket endpoint: connect with the client at /heartbeat.js.\n"


class HeartbeatWebSocketClientProtocol(WebSocketHeartbeat, WebSocketClientProtocol):
    """
    A client connection: pings as soon as the WebSocket opens, and reports
    to its L{HeartbeatWebSocketClientFactory}, which it serves like a line
    client.  Subclass and override L{messageReceived}.
    """

    _heardFromServer = False

    @property
    def _healthy(self) -> bool:
        # What the factory asks before it sends through this connection:
        # once the close handshake has begun (our heartbeat timeout, or the
        # server's close) a message would be dropped, so the factory keeps
        # it for the next connection instead.
        return self._heardFromServer and self.state == _OPEN

    def heartbeatSettings(self) -> HeartbeatClientFactory:
        return self.factory  # type: ignore[no-any-return]

    def onOpen(self) -> None:
        factory = self.factory
        factory.clientConnectionMade(self)
        if factory.authToken is not None:
            self.sendMessage(AUTH + b" " + factory.authToken)
        self.heartbeatPing()

    def onPing(self, payload: bytes) -> None:
        self._heard()
        super().onPing(payload)

    def onPong(self, payload: bytes) -> None:
        self._heard()
        super().onPong(payload)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self._heard()
        super().onMessage(payload, isBinary)

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        # The server's close reason means what its 'error' line would mean
        # to a line client: 'server full' waits long, the rest retry.
        if wasClean and not self.closedByMe and reason:
            self.factory.serverClosedWithError(reason.encode())

    def _heard(self) -> None:
        if not self._heardFromServer:
            self._heardFromServer = True
            self.factory.clientConnectionHealthy(self)


class HeartbeatWebSocketClientFactory(HeartbeatClientFactory, WebSocketClientFactory):
    """
    Keeps one WebSocket connection up, exactly as L{HeartbeatClientFactory}
    keeps a line connection: same backoff, health, send buffer, refusals.

    Connect it with C{connectEndpoint(clientFromString(reactor,
    "tcp:host:port"))} (C{tls:} for C{wss://}); C{url} names the host and
    path sent in the handshake.  L{maxLineLength} caps a message, read at
    each connection like the timing.  From the moment a connection begins
    to close it is no longer the connected one: messages sent then are
    kept for the next.

    Autobahn's client waits C{serverConnectionDropTimeout} (1 s) for the
    server to drop the TCP connection after a clean close, on the global
    reactor (C{txaio}) rather than on L{clock}: a test on a fake clock
    whose server never drops leaves that call on the reactor.
    """

    protocol = HeartbeatWebSocketClientProtocol

    def __init__(
        self,
        url: str,
        clock: Optional[IReactorTime] = None,
        random: Callable[[], float] = _random.random,
        **kwargs: object,
    ) -> None:
        HeartbeatClientFactory.__init__(self, clock, random)
        WebSocketClientFactory.__init__(self, url, **kwargs)
        self._batched_timer = _timers_on(self.clock)
        self.setProtocolOptions(failByDrop=False)

    def stopTrying(self) -> None:
        """
        Stop reconnecting, and say goodbye with a close frame if connected.
        """
        current = self._current
        if current is not None:
            current.sendClose(1000)
        super().stopTrying()
