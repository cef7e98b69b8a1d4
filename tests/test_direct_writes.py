"""
Direct writes (heartbeat._server.transport): over real sockets on 127.0.0.1
and a UNIX socket, each test on a reactor of its own that it turns itself,
with the peer in a thread using plain blocking sockets.
"""

import errno
import socket
import ssl
import threading
import time

import pytest
from twisted.internet import tcp, unix
from twisted.internet.endpoints import serverFromString
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import globalLogPublisher
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

from heartbeat._server.factory import HeartbeatServerFactory
from heartbeat._server.transport import (
    DirectWriteEndpoint,
    DirectWriteTCPServer,
    DirectWriteUNIXServer,
    direct_writes,
)

from .certificates import make_certificate


@pytest.fixture
def reactor():
    """
    A reactor of the test's own, never run: L{turn} turns it.
    """
    reactor = EPollReactor()
    yield reactor
    for selectable in reactor.removeAll():
        try:
            selectable.connectionLost(None)
        except Exception:
            pass
    for call in reactor.getDelayedCalls():
        call.cancel()


def turn(reactor, until, timeout=10.0):
    """
    Turn C{reactor} until C{until()} is true, for at most C{timeout}
    seconds.
    """
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out"
        reactor.iterate(0.005)


class Held(Protocol):
    """
    A server connection that the test writes to; it keeps what it reads.
    """

    def __init__(self):
        self.received = b""
        self.lost = None

    def connectionMade(self):
        self.factory.connections.append(self)

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.lost = reason


class Peer(threading.Thread):
    """
    The other end, in a thread: runs C{talk(sock)} on a connected blocking
    socket and keeps what it returns (or raises).
    """

    def __init__(self, connect, talk):
        super().__init__(daemon=True)
        self.connect = connect
        self.talk = talk
        self.result = self.error = None
        self.done = threading.Event()
        self.start()

    def run(self):
        try:
            sock = self.connect()
            try:
                self.result = self.talk(sock)
            finally:
                sock.close()
        except BaseException as e:
            self.error = e
        finally:
            self.done.set()

    def value(self):
        if self.error is not None:
            raise self.error
        return self.result


def listen(reactor, description, factory, direct=True):
    endpoint = serverFromString(reactor, description)
    if direct:
        endpoint = DirectWriteEndpoint(endpoint)
    ports = []
    endpoint.listen(factory).addCallback(ports.append)
    return ports[0]


def held_factory():
    factory = Factory.forProtocol(Held)
    factory.connections = []
    return factory


def tcp_peer(port, talk, receiveBuffer=None):
    def connect():
        sock = socket.socket()
        if receiveBuffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receiveBuffer)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port.getHost().port))
        return sock

    return Peer(connect, talk)


def unix_peer(path, talk):
    def connect():
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(10)
        sock.connect(str(path))
        return sock

    return Peer(connect, talk)


def outcome(reactor, peer):
    """
    Turn C{reactor} until C{peer} is done; what it returned.
    """
    turn(reactor, peer.done.is_set)
    return peer.value()


def read_all(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def read_to_end(sock):
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data, "reset"
        if not chunk:
            return data, "closed"
        data += chunk


def accepted(reactor, factory):
    turn(reactor, lambda: factory.connections)
    return factory.connections[0]


class FlakySocket:
    """
    A connection's socket whose next sends fail or stop short, as a full
    kernel buffer or a dead peer would make them.
    """

    def __init__(self, sock, outcomes):
        self._sock = sock
        self._outcomes = list(outcomes)

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def send(self, data):
        if self._outcomes:
            outcome = self._outcomes.pop(0)
            if isinstance(outcome, int):
                return self._sock.send(bytes(data[:outcome]))
            raise outcome
        return self._sock.send(data)


def test_a_reply_leaves_at_once(reactor):
    """A reply is on the wire as soon as it is written, without a write
    event: a pong costs the server one reactor event, not two."""
    factory = held_factory()
    port = listen(reactor, "tcp:0:interface=127.0.0.1", factory)
    received = []
    peer = tcp_peer(port, lambda sock: received.append(sock.recv(100)) or True)
    connection = accepted(reactor, factory)
    assert type(connection.transport) is DirectWriteTCPServer
    connection.transport.write(b"pong 1\n")
    # Not turned since the write: the peer has it all the same.
    assert connection.transport not in reactor.getWriters()
    assert peer.done.wait(5)
    assert received == [b"pong 1\n"]


def test_without_direct_writes_a_reply_waits_for_the_reactor(reactor):
    """The other side of the boundary: Twisted's own transport holds the
    reply until the reactor's write event (what --buffered-writes keeps)."""
    factory = held_factory()
    port = listen(reactor, "tcp:0:interface=127.0.0.1", factory, direct=False)
    peer = tcp_peer(port, lambda sock: sock.recv(100))
    connection = accepted(reactor, factory)
    assert type(connection.transport) is tcp.Server
    connection.transport.write(b"pong 1\n")
    assert connection.transport in reactor.getWriters()
    assert not peer.done.wait(0.2)
    assert outcome(reactor, peer) == b"pong 1\n"


@pytest.mark.parametrize(
    "outcomes",
    [
        [BlockingIOError(errno.EAGAIN, "full")],
        [3],
        [0],
    ],
    ids=["EAGAIN", "partial", "nothing taken"],
)
def test_what_the_kernel_does_not_take_is_queued_in_order(reactor, outcomes):
    """A write the socket refuses (EAGAIN) or takes only in part reaches
    the peer whole and in order, with the writes after it."""
    factory = held_factory()
    port = listen(reactor, "tcp:0:interface=127.0.0.1", factory)
    expected = b"first line\n" + b"second\n" + b"third\n"
    peer = tcp_peer(port, lambda sock: read_all(sock, len(expected)))
    connection = accepted(reactor, factory)
    transport = connection.transport
    transport.socket = FlakySocket(transport.socket, outcomes)
    transport.write(b"first line\n")
    # Queued behind what is waiting, never sent before it.
    transport.write(b"second\n")
    transport.write(b"third\n")
    assert transport in reactor.getWriters()
    assert outcome(reactor, peer) == expected
    assert transport not in reactor.getWriters()


def test_a_send_error_ends_the_connection_as_twisted_would(reactor):
    """A write meeting a dead peer (a reset) ends the connection as
    Twisted's write event always has, not with an exception in the
    protocol's code."""
    factory = held_factory()
    port = listen(reactor, "tcp:0:interface=127.0.0.1", factory)
    peer = tcp_peer(port, lambda sock: sock.recv(100))
    connection = accepted(reactor, factory)
    transport = connection.transport
    transport.socket = FlakySocket(
        transport.socket, [ConnectionResetError(errno.ECONNRESET, "reset")] * 5
    )
    transport.write(b"pong\n")
    turn(reactor, lambda: connection.lost is not None)
    assert "Connection to the other side was lost" in str(connection.lost.value)
    peer.join(5)


def test_a_peer_that_stops_reading_fills_the_queue_then_gets_all(reactor):
    """Against a peer that stops reading, writes go to Twisted's queue once
    the kernel's buffers are full; when it reads again, every byte arrives
    in order."""
    factory = held_factory()
    port = listen(reactor, "tcp:0:interface=127.0.0.1", factory)
    go = threading.Event()
    chunks = [bytes([65 + n % 26]) * 8192 + b"\n" for n in range(200)]
    expected = b"".join(chunks)

    def talk(sock):
        go.wait(10)
        return read_all(sock, len(expected))

    peer = tcp_peer(port, talk, receiveBuffer=4096)
    connection = accepted(reactor, factory)
    transport = connection.transport
    transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    queuedAt = None
    for n, chunk in enumerate(chunks):
        transport.write(chunk)
        if queuedAt is None and (transport.dataBuffer or transport._tempDataLen):
            queuedAt = n
    assert queuedAt is not None and queuedAt < len(chunks) - 1
    go.set()
    assert outcome(reactor, peer) == expected


def test_large_writes_arrive_whole(reactor):
    """Writes larger than Twisted's send limit (128 KiB), between small
    ones, arrive whole and in order."""
    factory = held_factory()
    port = listen(reactor, "tcp:0:interface=127.0.0.1", factory)
    writes = [b"a\n", b"b" * (3 << 20) + b"\n", b"c\n", b"d" * 200_000 + b"\n", b"e\n"]
    expected = b"".join(writes)
    peer = tcp_peer(port, lambda sock: read_all(sock, len(expected)))
    connection = accepted(reactor, factory)
    for data in writes:
        connection.transport.write(data)
    assert outcome(reactor, peer) == expected


@implementer(IPushProducer)
class Cap:
    def __init__(self):
        self.events = []

    def pauseProducing(self):
        self.events.append("pause")

    def resumeProducing(self):
        self.events.append("resume")

    def stopProducing(self):
        self.events.append("stop")


def test_a_streaming_producer_is_paused_and_resumed(reactor):
    """A registered streaming producer (the write cap) is told to pause
    when writes pile up past the transport's buffer size and to resume
    once they are sent, as with Twisted's own transport."""
    factory = held_factory()
    port = listen(reactor, "tcp:0:interface=127.0.0.1", factory)
    go = threading.Event()
    total = 2 << 20

    release = threading.Event()

    def talk(sock):
        go.wait(10)
        received = len(read_all(sock, total))
        release.wait(10)
        return received

    peer = tcp_peer(port, talk, receiveBuffer=4096)
    connection = accepted(reactor, factory)
    transport = connection.transport
    transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    cap = Cap()
    transport.registerProducer(cap, True)
    transport.write(b"x\n")
    assert cap.events == []
    for _ in range(total // 8192 - 1):
        transport.write(b"y" * 8191 + b"\n")
    transport.write(b"z" * 8189 + b"\n")
    assert cap.events[:1] == ["pause"]
    go.set()
    turn(reactor, lambda: cap.events[-1] == "resume")
    # Twisted tells it again at each write while full, as it always has.
    assert set(cap.events) == {"pause", "resume"}
    release.set()
    assert outcome(reactor, peer) == total


class FileLike:
    """
    A pull producer, as L{twisted.protocols.basic.FileSender}: it writes
    its next chunk each time the transport has sent the last.
    """

    def __init__(self, transport, chunks):
        self.transport = transport
        self.chunks = list(chunks)

    def resumeProducing(self):
        if self.chunks:
            self.transport.write(self.chunks.pop(0))
        else:
            self.transport.unregisterProducer()

    def stopProducing(self):
        self.chunks = []


def test_a_pull_producer_is_asked_for_more_until_done(reactor):
    """A pull producer (a file being sent) is asked for its next chunk
    each time the last is sent: it never stalls for want of a write event."""
    factory = held_factory()
    port = listen(reactor, "tcp:0:interface=127.0.0.1", factory)
    chunks = [bytes([97 + n]) * 1000 for n in range(20)]
    expected = b"".join(chunks)
    peer = tcp_peer(port, lambda sock: read_all(sock, len(expected)))
    connection = accepted(reactor, factory)
    producer = FileLike(connection.transport, chunks)
    connection.transport.registerProducer(producer, False)
    assert outcome(reactor, peer) == expected
    assert producer.chunks == []


def test_the_write_cap_drops_a_peer_that_does_not_read(reactor):
    """A line-server peer that never reads is dropped once more than
    --max-write-buffer waits unsent, with direct writes as without."""
    factory = HeartbeatServerFactory(
        heartbeatInterval=None, heartbeatTimeout=None, maxWriteBuffer=256 * 1024,
        clock=reactor,
    )
    factory.summaryInterval = None
    port = listen(reactor, "tcp:0:interface=127.0.0.1", factory)
    stop = threading.Event()
    peer = tcp_peer(port, lambda sock: stop.wait(10), receiveBuffer=4096)
    turn(reactor, lambda: factory.connections)
    [connection] = factory.connections
    connection.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    line = b"m" * 1023
    written = 0
    while factory.connections and written < 8 << 20:
        connection.sendMessage(line)
        written += 1024
        reactor.iterate(0)
    stop.set()
    assert not factory.connections
    # Dropped past the cap, not before: the transport's buffer size (64
    # KiB) and the kernel's small buffers are all that went out beside it.
    assert 256 * 1024 < written < 256 * 1024 + (64 + 64) * 1024
    peer.join(5)


def test_a_reader_that_keeps_up_is_never_capped(reactor):
    """The other side: a peer reading everything gets every line, however
    many, and the cap lets the writes go straight out again afterwards."""
    factory = HeartbeatServerFactory(
        heartbeatInterval=None, heartbeatTimeout=None, maxWriteBuffer=64 * 1024,
        clock=reactor,
    )
    factory.summaryInterval = None
    port = listen(reactor, "tcp:0:interface=127.0.0.1", factory)
    lines = 2000
    line = b"n" * 1023
    release = threading.Event()

    def talk(sock):
        received = read_all(sock, lines * 1024)
        release.wait(10)
        return received

    peer = tcp_peer(port, talk)
    turn(reactor, lambda: factory.connections)
    [connection] = factory.connections
    for n in range(lines):
        connection.sendMessage(line)
        turn(reactor, lambda: not connection.transport._tempDataLen)
    turn(reactor, lambda: not connection.transport.dataBuffer)
    assert factory.connections == {connection}
    assert connection._writeCap.unsent is None
    release.set()
    assert outcome(reactor, peer) == (line + b"\n") * lines


class Echo(LineReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 1 << 20

    def connectionMade(self):
        self.factory.connections.append(self)

    def lineReceived(self, line):
        self.sendLine(b"pong" + line[4:] if line.startswith(b"ping") else line)


@pytest.fixture
def tls_clock(reactor, monkeypatch):
    """
    TLS gathers small writes until the next turn of the global reactor,
    unless told of another clock (as Twisted's own tests tell it).
    """
    from twisted.protocols import tls

    monkeypatch.setattr(tls, "_get_default_clock", lambda: reactor)


def test_tls_by_endpoint_writes_directly_beneath_it(reactor, tls_clock, tmp_path):
    """Behind ssl:, the encrypted replies take the short way too, and a
    TLS client gets its pongs and a large echo intact."""
    key, cert, trust = make_certificate(tmp_path)
    factory = Factory.forProtocol(Echo)
    factory.connections = []
    port = listen(
        reactor, f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}", factory
    )
    big = b"b" * 300_000

    def connect():
        context = ssl.create_default_context(cafile=str(trust / "cert.pem"))
        sock = socket.create_connection(("127.0.0.1", port.getHost().port), 10)
        return context.wrap_socket(sock, server_hostname="127.0.0.1")

    def talk(sock):
        sock.sendall(b"ping 1\n")
        answers = [read_all(sock, 7)]
        sock.sendall(big + b"\n")
        answers.append(read_all(sock, len(big) + 1))
        return answers

    peer = Peer(connect, talk)
    assert outcome(reactor, peer) == [b"pong 1\n", big + b"\n"]
    [echo] = factory.connections
    assert type(echo.transport.transport) is DirectWriteTCPServer


def test_tls_started_on_the_transport_keeps_twisted_buffering(
    reactor, tls_clock, tmp_path
):
    """A transport on which TLS is started (startTLS) sends through TLS,
    never in clear beside it: its writes go Twisted's way."""
    from twisted.internet.ssl import PrivateCertificate

    key, cert, trust = make_certificate(tmp_path)
    certificate = PrivateCertificate.loadPEM(key.read_text() + cert.read_text())

    class StartsTLS(Echo):
        def lineReceived(self, line):
            if line == b"starttls":
                self.sendLine(b"go ahead")
                self.transport.startTLS(certificate.options())
            else:
                super().lineReceived(line)

    factory = Factory.forProtocol(StartsTLS)
    factory.connections = []
    port = listen(reactor, "tcp:0:interface=127.0.0.1", factory)

    def talk(sock):
        sock.sendall(b"starttls\n")
        assert read_all(sock, 9) == b"go ahead\n"
        context = ssl.create_default_context(cafile=str(trust / "cert.pem"))
        secure = context.wrap_socket(sock, server_hostname="127.0.0.1")
        secure.sendall(b"ping 2\n")
        return read_all(secure, 7)

    peer = tcp_peer(port, talk)
    assert outcome(reactor, peer) == b"pong 2\n"
    [echo] = factory.connections
    assert echo.transport.TLS


def test_error_line_then_half_close(reactor):
    """After an error line the peer reads the line, then the end of the
    stream, while the server still reads what it sends (no reset)."""
    factory = HeartbeatServerFactory(
        heartbeatInterval=None, heartbeatTimeout=None, maxLineLength=10,
        clock=reactor,
    )
    factory.summaryInterval = None
    port = listen(reactor, "tcp:0:interface=127.0.0.1", factory)

    def talk(sock):
        sock.sendall(b"x" * 20 + b"\n")
        first = read_to_end(sock)
        # The server's side is shut, its reading side still open.
        sock.sendall(b"more\n")
        return first

    peer = tcp_peer(port, talk)
    assert outcome(reactor, peer) == (b"error line too long\n", "closed")


def test_nothing_is_sent_after_an_abort(reactor):
    """A write after abortConnection sends nothing: the peer gets what was
    written before, then the reset."""
    factory = held_factory()
    port = listen(reactor, "tcp:0:interface=127.0.0.1", factory)
    ready = threading.Event()

    def talk(sock):
        ready.set()
        return read_to_end(sock)

    peer = tcp_peer(port, talk)
    connection = accepted(reactor, factory)
    assert ready.wait(5)
    connection.transport.write(b"before\n")
    connection.transport.abortConnection()
    connection.transport.write(b"after\n")
    turn(reactor, peer.done.is_set)
    received, how = peer.value()
    assert received == b"before\n"
    assert connection.lost is not None


def test_a_write_from_connection_lost_is_dropped_quietly(reactor):
    """A protocol that writes from its connectionLost (a goodbye line)
    gets no exception and logs no error."""
    errors = []

    def observer(event):
        if event.get("log_failure") is not None or event.get("isError"):
            errors.append(event)

    class Goodbye(Held):
        def connectionLost(self, reason):
            self.transport.write(b"goodbye\n")
            super().connectionLost(reason)

    factory = Factory.forProtocol(Goodbye)
    factory.connections = []
    port = listen(reactor, "tcp:0:interface=127.0.0.1", factory)
    globalLogPublisher.addObserver(observer)
    try:
        peer = tcp_peer(port, lambda sock: None)
        connection = accepted(reactor, factory)
        turn(reactor, lambda: connection.lost is not None)
    finally:
        globalLogPublisher.removeObserver(observer)
    peer.join(5)
    assert errors == []


def test_unix_sockets_write_directly(reactor, tmp_path):
    """A unix: port's connections write directly, and pongs arrive."""
    path = tmp_path / "hb.sock"
    factory = Factory.forProtocol(Echo)
    factory.connections = []
    listen(reactor, f"unix:{path}", factory)

    def talk(sock):
        sock.sendall(b"ping 3\n")
        return read_all(sock, 7)

    peer = unix_peer(path, talk)
    assert outcome(reactor, peer) == b"pong 3\n"
    [echo] = factory.connections
    assert type(echo.transport) is DirectWriteUNIXServer


def test_unix_writes_wait_behind_a_file_descriptor(reactor, tmp_path):
    """While a file descriptor waits to be sent, later writes queue behind
    it: the descriptor travels with the bytes it was sent with."""
    path = tmp_path / "hb.sock"
    factory = held_factory()
    listen(reactor, f"unix:{path}", factory)
    go = threading.Event()

    def talk(sock):
        go.wait(10)
        data, fds, _, _ = socket.recv_fds(sock, 100, 1)
        for fd in fds:
            socket.close(fd)
        return data + read_all(sock, 7 - len(data)), len(fds)

    peer = unix_peer(path, talk)
    connection = accepted(reactor, factory)
    transport = connection.transport
    reading, writing = socket.socketpair()
    transport.sendFileDescriptor(reading.fileno())
    transport.write(b"fd\n")
    transport.write(b"more\n")
    assert transport._tempDataLen == 8
    go.set()
    turn(reactor, peer.done.is_set)
    reading.close()
    writing.close()
    assert peer.value() == (b"fd\nmore\n", 1)


def test_an_adopted_port_writes_directly(reactor):
    """A worker's port, adopted from its supervisor's socket, writes
    directly once direct_writes is applied to it."""
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(5)
    listening.setblocking(False)
    factory = held_factory()
    port = direct_writes(
        reactor.adoptStreamPort(listening.fileno(), socket.AF_INET, factory)
    )
    listening.close()
    peer = tcp_peer(port, lambda sock: sock.recv(100))
    connection = accepted(reactor, factory)
    assert type(connection.transport) is DirectWriteTCPServer
    connection.transport.write(b"pong\n")
    assert peer.done.wait(5)
    assert peer.value() == b"pong\n"


def test_other_ports_are_left_alone():
    """A port that is not one of Twisted's TCP or UNIX ports keeps its
    transport."""

    class Other:
        transport = object

    other = Other()
    assert direct_writes(other) is other
    assert other.transport is object
    assert direct_writes(object()) is not None
    assert issubclass(DirectWriteUNIXServer, unix.Server)


def test_the_line_port_writes_directly_unless_told_not_to():
    """twistd heartbeat's --port writes directly by default; with
    --buffered-writes it is Twisted's own transport, as before."""
    from heartbeat._service.tap import Options, makeService

    def endpoint(*argv):
        options = Options()
        options.parseOptions(["--port", "tcp:0:interface=127.0.0.1", *argv])
        [service] = makeService(options)
        return service.endpoint

    assert isinstance(endpoint(), DirectWriteEndpoint)
    assert not isinstance(endpoint("--buffered-writes"), DirectWriteEndpoint)
