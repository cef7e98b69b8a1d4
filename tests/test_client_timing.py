"""
The clients follow the timing the server announces, keep the settings the
application chose, and drop a server that leaves their ping unanswered past
their pong deadline.
"""

import pytest
from twisted.internet.error import ConnectionLost

from heartbeat import HeartbeatClientFactory, HeartbeatServerFactory
from heartbeat._client.timing import announced_settings
from heartbeat._framing.handshake import Handshake
from heartbeat._service.client_main import Options, configure

from .helpers import connect, lose, take
from .test_client import FakeEndpoint
from .test_pong_deadline import SLOT, run
from .test_websocket import make_client as make_websocket_client

ANSWER = b"heartbeat/1 id=1 interval=2 timeout=7 pong-timeout=0.5 max-length=100\n"


def client(clock, factory=None):
    """
    A line client on a fake endpoint, connected; its first lines taken.
    """
    factory = factory or HeartbeatClientFactory(clock=clock, random=lambda: 1.0)
    endpoint = FakeEndpoint()
    factory.connectEndpoint(endpoint, "fake")
    protocol, transport, wrapper = endpoint.accept()
    assert take(transport) == b"heartbeat/1 resume\nping 1\n"
    return factory, protocol, transport, wrapper


def settings(protocol):
    return (
        protocol.heartbeatInterval,
        protocol.heartbeatTimeout,
        protocol.heartbeatPongTimeout,
        protocol.maxLineLength,
    )


def test_the_client_follows_the_timing_the_server_announces(clock):
    """A client left at its defaults takes the server's interval, timeout,
    pong timeout and line limit from its answer, and pings on the
    server's interval from then on."""
    factory, protocol, transport, wrapper = client(clock)
    assert settings(protocol) == (25.0, 90.0, 5.0, 65536)
    protocol.dataReceived(ANSWER + b"pong 1\n")
    assert settings(protocol) == (2.0, 7.0, 0.5, 100)
    run(clock, 2.0 - SLOT)
    assert take(transport) == b""
    run(clock, 2 * SLOT)
    assert take(transport) == b"ping 2\n"
    lose(wrapper)


def test_settings_the_application_chose_are_kept(clock):
    """A setting set on the factory, or in a subclass, is the client's own:
    the server's announcement changes only the others."""

    class Patient(HeartbeatClientFactory):
        heartbeatTimeout = 30.0

    factory = Patient(clock=clock)
    factory.maxLineLength = 65536
    factory, protocol, transport, wrapper = client(clock, factory)
    protocol.dataReceived(ANSWER)
    assert settings(protocol) == (2.0, 30.0, 0.5, 65536)
    lose(wrapper)


@pytest.mark.parametrize("fields, expected", [
    # A server that never pings is still pinged, within half its timeout.
    ({"interval": "0", "timeout": "30"}, (15.0, 30.0)),
    ({"interval": "0", "timeout": "120"}, (25.0, 120.0)),
    # One that never drops is still dropped, at two intervals at least.
    ({"interval": "60", "timeout": "0"}, (60.0, 120.0)),
    ({"interval": "5", "timeout": "0"}, (5.0, 90.0)),
    # Passive and patient, half an answer, or nonsense: the client's own.
    ({"interval": "0", "timeout": "0"}, (25.0, 90.0)),
    ({"interval": "5"}, (25.0, 90.0)),
    ({"interval": "10", "timeout": "10"}, (25.0, 90.0)),
    ({"interval": "x", "timeout": "10"}, (25.0, 90.0)),
])
def test_missing_or_odd_timing_leaves_the_client_watching(fields, expected):
    """Whatever the server announces, the client still pings a silent server
    before it would drop it, and still drops a dead one."""
    factory = HeartbeatClientFactory(clock=object())
    taken = announced_settings(factory, Handshake(1, fields))
    timing = (
        taken.get("heartbeatInterval", factory.heartbeatInterval),
        taken.get("heartbeatTimeout", factory.heartbeatTimeout),
    )
    assert timing == expected


def test_a_pong_timeout_of_zero_is_followed(clock):
    """A server that turned the pong deadline off says so, and its clients
    turn it off too; a bad value changes nothing."""
    factory = HeartbeatClientFactory(clock=object())
    off = announced_settings(factory, Handshake(1, {"pong-timeout": "0"}))
    assert off == {"heartbeatPongTimeout": 0.0}
    assert announced_settings(factory, Handshake(1, {"pong-timeout": "-1"})) == {}


def test_the_client_drops_a_server_that_leaves_its_ping_unanswered(clock):
    """Once the server has answered a ping, one it leaves unanswered past
    the pong deadline drops it, well before the timeout, and the client
    reconnects."""
    factory, protocol, transport, wrapper = client(clock)
    protocol.dataReceived(ANSWER)
    run(clock, 0.01)
    protocol.dataReceived(b"pong 1\n")
    assert protocol.heartbeatPongDeadline == 0.5
    run(clock, 2.0 + SLOT)
    assert take(transport) == b"ping 2\n"
    run(clock, 0.5 - 2 * SLOT)
    assert not transport.disconnecting
    run(clock, 3 * SLOT)
    assert transport.disconnected
    lose(wrapper, ConnectionLost())
    assert [c for c in clock.getDelayedCalls() if "_reconnect" in repr(c)]


def test_client_and_server_agree_in_memory(clock):
    """The library's server announces its timing and the library's client
    takes it: an operator sets it in one place."""
    server = HeartbeatServerFactory(
        heartbeatInterval=3.0, heartbeatTimeout=8.0, heartbeatPongTimeout=1.0,
        clock=clock,
    )
    factory, protocol, transport, wrapper = client(clock)
    peer, serverTransport = connect(server)
    peer.dataReceived(b"heartbeat/1 resume\nping 1\n")
    protocol.dataReceived(take(serverTransport))
    assert settings(protocol)[:3] == (3.0, 8.0, 1.0)
    lose(wrapper)
    lose(peer)


def test_heartbeat_client_keeps_only_what_it_was_given():
    """heartbeat-client pins the options given on its command line; those
    left out follow the server."""
    options = Options()
    options.parseOptions(["--timeout", "30", "--max-line-length", "100", "h:1"])
    factory = HeartbeatClientFactory(clock=object())
    configure(factory, options)
    taken = announced_settings(
        factory,
        Handshake(1, {"interval": "2", "timeout": "7", "pong-timeout": "1",
                      "max-length": "5"}),
    )
    assert taken == {"heartbeatInterval": 2.0, "heartbeatPongTimeout": 1.0}
    assert (factory.heartbeatTimeout, factory.maxLineLength) == (30.0, 100)


def test_the_websocket_client_follows_the_server_hello(clock):
    """The WebSocket client takes the server's timing and message limit
    from the server's hello, as the line client does."""
    hub, factory, endpoint = make_websocket_client(
        clock,
        hub_kwargs={"heartbeatPongTimeout": 0.25, "maxLineLength": 5000},
        heartbeatInterval=HeartbeatClientFactory.heartbeatInterval,
        heartbeatTimeout=HeartbeatClientFactory.heartbeatTimeout,
    )
    websocket, server, pump = endpoint.accept()
    pump.flush()
    assert settings(websocket) == (1.0, 3.0, 0.25, 5000)
    assert websocket.maxMessagePayloadSize == 5000
    factory.stopTrying()
    pump.flush()
