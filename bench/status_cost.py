"""
What the operator's view costs the server: the memory of a connection of
each kind, and the status service's work at 10,000 connections.

    python -m bench.status_cost [--connections N] [--memory N] [--repeat N]

Everything runs in this process on a fake clock and in-memory transports
that drop what is written, so what is measured is the server's own work:
no sockets, no kernel buffers.  The README's figures come from this.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
import tracemalloc
from typing import Callable, List

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.test.requesthelper import DummyRequest

from heartbeat._server.websocket import HeartbeatWebSocketServerFactory
from heartbeat._status.monitor import MonitoredServerFactory
from heartbeat._status.service import StatusService, _event

HANDSHAKE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


class Sink(StringTransport):
    """
    A transport that drops what is written, as a socket that sent it would.
    """

    def write(self, data: bytes) -> None:
        pass


def server() -> MonitoredServerFactory:
    return MonitoredServerFactory(clock=Clock(), maxConnections=None)


def line_connection(factory: MonitoredServerFactory, transport: Sink):
    protocol = factory.buildProtocol(None)
    protocol.makeConnection(transport)
    return protocol


def websocket_connection(factory: HeartbeatWebSocketServerFactory, transport: Sink):
    protocol = factory.buildProtocol(None)
    protocol.makeConnection(transport)
    protocol.dataReceived(HANDSHAKE)
    return protocol


def bytes_per_connection(count: int, websocket: bool) -> float:
    """
    The memory C{count} connections of one kind hold, divided among them;
    their transports are made beforehand and not counted.
    """
    factory = server()
    if websocket:
        factory = HeartbeatWebSocketServerFactory(factory)
    connect = websocket_connection if websocket else line_connection
    transports = [Sink() for _ in range(count)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    protocols = [connect(factory, transport) for transport in transports]
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    assert len(protocols) == count
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return grown / count


def loaded_server(count: int) -> MonitoredServerFactory:
    """
    A server holding C{count} line connections, each with a round trip.
    """
    factory = server()
    protocols = [line_connection(factory, Sink()) for _ in range(count)]
    tokens = [protocol.heartbeatPing() for protocol in protocols]
    factory.clock.advance(0.001)
    for protocol, token in zip(protocols, tokens):
        protocol.dataReceived(b"pong " + token + b"\n")
    return factory


def milliseconds(work: Callable[[], object], repeat: int) -> float:
    """
    The median time C{work} takes, in milliseconds.
    """
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def status_json(status: StatusService) -> bytes:
    request = DummyRequest([b"status.json"])
    return status.resource().getChildWithDefault(b"status.json", request).render(request)


def metrics(status: StatusService) -> bytes:
    request = DummyRequest([b"metrics"])
    return status.resource().getChildWithDefault(b"metrics", request).render(request)


def main(argv: List[str] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.status_cost", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--connections", type=int, default=10000,
                        help="connections the status service sees (default 10000)")
    parser.add_argument("--memory", type=int, default=2000,
                        help="connections of each kind whose memory is measured "
                        "(default 2000)")
    parser.add_argument("--repeat", type=int, default=20,
                        help="runs of each timing, the median reported (default 20)")
    args = parser.parse_args(argv)

    print(f"memory per connection (tracemalloc, {args.memory:,} of each, "
          "transport excluded):")
    for kind, websocket in (("line", False), ("websocket", True)):
        kilobytes = bytes_per_connection(args.memory, websocket) / 1024
        print(f"  {kind:<10} {kilobytes:6.2f} KB")

    status = StatusService(loaded_server(args.connections))
    body = json.dumps(status.snapshot()).encode()
    rows = [
        ("sample, each second (no page watching)", status.sample),
        (f"a page's snapshot ({status.maxRows} rows), each second",
         lambda: _event(status.snapshot(status.maxRows))),
        ("/metrics", lambda: metrics(status)),
        (f"/status.json built, at most once a second ({len(body) / 1e6:.1f} MB)",
         lambda: json.dumps(status.snapshot()).encode()),
        ("/status.json answered within that second", lambda: status_json(status)),
    ]
    print(f"status service at {args.connections:,} connections "
          f"(median of {args.repeat}, ms):")
    status_json(status)
    for name, work in rows:
        print(f"  {name:<58} {milliseconds(work, args.repeat):8.2f}")


if __name__ == "__main__":
    main()
