"""
Redis's end of the link's two connections, in memory: a test reads the
commands the link sent and answers them as a Redis would (or does not:
a Redis that hangs).  For the link's unit tests, on a
L{MemoryReactorClock}; the cluster's own behaviour is tested against a
real redis-server.
"""

from __future__ import annotations

from typing import List

from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure


def parse_commands(data: bytes) -> List[List[bytes]]:
    """
    The commands in C{data}, each an array of bulk strings.
    """
    commands = []
    while data:
        assert data[:1] == b"*", data
        head, data = data.split(b"\r\n", 1)
        command = []
        for _ in range(int(head[1:])):
            size, data = data.split(b"\r\n", 1)
            length = int(size[1:])
            command.append(data[:length])
            data = data[length + 2:]
        commands.append(command)
    return commands


class FakeConnection:
    """
    One connection the link opened, as Redis sees it.
    """

    def __init__(self, protocol, clock) -> None:
        self.protocol = protocol
        self.clock = clock
        self.transport = StringTransport()
        protocol.makeConnection(self.transport)
        self._read = 0

    def commands(self) -> List[List[bytes]]:
        """
        The commands sent since the last call.
        """
        data = self.transport.value()
        new, self._read = data[self._read:], len(data)
        return parse_commands(new)

    def reply(self, data: bytes) -> None:
        self.protocol.dataReceived(data)
        # txredisapi reads what follows a bulk string on a later turn.
        while any(call.getTime() <= self.clock.seconds()
                  for call in self.clock.getDelayedCalls()):
            self.clock.advance(0)

    def lose(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionDone()))


class FakeRedis:
    """
    Where a link on L{reactor} connects: each connection it opens is
    accepted on demand.
    """

    def __init__(self) -> None:
        self.reactor = MemoryReactorClock()
        self._accepted = 0

    def pending(self) -> int:
        return len(self.reactor.unixClients) - self._accepted

    def accept(self) -> FakeConnection:
        """
        Accept the oldest attempt not yet accepted.
        """
        _, factory, _, _ = self.reactor.unixClients[self._accepted]
        self._accepted += 1
        return FakeConnection(factory.buildProtocol(None), self.reactor)

    def acceptBoth(self):
        """
        Accept the link's two connections: the command connection, then
        the subscribing one (the one that has sent C{SUBSCRIBE}, when
        either has).
        """
        first, second = self.accept(), self.accept()
        if b"SUBSCRIBE" in first.transport.value():
            return second, first
        return first, second


def subscribed(channels: List[bytes]) -> bytes:
    """
    Redis's answer to C{SUBSCRIBE} with C{channels}.
    """
    return b"".join(
        b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:%d\r\n" % (len(c), c, n)
        for n, c in enumerate(channels, 1)
    )
