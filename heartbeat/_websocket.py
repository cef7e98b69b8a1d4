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

import hmac
import json
import random as _random
from types import SimpleNamespace
from typing import Any, Callable, Optional, Tuple

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Site

from ._assets import Asset
from ._client import HeartbeatClientFactory
from ._line import AUTH, SERVER_FULL, UNAUTHORIZED
from ._protocol import HeartbeatProtocol, _peer
from ._server import CountedByServer, HeartbeatServerFactory
from ._tcp import enable_tcp_keepalive

# Close codes, in the range RFC 6455 leaves to applications.
HEARTBEAT_TIMEOUT = 4000
UNAUTHORIZED_CODE = 4001
INVALID_MESSAGE = 4007
TRY_AGAIN_LATER = 4013

# An application heartbeat is a small JSON object; anything longer is an
# application message, and never parsed.
_MAX_HEARTBEAT = 256

_OPEN = WebSocketProtocol.STATE_OPEN

# Message types reserved for heartbeats: "hello" carries the server's
# timing to a page when it opens.
_CONTROL = ("ping", "pong", "hello")


def parse_app_heartbeat(payload: bytes) -> Optional[Tuple[str, object]]:
    """
    Read a text message as an application heartbeat, if it is one.

    @return: C{(type, t)} for a JSON object whose C{type} is C{ping},
        C{pong} or C{hello} (C{t} is its C{"t"} member, or C{None}); C{None}
        for any other message, which is the application's.
    """
    if payload[:1] != b"{" or len(payload) > _MAX_HEARTBEAT:
        return None
    try:
        message = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    kind = message.get("type")
    if kind not in _CONTROL:
        return None
    return kind, message.get("t")


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
    """

    heartbeatFraming = "websocket"

    def heartbeatSettings(self) -> Any:
        """
        What this connection takes its C{heartbeatInterval} and
        C{heartbeatTimeout} from when it connects: by default itself (its
        class attributes), as with any L{HeartbeatProtocol}.
        """
        return self

    # Twisted's and Autobahn's side

    def connectionMade(self) -> None:
        settings = self.heartbeatSettings()
        self.heartbeatInterval = settings.heartbeatInterval
        self.heartbeatTimeout = settings.heartbeatTimeout
        super().connectionMade()

    def onPing(self, payload: bytes) -> None:
        self.heartbeatPingReceived(payload or None)
        super().onPing(payload)  # type: ignore[misc]

    def onPong(self, payload: bytes) -> None:
        self.heartbeatPongReceived(payload or None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        heartbeat = None if isBinary else parse_app_heartbeat(payload)
        if heartbeat is None:
            self.messageReceived(payload, isBinary)
        elif heartbeat[0] == "ping":
            self.heartbeatPingReceived(_token(heartbeat[1]))
            self.sendControlMessage("pong", t=heartbeat[1])
        elif heartbeat[0] == "pong":
            self.heartbeatPongReceived(_token(heartbeat[1]))

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
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

        @param isBinary: when not given, bytes that are valid UTF-8 go as a
            text message and any others as a binary one, so a line from the
            line server always reaches a browser intact.
        """
        if self.state != _OPEN:  # type: ignore[attr-defined]
            return
        if isBinary is None:
            try:
                payload.decode("utf-8")
                isBinary = False
            except UnicodeDecodeError:
                isBinary = True
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
        # The close frame tells a peer that was only deaf why; Autobahn
        # aborts the connection if no answer comes within the handshake
        # timeout, so without that timeout the close cannot be waited for.
        if self.state == _OPEN and self.closeHandshakeTimeout > 0:  # type: ignore[attr-defined]
            self.sendClose(HEARTBEAT_TIMEOUT, "heartbeat timeout")  # type: ignore[attr-defined]
        else:
            super().heartbeatAbort()


class HeartbeatWebSocketServerProtocol(
    CountedByServer, WebSocketHeartbeat, WebSocketServerProtocol
):
    """
    A WebSocket connection served as one more connection of the line
    server (the factory's C{heartbeatServer}): its settings, its cap, its
    counters and its broadcast.  Echoes each message; subclass and override
    L{messageReceived} for your own.

    A message is an application line: one with a newline is refused with a
    close (L{INVALID_MESSAGE}), as it could not be relayed to line peers.
    When the server requires C{auth <token>}, it is the first message, and
    the connection joins the server only then (else L{UNAUTHORIZED_CODE}).
    Each page learns the server's timing from C{{"type":"hello",…}} once
    it is admitted, and gets a JSON ping along with each ping frame.
    """

    _log = Logger()
    _registered = False
    _authCall: Optional[IDelayedCall] = None

    @property
    def heartbeatServer(self) -> HeartbeatServerFactory:
        return self.factory.heartbeatServer  # type: ignore[no-any-return]

    def heartbeatSettings(self) -> HeartbeatServerFactory:
        return self.heartbeatServer

    def onOpen(self) -> None:
        server = self.heartbeatServer
        if server.tcpKeepalive:
            enable_tcp_keepalive(
                self.transport, server.heartbeatInterval, server.heartbeatTimeout
            )
        if server.authToken is None:
            self._admit()
        else:
            # Joined only once authenticated: no broadcast reaches a stranger.
            self._authCall = server.clock.callLater(server.authTimeout, self._authExpired)

    def _admit(self) -> None:
        if not self.heartbeatServer.registerConnection(self):
            # The server logs refusals, a few at a time.
            self.stopHeartbeat()
            self.sendClose(TRY_AGAIN_LATER, SERVER_FULL.decode())
            return
        self._registered = True
        self._log.info("{peer} connected (WebSocket)", peer=_peer(self))
        # Only now: a page takes any message as proof that it is served,
        # and sends what it kept for the next connection.
        self.sendControlMessage(
            "hello", interval=self.heartbeatInterval, timeout=self.heartbeatTimeout
        )

    def _authenticate(self, payload: bytes) -> None:
        self._cancelAuth()
        prefix = AUTH + b" "
        token = self.heartbeatServer.authToken
        if payload.startswith(prefix) and hmac.compare_digest(payload[len(prefix) :], token):
            self._admit()
        else:
            self._unauthorized("{peer} did not authenticate")

    def _authExpired(self) -> None:
        self._authCall = None
        self._unauthorized("{peer} sent no auth message in time")

    def _unauthorized(self, message: str) -> None:
        self._log.warn(message, peer=_peer(self))
        self.stopHeartbeat()
        self.sendClose(UNAUTHORIZED_CODE, UNAUTHORIZED.decode())

    def _cancelAuth(self) -> None:
        call, self._authCall = self._authCall, None
        if call is not None and call.active():
            call.cancel()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self._authCall is not None:
            self._authenticate(payload)
            return
        if b"\n" in payload:
            self._log.info("{peer} sent a message with a newline", peer=_peer(self))
            self.sendClose(INVALID_MESSAGE, "a message must not contain a newline")
            return
        super().onMessage(payload, isBinary)

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        self._cancelAuth()
        if self._registered:
            self._registered = False
            self.heartbeatServer.unregisterConnection(self)
            self._log.info(
                "{peer} disconnected: {code} {reason}",
                peer=_peer(self),
                code=code,
                reason=reason or "",
            )

    def sendHeartbeatPing(self, token: bytes) -> None:
        super().sendHeartbeatPing(token)
        self.sendControlMessage("ping", t=int(token))

    def messageReceived(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)


class BroadcastWebSocketServerProtocol(HeartbeatWebSocketServerProtocol):
    """
    Relays each message to every other connection, line peers included.
    """

    def messageReceived(self, payload: bytes, isBinary: bool) -> None:
        self.heartbeatServer.broadcast(payload, exclude=self)


class HeartbeatWebSocketServerFactory(WebSocketServerFactory):
    """
    Serves WebSocket connections as part of a L{HeartbeatServerFactory}.

    @ivar heartbeatServer: the line server whose settings, cap, counters
        and broadcast the WebSocket connections share.
    """

    protocol = HeartbeatWebSocketServerProtocol
    noisy = False

    def __init__(self, heartbeatServer: HeartbeatServerFactory, **kwargs: object):
        super().__init__(**kwargs)
        self.heartbeatServer = heartbeatServer
        self.clock = heartbeatServer.clock
        self._batched_timer = _timers_on(self.clock)
        limit = heartbeatServer.maxLineLength
        self.setProtocolOptions(
            webStatus=False,
            failByDrop=False,
            maxFramePayloadSize=limit,
            maxMessagePayloadSize=limit,
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

    _healthy = False

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
        if not self._healthy:
            self._healthy = True
            self.factory.clientConnectionHealthy(self)


class HeartbeatWebSocketClientFactory(HeartbeatClientFactory, WebSocketClientFactory):
    """
    Keeps one WebSocket connection up, exactly as L{HeartbeatClientFactory}
    keeps a line connection: same backoff, health, send buffer, refusals.

    Connect it with C{connectEndpoint(clientFromString(reactor,
    "tcp:host:port"))} (C{tls:} for C{wss://}); C{url} names the host and
    path sent in the handshake.  L{maxLineLength} caps a message.
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
        self.setProtocolOptions(
            failByDrop=False,
            maxFramePayloadSize=self.maxLineLength,
            maxMessagePayloadSize=self.maxLineLength,
        )

    def stopTrying(self) -> None:
        """
        Stop reconnecting, and say goodbye with a close frame if connected.
        """
        current = self._current
        if current is not None:
            current.sendClose(1000)
        super().stopTrying()
