"""
Many library clients in one process, for the fault and storm tests.

    python tests/loadclient.py PORT COUNT [--interval S] [--timeout S]
        [--initial-delay S] [--max-delay S] [--no-jitter]

Each client is a L{HeartbeatClientFactory} on 127.0.0.1:PORT whose
application records the echoes it gets back; without C{--interval} and
C{--timeout} it follows the server's timing.  It prints C{ready} and obeys
one command per stdin line:

    send TAG N   every client sends N lines "TAG <client> <k>" (buffered if
                 it is disconnected)
    report       print one JSON line: for each client, the times (wall
                 clock) it tried to connect and its connections proved
                 healthy, whether every line it sent came back exactly
                 once and in order, and its connection's timing and round
                 trip
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from twisted.internet import stdio
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.protocols.basic import LineReceiver

from heartbeat import HeartbeatClientFactory, HeartbeatClientProtocol


class Recorder(HeartbeatClientProtocol):
    def messageReceived(self, line: bytes) -> None:
        self.factory.received.append(line)


class Client(HeartbeatClientFactory):
    protocol = Recorder

    def __init__(self, number: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.number = number
        self.sent: list[bytes] = []
        self.received: list[bytes] = []
        self.healthyAt: list[float] = []
        self.attemptedAt: list[float] = []

    def startedConnecting(self, connector) -> None:
        self.attemptedAt.append(time.time())
        super().startedConnecting(connector)

    def clientConnectionHealthy(self, protocol) -> None:
        self.healthyAt.append(time.time())
        super().clientConnectionHealthy(protocol)

    def send(self, tag: str, count: int) -> None:
        for k in range(count):
            line = f"{tag} {self.number} {k}".encode()
            self.sent.append(line)
            self.sendMessage(line)

    def report(self) -> dict:
        protocol = self.connectedProtocol
        return {
            "interval": protocol and protocol.heartbeatInterval,
            "smoothedRtt": protocol and protocol.heartbeatSmoothedRtt,
            "pongDeadline": protocol and protocol.heartbeatPongDeadline,
            "healthyAt": self.healthyAt,
            "attemptedAt": self.attemptedAt,
            "exact": self.received == self.sent,
            "sent": len(self.sent),
            "received": len(self.received),
        }


class Control(LineReceiver):
    delimiter = b"\n"

    def __init__(self, clients: list[Client]) -> None:
        self.clients = clients

    def connectionMade(self) -> None:
        self.transport.write(b"ready\n")

    def lineReceived(self, line: bytes) -> None:
        words = line.decode().split()
        if words[0] == "send":
            for client in self.clients:
                client.send(words[1], int(words[2]))
            self.transport.write(b"ok\n")
        elif words[0] == "report":
            report = [client.report() for client in self.clients]
            self.transport.write(json.dumps(report).encode() + b"\n")

    def connectionLost(self, reason) -> None:
        from twisted.internet import reactor

        reactor.stop()


def main(argv: list[str]) -> None:
    from twisted.internet import reactor

    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("count", type=int)
    parser.add_argument("--interval", type=float)
    parser.add_argument("--timeout", type=float)
    parser.add_argument("--initial-delay", type=float, default=1.0)
    parser.add_argument("--max-delay", type=float, default=2.0)
    parser.add_argument("--no-jitter", action="store_true")
    args = parser.parse_args(argv)
    clients = []
    for number in range(args.count):
        client = Client(number)
        if args.interval is not None:
            client.heartbeatInterval = args.interval
        if args.timeout is not None:
            client.heartbeatTimeout = args.timeout
        client.initialDelay = args.initial_delay
        client.maxDelay = args.max_delay
        client.fullJitter = not args.no_jitter
        client.connectEndpoint(TCP4ClientEndpoint(reactor, "127.0.0.1", args.port))
        clients.append(client)
    stdio.StandardIO(Control(clients))
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
