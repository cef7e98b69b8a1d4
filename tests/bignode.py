"""
A node of the cluster holding many connections without their sockets, as a
process: for the tests of what a big node costs Redis when it registers
and when it dies.

    python tests/bignode.py REDIS_URL NODE_ID COUNT NODE_TIMEOUT

Its connections are named C{NODE_ID-N}.  It exits only when killed.
"""

import sys

from twisted.internet import reactor
from twisted.logger import globalLogBeginner, textFileLogObserver

from heartbeat.cluster import RedisCluster
from tests.helpers import ClusterServer


class Connection:
    """What the cluster needs of a connection, and nothing more."""

    __slots__ = ("heartbeatConnectionId", "heartbeatName")
    heartbeatSince = 0.0
    heartbeatVerified = False
    heartbeatPresent = True
    heartbeatAdmitted = True
    heartbeatSmoothedRtt = None
    heartbeatFraming = "line"
    transport = None

    def __init__(self, number: int, name: str) -> None:
        self.heartbeatConnectionId = number
        self.heartbeatName = name


def main():
    url, node, count, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    cluster = RedisCluster(url, nodeId=node, nodeTimeout=timeout)
    connections = [Connection(n, f"{node}-{n}") for n in range(1, count + 1)]
    cluster.attach(ClusterServer(connections))
    for connection in connections:
        cluster.join(connection)
    cluster.start()
    reactor.run()


if __name__ == "__main__":
    main()
