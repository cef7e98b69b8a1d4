"""
A reconnecting client and a server joined in memory (L{twisted.test.iosim})
by connections a test cuts the ways a network does: a reset that both
sides hear, and a silent path that neither does.  The client reconnects
by itself, on the test's clock; no sockets, no reactor.
"""

from __future__ import annotations

from typing import List

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, IOPump

from heartbeat import HeartbeatClientProtocol, HeartbeatServerProtocol


class Recorder(HeartbeatClientProtocol):
    """
    A client connection that records every application line it receives,
    in its factory's C{got}.
    """

    def messageReceived(self, line: bytes) -> None:
        self.factory.got.append(line)


class RecordingServer(HeartbeatServerProtocol):
    """
    A server connection that records every application line it receives,
    in its factory's C{got}, instead of echoing it.
    """

    def messageReceived(self, line: bytes) -> None:
        self.factory.got.append(line)


def websocket_classes():
    """
    A recording WebSocket server protocol and client factory, like
    L{RecordingServer} and L{Recorder}.
    """
    from heartbeat.websocket import (
        HeartbeatWebSocketClientFactory,
        HeartbeatWebSocketClientProtocol,
        HeartbeatWebSocketServerProtocol,
    )

    class RecordingPage(HeartbeatWebSocketClientProtocol):
        def messageReceived(self, payload, isBinary):
            self.factory.got.append(payload)

    class RecordingWebSocketServer(HeartbeatWebSocketServerProtocol):
        def messageReceived(self, payload, isBinary):
            self.heartbeatServer.got.append(payload)

    return RecordingWebSocketServer, RecordingPage, HeartbeatWebSocketClientFactory


class _ClientTransport(FakeTransport):
    """
    Tells the client factory when its connection is lost, as a connector
    does.
    """

    link: "Link"

    def reportDisconnect(self) -> None:
        super().reportDisconnect()
        factory = self.link.client
        factory.clientConnectionLost(self.link, Failure(ConnectionLost()))


class Connection:
    """
    One connection of the link: its two protocols and transports, and
    whether the path between them still carries anything.
    """

    def __init__(self, pump: IOPump, client, server) -> None:
        self.pump = pump
        self.client = client
        self.server = server
        self.silent = False

    def flush(self) -> bool:
        """
        Deliver what is in flight; return whether anything happened.
        """
        if not self.silent:
            moved = False
            while self.pump.pump():
                moved = True
            return moved
        # Nothing crosses a silent path, but each side hears its own close.
        moved = False
        for transport in (self.pump.clientIO, self.pump.serverIO):
            transport.stream = []
            if transport.disconnecting and not transport.disconnected:
                transport.disconnected = True
                transport.reportDisconnect()
                moved = True
        return moved


class Link:
    """
    A client factory that connects to a server factory in memory, and
    reconnects as it would over a network.

    @ivar connections: every connection made, oldest first.
    @ivar hub: the line server whose sessions the connections have (the
        server itself, or the one a WebSocket server factory serves).
    """

    def __init__(self, clock, server, client) -> None:
        self.clock = clock
        self.server = server
        self.client = client
        self.connections: List[Connection] = []
        client.connector = self
        self.hub = getattr(server, "heartbeatServer", server)
        self.hub.got = []
        client.got = []
        self._port = 40000

    # What the client factory takes for its connector

    def connect(self) -> None:
        client = self.client.buildProtocol(None)
        self._port += 1
        server = self.server.buildProtocol(IPv4Address("TCP", "127.0.0.1", self._port))
        serverTransport = FakeTransport(
            server, isServer=True, peerAddress=IPv4Address("TCP", "127.0.0.1", self._port)
        )
        clientTransport = _ClientTransport(client, isServer=False)
        clientTransport.link = self
        server.makeConnection(serverTransport)
        client.makeConnection(clientTransport)
        pump = IOPump(client, server, clientTransport, serverTransport, False, clock=self.clock)
        self.connections.append(Connection(pump, client, server))
        self.flush()

    def stopConnecting(self) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def getDestination(self) -> str:
        return "memory"

    # The test's side

    @property
    def current(self) -> Connection:
        return self.connections[-1]

    def flush(self) -> None:
        """
        Deliver everything in flight on every connection.
        """
        while True:
            moved = False
            for connection in list(self.connections):
                moved = connection.flush() or moved
            if not moved:
                return

    def advance(self, seconds: float, step: float = 0.01) -> None:
        """
        Let C{seconds} pass on the clock, delivering as it goes.
        """
        end = self.clock.seconds() + seconds
        while self.clock.seconds() < end - 1e-9:
            self.clock.advance(min(step, end - self.clock.seconds()))
            self.flush()

    def reset(self) -> None:
        """
        Cut the current connection; both sides hear of it at once.
        """
        connection = self.current
        connection.pump.clientIO.abortConnection()
        connection.pump.serverIO.abortConnection()
        self.flush()

    def silence(self) -> Connection:
        """
        Make the current connection's path silent: whatever either side
        writes is lost, and neither hears anything, until it gives up.
        """
        connection = self.current
        connection.silent = True
        return connection

    def dropClientSide(self) -> None:
        """
        The client alone loses the connection (its network changed): the
        server still holds it, half-open, and hears nothing more.
        """
        connection = self.silence()
        connection.pump.clientIO.abortConnection()
        self.flush()
