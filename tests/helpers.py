"""
Small pieces shared by the unit tests.
"""

from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure


def connect(factory, transport=None):
    """
    Build a protocol through C{factory} and connect it to a StringTransport.
    """
    protocol = factory.buildProtocol(None)
    transport = transport if transport is not None else StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def lose(protocol, reason=None):
    protocol.connectionLost(Failure(reason or ConnectionDone()))


def factory_for(protocolClass, clock, **attributes):
    """
    A plain factory whose protocols take their clock from it.
    """
    factory = Factory.forProtocol(protocolClass)
    factory.clock = clock
    for name, value in attributes.items():
        setattr(factory, name, value)
    return factory


def take(transport):
    """
    What was written since the last call, emptying the transport.
    """
    value = transport.value()
    transport.clear()
    return value


class ClusterServer:
    """
    The server a cluster serves, as the cluster sees it: its connections,
    and hooks that do nothing.
    """

    def __init__(self, members):
        self.members = members

    def clusterMembers(self):
        return self.members

    def presenceJoined(self, name, node):
        pass

    def presenceLeft(self, name, node, reason):
        pass
