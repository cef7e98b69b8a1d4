"""
The library's WebSocket client, as a process, for the proof of sessions:

    python tests/wsclient.py PORT COUNT RATE OUT

It connects to ws://127.0.0.1:PORT/, sends the messages C{c1} to
C{cCOUNT} at about RATE a second (waiting while its buffer is full), and
appends each message it receives to the file OUT.  It prints C{lost
REASON N} for each session it loses (N: the messages in doubt), and logs
to its standard error.
"""

import sys

from twisted.internet import reactor
from twisted.internet.endpoints import clientFromString
from twisted.internet.task import LoopingCall
from twisted.logger import globalLogBeginner, textFileLogObserver

from heartbeat.websocket import (
    HeartbeatWebSocketClientFactory,
    HeartbeatWebSocketClientProtocol,
)

TICK = 0.01


class Recorder(HeartbeatWebSocketClientProtocol):
    def messageReceived(self, payload, isBinary):
        self.factory.out.write(payload + b"\n")


class Client(HeartbeatWebSocketClientFactory):
    protocol = Recorder
    initialDelay = 0.05
    maxDelay = 0.2

    def sessionLost(self, reason, inDoubt):
        print("lost", reason, len(inDoubt), flush=True)


def main():
    port, count, rate, out = sys.argv[1:5]
    count, perTick = int(count), max(1, round(float(rate) * TICK))
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    factory = Client(f"ws://127.0.0.1:{port}/")
    factory.out = open(out, "ab", buffering=0)
    sent = 0

    def tick():
        nonlocal sent
        for _ in range(perTick):
            if sent >= count or factory.bufferedMessages >= factory.maxBufferedMessages:
                return
            sent += 1
            factory.sendMessage(b"c%d" % sent)

    LoopingCall(tick).start(TICK).addErrback(lambda failure: failure.printTraceback())
    factory.connectEndpoint(clientFromString(reactor, f"tcp:127.0.0.1:{port}"))
    reactor.run()


if __name__ == "__main__":
    main()
