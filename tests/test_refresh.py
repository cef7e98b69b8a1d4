"""
The clients keep a connection whose token expires: a callable token is
asked for a fresh one in time, and the connection outlives its tokens; a
client that cannot refresh is closed at exp and comes back with a fresh
token, or stops if it has none to give.
"""

import signal
import time

import pytest

from heartbeat import HeartbeatClientFactory, HeartbeatServerFactory, ServerRefused
from heartbeat._client.websocket import HeartbeatWebSocketClientFactory
from heartbeat._server.websocket import HeartbeatWebSocketServerFactory

from .apiclient import token_for
from .helpers import lose
from .processes import Server
from .sessionlink import Recorder, RecordingServer, websocket_classes
from .test_command_line import _Client
from .test_client import FakeEndpoint
from .test_websocket import WebSocketEndpoint, run
from .tokens import SECRET, mint, verifier

LIFETIME = 10.0


@pytest.fixture
def clock(epoch_clock):
    return epoch_clock


class Backend:
    """
    Mints a token for alice whenever asked, as an application's backend
    would, and counts the calls.
    """

    def __init__(self, clock, lifetime=LIFETIME):
        self.clock = clock
        self.lifetime = lifetime
        self.calls = 0
        self.failing = False

    def __call__(self):
        self.calls += 1
        if self.failing:
            raise OSError("the backend is down")
        return mint(self.clock, "alice", self.lifetime)


def line_pair(clock, token):
    """A JWT server, and a line client of it connected in memory."""
    server = HeartbeatServerFactory(clock=clock, jwtVerifier=verifier(),
                                    heartbeatInterval=2, heartbeatTimeout=7)
    client = HeartbeatClientFactory(clock=clock, random=lambda: 0.5)
    client.authToken = token
    endpoint = WebSocketEndpoint(clock, server)
    client.connectEndpoint(endpoint, "memory")
    return server, client, endpoint


def websocket_pair(clock, token):
    hub = HeartbeatServerFactory(clock=clock, jwtVerifier=verifier(),
                                 heartbeatInterval=2, heartbeatTimeout=7)
    client = HeartbeatWebSocketClientFactory("ws://127.0.0.1/", clock=clock,
                                             random=lambda: 0.5)
    client.authToken = token
    endpoint = WebSocketEndpoint(clock, HeartbeatWebSocketServerFactory(hub))
    client.connectEndpoint(endpoint, "memory")
    return hub, client, endpoint


@pytest.mark.parametrize("pair", [line_pair, websocket_pair])
def test_a_refreshed_token_outlives_three_expiry_periods(clock, pair):
    """A client whose token comes from a callable keeps one connection for
    more than three of its tokens' lifetimes: a fresh token goes once three
    quarters of the current one's time are gone, and the server never
    closes it."""
    backend = Backend(clock)
    server, client, endpoint = pair(clock, backend)
    protocol, serverSide, pump = endpoint.accept()
    run(clock, pump, 1)
    assert client.connectedProtocol is protocol
    [admitted] = server.connections
    run(clock, pump, 3.5 * LIFETIME)
    assert client.connectedProtocol is protocol
    assert server.connections == {admitted} and admitted.heartbeatName == "alice"
    assert len(endpoint.attempts) == 1
    # One token at the connection, then one per 7.5 s.
    assert backend.calls == 1 + int(3.5 * LIFETIME / (0.75 * LIFETIME))
    client.stopTrying()
    pump.flush()
    run(clock, pump, 2)
    assert clock.getDelayedCalls() == []


def recording(pair, clock, token):
    """C{pair}, with both sides recording the application lines they get
    in their factory's C{got}."""
    server, client, endpoint = pair(clock, token)
    if pair is line_pair:
        server.protocol, client.protocol = RecordingServer, Recorder
    else:
        serverProtocol, client.protocol, _ = websocket_classes()
        endpoint.factory.protocol = serverProtocol
    server.got, client.got = [], []
    return server, client, endpoint


@pytest.mark.parametrize("pair", [line_pair, websocket_pair])
def test_a_session_outlives_its_tokens_and_lines_that_look_like_them(clock, pair):
    """In a session on a server that verifies tokens, lines that read like
    a fresh token or its answer reach the other side's application whole
    and once, both ways, while real fresh tokens keep the connection: the
    session's counts stay in step (no line is lost or taken twice)."""
    backend = Backend(clock)
    server, client, endpoint = recording(pair, clock, backend)
    protocol, serverSide, pump = endpoint.accept()
    run(clock, pump, 1)
    [admitted] = server.connections
    assert admitted.heartbeatSession is not None
    looks = [b"auth " + mint(clock, "mallory"), b"heartbeat/1 expires=1",
             b'{"type":"hello","expires":1}']
    sent = []
    for period in range(3):
        for line in looks:
            client.sendMessage(line)
            admitted.sendMessage(line)
            sent.append(line)
        run(clock, pump, 0.75 * LIFETIME)
    assert backend.calls == 1 + 3
    assert client.connectedProtocol is protocol and server.connections == {admitted}
    assert server.got == sent and client.got == sent
    assert admitted.heartbeatName == "alice"
    session = admitted.heartbeatSession
    assert session.unacknowledged == 0 and client._session.unacknowledged == 0
    client.stopTrying()
    pump.flush()


@pytest.mark.parametrize("pair", [line_pair, websocket_pair])
def test_a_client_that_cannot_refresh_comes_back_with_a_fresh_token(clock, pair):
    """When the backend fails as a refresh is due, the connection expires
    at exp, and the client connects again with the token the backend gives
    it then."""
    backend = Backend(clock)
    server, client, endpoint = pair(clock, backend)
    protocol, serverSide, pump = endpoint.accept()
    run(clock, pump, 1)
    backend.failing = True
    run(clock, pump, LIFETIME)
    assert client.connectedProtocol is None and server.connections == set()
    backend.failing = False
    run(clock, pump, 1)
    assert len(endpoint.attempts) == 2
    again, serverSide, pump = endpoint.accept()
    run(clock, pump, 1)
    assert client.connectedProtocol is again
    [admitted] = server.connections
    assert admitted.heartbeatName == "alice"
    client.stopTrying()
    pump.flush()


@pytest.mark.parametrize("pair", [line_pair, websocket_pair])
def test_a_fixed_token_that_expires_stops_the_client(clock, pair):
    """A client given a token as bytes cannot make a fresh one: at its exp
    the server closes the connection with 'token expired', and the client
    stops with ServerRefused rather than come back with a dead token."""
    server, client, endpoint = pair(clock, mint(clock, "alice", LIFETIME))
    stopped = client.whenStopped()
    protocol, serverSide, pump = endpoint.accept()
    run(clock, pump, LIFETIME + 1.5)
    assert server.connections == set()
    assert stopped.called
    failure = stopped.result
    stopped.addErrback(lambda failure: None)
    assert failure.check(ServerRefused) and str(failure.value) == "token expired"
    assert len(endpoint.attempts) == 1


def test_a_token_the_callable_cannot_give_is_tried_again_later(clock):
    """A callable that fails at connection time drops that attempt, and the
    client tries again after its backoff, with what it gives then."""
    backend = Backend(clock)
    backend.failing = True
    client = HeartbeatClientFactory(clock=clock, random=lambda: 0.5)
    client.authToken = backend
    endpoint = FakeEndpoint()
    client.connectEndpoint(endpoint, "fake")
    protocol, transport, wrapper = endpoint.accept()
    assert transport.value() == b"" and transport.disconnecting
    lose(wrapper)
    backend.failing = False
    clock.advance(0.5)
    protocol, transport, wrapper = endpoint.accept()
    assert transport.value().startswith(b"auth ey")
    assert backend.calls == 2
    client.stopTrying()
    lose(wrapper)
    assert clock.getDelayedCalls() == []


def test_the_client_command_rereads_its_token_file(tmp_path):
    """heartbeat-client reads --auth-token-file again before its token
    expires: while the file is renewed (as a backend's cron would), one
    connection outlives more than three tokens of 3 s, and its lines are
    echoed; the server logs no expiry and the client no reconnection."""
    key = tmp_path / "jwt.key"
    key.write_bytes(SECRET)
    tokenFile = tmp_path / "token"

    def renew():
        fresh = tmp_path / "token.new"
        fresh.write_bytes(token_for(SECRET, "cron", lifetime=3.0))
        fresh.replace(tokenFile)

    renew()
    server = Server("--jwt-key-file", str(key))
    client = _Client(f"127.0.0.1:{server.port}", "--auth-token-file", str(tokenFile))
    try:
        client.type(b"first")
        assert client.readline(client.process.stdout) == b"first\n"
        started = time.monotonic()
        while time.monotonic() - started < 10.5:
            renew()
            time.sleep(0.5)
        client.type(b"after three tokens")
        assert client.readline(client.process.stdout) == b"after three tokens\n"
        client.process.send_signal(signal.SIGTERM)
        status, stdout, stderr = client.finish()
    finally:
        client.kill()
        server.stop()
    assert status == 0
    assert stderr.count("connected to ") == 1, stderr
    assert stderr.count("sending a fresh auth token") >= 4, stderr
    assert "token expired" not in server.log() and "refused" not in server.log()
