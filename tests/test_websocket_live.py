"""
The Python WebSocket client against a real server on loopback, which the
test kills and restarts.
"""

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from heartbeat.websocket import (
    HeartbeatWebSocketClientFactory,
    HeartbeatWebSocketClientProtocol,
)

from .webserver import WebServer


class Recorder(HeartbeatWebSocketClientProtocol):
    def messageReceived(self, payload, isBinary):
        self.factory.received.append(payload)


@inlineCallbacks
def until(predicate, timeout, what):
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        yield deferLater(reactor, 0.02, lambda: None)
    raise AssertionError(f"{what}: not within {timeout}s")


class LiveClientTests(TestCase):
    timeout = 60

    def setUp(self):
        self.server = WebServer(
            "--interval", "0.5", "--timeout", "1.5", ports=("port", "websocket-port"))
        self.addCleanup(lambda: self.server.stop())

    @inlineCallbacks
    def test_reconnects_and_delivers_what_was_sent_meanwhile(self):
        """After the server is killed and restarted the client is back by
        itself, and the lines sent while it was gone arrive in order."""
        port = self.server.ports["websocket-port"]
        factory = HeartbeatWebSocketClientFactory(f"ws://127.0.0.1:{port}/")
        factory.protocol = Recorder
        factory.received = []
        factory.heartbeatInterval, factory.heartbeatTimeout = 0.5, 1.5
        factory.initialDelay, factory.maxDelay = 0.1, 1.0
        factory.connectEndpoint(TCP4ClientEndpoint(reactor, "127.0.0.1", port))
        self.addCleanup(factory.stopTrying)
        first = yield factory.whenConnected()
        factory.sendMessage(b"before")
        yield until(lambda: factory.received == [b"before"], 5, "echo")
        self.assertIsNotNone(first.heartbeatRtt)

        reconnected = factory.nextConnection()
        self.server.kill()
        yield until(lambda: factory.connectedProtocol is None, 5, "loss noticed")
        for n in range(3):
            factory.sendMessage(b"meanwhile %d" % n)
        self.server = self.server.restart()
        second = yield reconnected
        self.assertIsNot(second, first)
        yield until(lambda: len(factory.received) == 4, 5, "buffered echoes")
        self.assertEqual(
            factory.received, [b"before"] + [b"meanwhile %d" % n for n in range(3)])
        stopped = factory.whenStopped()
        factory.stopTrying()
        yield stopped
