"""
The line server with one extra command, for the blocked-reactor test:
the application line C{block SECONDS} blocks the reactor that long, as a
slow handler in a real application would.

    python tests/blockingserver.py INTERVAL TIMEOUT

prints C{listening on <port>} (127.0.0.1) and logs to stdout.
"""

import sys
import time

from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.logger import globalLogBeginner, textFileLogObserver

from heartbeat import HeartbeatServerFactory, HeartbeatServerProtocol


class Blocking(HeartbeatServerProtocol):
    def messageReceived(self, line):
        if line.startswith(b"block "):
            time.sleep(float(line.split()[1]))
        super().messageReceived(line)


def main(interval, timeout):
    from twisted.internet import reactor

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    factory = HeartbeatServerFactory(
        heartbeatInterval=interval, heartbeatTimeout=timeout, minPingInterval=None
    )
    factory.protocol = Blocking

    def listening(port):
        print(f"listening on {port.getHost().port}", flush=True)

    endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
    endpoint.listen(factory).addCallback(listening)
    reactor.run()


if __name__ == "__main__":
    main(float(sys.argv[1]), float(sys.argv[2]))
