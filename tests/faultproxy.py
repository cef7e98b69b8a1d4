"""
A fault-injecting TCP proxy for the tests, on loopback only.

    python tests/faultproxy.py TARGET_PORT

relays 127.0.0.1:<its port> to 127.0.0.1:TARGET_PORT, prints
C{listening on <port>}, then obeys one command per stdin line, answering
C{ok} once it is in effect:

    freeze       stop relaying both ways, keeping every socket open (and
                 new connections accepted but silent): a half-open path
    thaw         relay again, including what waited while frozen
    cut          close both sides of every relayed connection
    reset        abort both sides of every relayed connection (RST)
    blackhole    from now on, whatever either side of the connections
                 relayed now sends is read and dropped, and nothing is
                 closed: a path that died silently; new connections are
                 relayed as usual
    reset-blackholed
                 abort both sides of the blackholed connections
    count        answer the number of connections accepted so far
                 (instead of ok)
    target PORT  relay new connections to 127.0.0.1:PORT from now on
    delay SECS [SPREAD]
                 hold each chunk SECS seconds before relaying it, or a
                 random time within SPREAD of SECS, still in order
"""

from __future__ import annotations

import random
import sys
from collections import deque

from twisted.internet import protocol, stdio
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.protocols.basic import LineReceiver


class Relay(protocol.Protocol):
    """
    One side of a relayed connection; C{other} is the opposite side.
    """

    other: "Relay | None" = None
    blackholed = False

    def __init__(self, proxy: "Proxy") -> None:
        self.proxy = proxy
        self._pending: list[bytes] = []
        # When the last chunk held back goes out: none overtakes it.
        self._releasedAt = 0.0
        # Chunks held back, with when each goes out, in the order they came:
        # one timer releases them, since two timers due at the same moment
        # may run in either order.
        self._held: deque[tuple[float, bytes]] = deque()
        self._release = None

    def connectionMade(self) -> None:
        self.proxy.relays.add(self)
        if self.proxy.frozen:
            self.transport.pauseProducing()

    def dataReceived(self, data: bytes) -> None:
        if self.blackholed:
            return
        other = self.other
        if other is None:
            self._pending.append(data)
        elif self.proxy.delay:
            proxy = self.proxy
            now = proxy.clock.seconds()
            delay = proxy.delay + random.uniform(-proxy.spread, proxy.spread)
            self._releasedAt = max(self._releasedAt, now + delay)
            self._held.append((self._releasedAt, data))
            if self._release is None:
                self._release = proxy.clock.callLater(
                    self._releasedAt - now, self._releaseHeld
                )
        else:
            other.deliver(data)

    def _releaseHeld(self) -> None:
        self._release = None
        now = self.proxy.clock.seconds()
        held = self._held
        while held and held[0][0] <= now:
            self.other.deliver(held.popleft()[1])
        if held:
            self._release = self.proxy.clock.callLater(
                held[0][0] - now, self._releaseHeld
            )

    def deliver(self, data: bytes) -> None:
        if self.transport is not None and not self.blackholed:
            self.transport.write(data)

    def pair(self, other: "Relay") -> None:
        self.other, other.other = other, self
        pending, self._pending = self._pending, []
        for data in pending:
            self.dataReceived(data)

    def connectionLost(self, reason) -> None:
        self.proxy.relays.discard(self)
        # Not even a close crosses a blackholed path.
        if self.other is not None and self.other.transport is not None and not self.blackholed:
            self.other.transport.loseConnection()


class Inbound(Relay):
    def connectionMade(self) -> None:
        super().connectionMade()
        self.proxy.accepted += 1
        endpoint = TCP4ClientEndpoint(self.proxy.clock, "127.0.0.1", self.proxy.target)
        d = endpoint.connect(protocol.Factory.forProtocol(lambda: Relay(self.proxy)))
        d.addCallbacks(self.pair, lambda _: self.transport.loseConnection())


class Proxy(protocol.Factory):
    noisy = False

    def __init__(self, clock, target: int) -> None:
        self.clock = clock
        self.target = target
        self.relays: set[Relay] = set()
        self.frozen = False
        self.delay = 0.0
        self.spread = 0.0
        self.accepted = 0

    def buildProtocol(self, addr):
        return Inbound(self)

    def command(self, words: list[str]) -> None:
        name = words[0]
        if name == "freeze":
            self.frozen = True
            for relay in self.relays:
                relay.transport.pauseProducing()
        elif name == "thaw":
            self.frozen = False
            for relay in self.relays:
                relay.transport.resumeProducing()
        elif name == "cut":
            for relay in list(self.relays):
                relay.transport.loseConnection()
        elif name == "reset":
            for relay in list(self.relays):
                relay.transport.abortConnection()
        elif name == "blackhole":
            for relay in self.relays:
                relay.blackholed = True
        elif name == "reset-blackholed":
            for relay in list(self.relays):
                if relay.blackholed:
                    relay.transport.abortConnection()
        elif name == "target":
            self.target = int(words[1])
        elif name == "delay":
            self.delay = float(words[1])
            self.spread = float(words[2]) if len(words) > 2 else 0.0
        else:
            raise ValueError(name)


class Control(LineReceiver):
    delimiter = b"\n"

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    def lineReceived(self, line: bytes) -> None:
        words = line.decode().split()
        if words == ["count"]:
            self.transport.write(b"%d\n" % (self.proxy.accepted,))
            return
        self.proxy.command(words)
        self.transport.write(b"ok\n")

    def connectionLost(self, reason) -> None:
        self.proxy.clock.stop()


def main(target: int) -> None:
    from twisted.internet import reactor

    proxy = Proxy(reactor, target)

    def listening(port):
        sys.stdout.write(f"listening on {port.getHost().port}\n")
        sys.stdout.flush()
        stdio.StandardIO(Control(proxy))

    TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(proxy).addCallback(
        listening
    )
    reactor.run()


if __name__ == "__main__":
    main(int(sys.argv[1]))
