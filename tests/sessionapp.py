"""
An application of the library that proves its sessions, as a process: a
server whose application records every line it receives and sends its own
numbered lines to each session.

    python tests/sessionapp.py RECORD COUNT RATE [SERVER OPTIONS]

It serves lines and WebSocket on 127.0.0.1 (or C{--interface}) and prints C{listening LINE
WEBSOCKET} (the two ports).  Each application line it receives is
appended to the file RECORD; to each new session it sends the lines C{s1} to C{sCOUNT}, about
RATE a second, keeping at most 1000 of them unacknowledged.  It logs to
its standard error.  SERVER OPTIONS: C{--interval}, C{--timeout},
C{--pong-timeout} and C{--resume-window}, in seconds; C{--redis URL
--node-id ID} to be a node of a cluster whose sessions live in Redis; and
C{--echo}, to answer each line C{cN} with C{sN} instead of sending lines
of its own (a node's count of lines sent would start over where a session
moves).
"""

import argparse
import sys

from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import LoopingCall
from twisted.logger import globalLogBeginner, textFileLogObserver

from heartbeat import HeartbeatServerFactory, HeartbeatServerProtocol
from heartbeat.websocket import (
    HeartbeatWebSocketServerFactory,
    HeartbeatWebSocketServerProtocol,
)
from heartbeat._server.websocket import websocket_site

TICK = 0.01
MOST_UNACKNOWLEDGED = 1000


class Streams:
    """
    The numbered lines each session gets, and the record of what came in.
    """

    def __init__(self, record, count, rate, echo):
        self.record = open(record, "ab", buffering=0)
        self.echo = echo
        self.count = 0 if echo else count
        self.perTick = max(1, round(rate * TICK))
        self.sent = {}
        loop = LoopingCall(self.tick)
        loop.start(TICK).addErrback(lambda failure: failure.printTraceback())

    def started(self, session):
        self.sent.setdefault(session, 0)

    def received(self, session, line):
        # One write, appended: nodes that share the file never mix lines.
        self.record.write(line + b"\n")
        if self.echo:
            session.sendMessage(b"s" + line[1:])

    def tick(self):
        for session, sent in list(self.sent.items()):
            if session.store is None or sent >= self.count:
                continue
            for _ in range(self.perTick):
                if sent >= self.count or session.unacknowledged >= MOST_UNACKNOWLEDGED:
                    break
                sent += 1
                session.sendMessage(b"s%d" % sent)
            self.sent[session] = sent


class Lines(HeartbeatServerProtocol):
    def heartbeatHandshakeAnswered(self):
        super().heartbeatHandshakeAnswered()
        if self.heartbeatSession is not None:
            self.factory.streams.started(self.heartbeatSession)

    def messageReceived(self, line):
        self.factory.streams.received(self.heartbeatSession, line)


class Pages(HeartbeatWebSocketServerProtocol):
    def heartbeatHandshakeAnswered(self):
        super().heartbeatHandshakeAnswered()
        if self.heartbeatSession is not None:
            self.heartbeatServer.streams.started(self.heartbeatSession)

    def messageReceived(self, payload, isBinary):
        self.heartbeatServer.streams.received(self.heartbeatSession, payload)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("record")
    parser.add_argument("count", type=int)
    parser.add_argument("rate", type=float)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--pong-timeout", type=float, default=0.2)
    parser.add_argument("--resume-window", type=float, default=60.0)
    parser.add_argument("--redis")
    parser.add_argument("--node-id")
    parser.add_argument("--echo", action="store_true")
    parser.add_argument("--interface", default="127.0.0.1")
    args = parser.parse_args()
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    cluster = sessions = None
    if args.redis:
        from heartbeat._session.redis import RedisSessionStore
        from heartbeat.cluster import RedisCluster

        cluster = RedisCluster(args.redis, nodeId=args.node_id, nodeTimeout=1.0)
        sessions = RedisSessionStore(cluster, args.resume_window)
        cluster.start()
        reactor.addSystemEventTrigger("before", "shutdown", cluster.stop)
    factory = HeartbeatServerFactory(
        heartbeatInterval=args.interval,
        heartbeatTimeout=args.timeout,
        heartbeatPongTimeout=args.pong_timeout,
        minPingInterval=args.interval / 2,
        resumeWindow=args.resume_window,
        cluster=cluster,
        sessions=sessions,
    )
    factory.protocol = Lines
    factory.streams = Streams(args.record, args.count, args.rate, args.echo)
    pages = HeartbeatWebSocketServerFactory(factory)
    pages.protocol = Pages
    ports = []

    def listening(port):
        ports.append(port.getHost().port)
        if len(ports) == 2:
            print("listening", *ports, flush=True)

    where = f"tcp:0:interface={args.interface}"
    serverFromString(reactor, where).listen(factory).addCallback(listening)
    serverFromString(reactor, where).listen(
        websocket_site(pages)
    ).addCallback(listening)
    reactor.run()


if __name__ == "__main__":
    main()
