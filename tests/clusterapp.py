"""
An application of the library on a cluster, as a process: a line server
whose connections ask for the factory's presence and routing API.

    python tests/clusterapp.py REDIS_URL NODE_ID

It prints C{listening PORT} once it serves on 127.0.0.1.  A connection's
line C{to NAME TEXT} is factory.sendTo, C{kick NAME} disconnect, C{online
NAME} isOnline, C{where NAME} connectionsOf, C{count} onlineCount,
C{names AFTER} onlineNames and C{all TEXT} broadcast; each answers one
line, C{failed TYPE: MESSAGE} when the Deferred fails.  Presence events
are printed as C{joined NAME NODE} and C{left NAME NODE REASON}.
"""

import sys

from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString

from heartbeat import HeartbeatServerFactory, HeartbeatServerProtocol
from heartbeat.cluster import RedisCluster


class Commands(HeartbeatServerProtocol):
    def messageReceived(self, line):
        verb, _, rest = line.decode().partition(" ")
        factory = self.factory
        if verb == "to":
            name, _, text = rest.partition(" ")
            d = factory.sendTo(name, text.encode())
        elif verb == "kick":
            d = factory.disconnect(rest)
        elif verb == "online":
            d = factory.isOnline(rest)
        elif verb == "where":
            d = factory.connectionsOf(rest).addCallback(
                lambda found: " ".join(sorted(c.node for c in found)))
        elif verb == "count":
            d = factory.onlineCount()
        elif verb == "names":
            d = factory.onlineNames(rest or None, 10).addCallback(" ".join)
        elif verb == "all":
            d = factory.broadcast(rest.encode(), exclude=self)
        else:
            return
        d.addCallbacks(
            lambda result: self.sendLine(f"{verb}: {result}".encode()),
            lambda failure: self.sendLine(
                f"failed {failure.type.__name__}: {failure.getErrorMessage()}".encode()),
        )


class Application(HeartbeatServerFactory):
    protocol = Commands

    def presenceJoined(self, name, node):
        print("joined", name, node, flush=True)

    def presenceLeft(self, name, node, reason):
        print("left", name, node, reason, flush=True)


def main():
    url, node = sys.argv[1:3]
    cluster = RedisCluster(url, nodeId=node, nodeTimeout=1.0)
    factory = Application(heartbeatInterval=5, heartbeatTimeout=11, cluster=cluster)
    cluster.start()
    reactor.addSystemEventTrigger("before", "shutdown", cluster.stop)

    def listening(port):
        print("listening", port.getHost().port, flush=True)

    serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(factory).addCallback(
        listening)
    reactor.run()


if __name__ == "__main__":
    main()
