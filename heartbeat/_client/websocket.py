"""
The reconnecting WebSocket client: a line client's backoff, health, send
buffer and refusals, over Autobahn.
"""

from __future__ import annotations

import random as _random
from typing import Callable, Optional

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.interfaces import IReactorTime

from .._framing.handshake import (
    SUBPROTOCOL,
    Handshake,
    HandshakeError,
    handshake_from_json,
    json_fields,
)
from .._framing.line import AUTH
from .._framing.websocket import OPEN, WebSocketHeartbeat, timers_on
from .factory import HeartbeatClientFactory
from .refresh import TokenRefresh, current_token
from .timing import follow_server


class HeartbeatWebSocketClientProtocol(WebSocketHeartbeat, WebSocketClientProtocol):
    """
    A client connection: pings as soon as the WebSocket opens, and reports
    to its L{HeartbeatWebSocketClientFactory}, which it serves like a line
    client.  Subclass and override L{messageReceived}.

    @ivar heartbeatServerHandshake: the server's answer to the handshake
        (L{Handshake}), or C{None} from a server that did not answer it.
    """

    _heardFromServer = False
    heartbeatServerHandshake: Optional[Handshake] = None

    @property
    def _healthy(self) -> bool:
        # What the factory asks before it sends through this connection:
        # once the close handshake has begun (our heartbeat timeout, or the
        # server's close) a message would be dropped, so the factory keeps
        # it for the next connection instead.
        return self._heardFromServer and self.state == OPEN

    def heartbeatSettings(self) -> HeartbeatClientFactory:
        return self.factory  # type: ignore[no-any-return]

    _tokenRefresh: Optional[TokenRefresh] = None
    _binaryPrefixes = (AUTH + b" ",)

    def onOpen(self) -> None:
        factory = self.factory
        factory.clientConnectionMade(self)
        if factory.authToken is not None:
            token = current_token(factory)
            if token is None:
                # Tried again after the backoff, as a connection that failed.
                self.sendClose(1000)
                return
            self._sendToken(AUTH + b" " + token)
            self._tokenRefresh = TokenRefresh(factory, self._sendToken)
        if self.websocket_protocol_in_use == SUBPROTOCOL:
            self.sendControlMessage("hello", **json_fields(factory.handshakeFields()))
        self.heartbeatPing()

    def helloReceived(self, message: dict) -> None:
        if self.websocket_protocol_in_use != SUBPROTOCOL:
            return
        try:
            self.heartbeatServerHandshake = answer = handshake_from_json(message)
        except HandshakeError as e:
            self.factory.log.warn("the server's hello is malformed: {why}", why=e)
        else:
            follow_server(self, answer)
            self.setMessageLimit(self.maxLineLength)
            # The first hello, or the answer to a fresh token.
            if self._tokenRefresh is not None:
                self._tokenRefresh.expiresIn(answer.number("expires"))

    def onPing(self, payload: bytes) -> None:
        self._heard()
        super().onPing(payload)

    def onPong(self, payload: bytes) -> None:
        self._heard()
        super().onPong(payload)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        # The server's first message is usually its hello: read it before
        # the connection is declared healthy, which takes its session.
        super().onMessage(payload, isBinary)
        self._heard()

    def sendMessage(  # type: ignore[override]
        self, payload: bytes, isBinary: Optional[bool] = None, **kwargs: object
    ) -> None:
        """
        Send a message; with a session, through the factory, which keeps it
        until the server acknowledges it.
        """
        if self._heartbeatSession is None:
            super().sendMessage(payload, isBinary, **kwargs)
        else:
            self.factory._send(payload, isBinary)

    def _sendToken(self, message: bytes) -> None:
        # A text message, and never the session's: the server takes it.
        if self.state == OPEN:
            WebSocketClientProtocol.sendMessage(self, message, False)

    def sessionTakenOver(self) -> None:
        self.transport.abortConnection()

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        if self._tokenRefresh is not None:
            self._tokenRefresh.cancel()
            self._tokenRefresh = None
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
        kwargs.setdefault("protocols", [SUBPROTOCOL])
        WebSocketClientFactory.__init__(self, url, **kwargs)
        self._batched_timer = timers_on(self.clock)
        self.setProtocolOptions(failByDrop=False)

    def stopTrying(self) -> None:
        """
        Stop reconnecting, and say goodbye with a close frame if connected.
        """
        current = self._current
        if current is not None:
            current.sendClose(1000)
        super().stopTrying()
