"""
Sessions over the line framing, in memory: every application line reaches
the other side's application once, in order, whatever happens to the
connections, and a session that cannot be resumed says so.
"""

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from heartbeat import HeartbeatClientFactory, HeartbeatServerFactory
from heartbeat._cluster.interface import ClusterUnavailable
from heartbeat._framing.handshake import parse_handshake
from heartbeat._session.store import SessionStore

from .helpers import connect, lose, take
from .sessionlink import Link, Recorder, RecordingServer, websocket_classes

INTERVAL, TIMEOUT, PONG_TIMEOUT = 1.0, 3.0, 0.5
case = SynchronousTestCase()


class RecordsLoss:
    """
    A client that records the sessions it was told it lost, and comes back
    within 0.1 to 0.2 s.
    """

    def setUp(self):
        self.initialDelay = 0.1
        self.maxDelay = 0.2
        self.lost = []

    def sessionLost(self, reason, inDoubt):
        self.lost.append((reason, inDoubt))


class LossRecorder(RecordsLoss, HeartbeatClientFactory):
    def __init__(self, clock):
        super().__init__(clock, random=lambda: 0.5)
        self.setUp()


FRAMINGS = ["lines", "websocket"]


def link_for(clock, framing="lines", **settings):
    settings.setdefault("heartbeatInterval", INTERVAL)
    settings.setdefault("heartbeatTimeout", TIMEOUT)
    settings.setdefault("heartbeatPongTimeout", PONG_TIMEOUT)
    hub = HeartbeatServerFactory(clock=clock, **settings)
    if framing == "lines":
        hub.protocol = RecordingServer
        client = LossRecorder(clock)
        client.protocol = Recorder
        return connected(Link(clock, hub, client))
    from heartbeat.websocket import HeartbeatWebSocketServerFactory

    serverProtocol, clientProtocol, clientFactory = websocket_classes()
    server = HeartbeatWebSocketServerFactory(hub)
    server.protocol = serverProtocol

    class PageRecorder(RecordsLoss, clientFactory):
        pass

    client = PageRecorder("ws://127.0.0.1/", clock=clock, random=lambda: 0.5)
    client.setUp()
    client.protocol = clientProtocol
    return connected(Link(clock, server, client))


def connected(link):
    link.connect()
    return link


class Traffic:
    """
    Numbered lines both ways: the client's through its factory, the
    server's through the client's session, wherever its client is.
    """

    def __init__(self, link):
        self.link = link
        self.sent = 0

    def session(self):
        (session,) = self.link.hub.sessions.sessions.values()
        return session

    def send(self, count):
        for _ in range(count):
            self.sent += 1
            self.link.client.sendMessage(b"c%d" % self.sent)
            self.session().sendMessage(b"s%d" % self.sent)

    def check(self):
        """Each side's application got every line once, in order."""
        link = self.link
        assert link.hub.got == [b"c%d" % n for n in range(1, self.sent + 1)]
        assert link.client.got == [b"s%d" % n for n in range(1, self.sent + 1)]


@pytest.fixture
def clock():
    return Clock()


def test_a_session_is_offered_in_the_handshake(clock):
    """A client that asks to resume is given a session id (128 random
    bits) and the server's count in its answer."""
    factory = HeartbeatServerFactory(clock=clock)
    protocol, transport = connect(factory)
    protocol.dataReceived(b"heartbeat/1 resume\n")
    fields = dict(
        word.split(b"=") for word in take(transport).split()[1:] if b"=" in word
    )
    assert len(fields[b"session"]) == 22
    assert fields[b"received"] == b"0"
    other, otherTransport = connect(factory)
    other.dataReceived(b"heartbeat/1 resume\n")
    assert fields[b"session"] not in take(otherTransport)
    lose(protocol)
    lose(other)


def test_no_session_without_asking_and_none_when_off(clock):
    """A peer that does not ask gets no session field and its lines go
    out unescaped; with the window at 0 nobody gets one."""
    factory = HeartbeatServerFactory(clock=clock)
    protocol, transport = connect(factory)
    protocol.dataReceived(b"heartbeat/1 name=a\n")
    assert b"session" not in take(transport)
    protocol.dataReceived(b"ack 5\n.x\n")
    assert take(transport) == b"ack 5\n.x\n"
    off = HeartbeatServerFactory(clock=clock, resumeWindow=0)
    asker, askerTransport = connect(off)
    asker.dataReceived(b"heartbeat/1 resume\n")
    assert b"session" not in take(askerTransport)
    lose(protocol)
    lose(asker)


@pytest.mark.parametrize("cut", ["reset", "silence", "client side only"])
@pytest.mark.parametrize("framing", FRAMINGS)
def test_lines_in_flight_at_a_cut_arrive_once_in_order(clock, framing, cut):
    """Lines written into a connection just before it is cut (reset,
    silently dead, or dropped by the client alone while the server holds
    it) reach the other side's application once, in order, after the
    client reconnects."""
    link = link_for(clock, framing)
    traffic = Traffic(link)
    traffic.send(10)
    link.flush()
    traffic.check()
    if cut == "reset":
        link.reset()
    elif cut == "silence":
        link.silence()
    else:
        link.dropClientSide()
    traffic.send(10)
    link.advance(TIMEOUT + 1)
    traffic.send(5)
    link.advance(1)
    traffic.check()
    assert len(link.connections) == 2
    assert link.client.lost == []


@pytest.mark.parametrize("framing", FRAMINGS)
def test_a_half_open_connection_is_taken_over_at_once(clock, framing):
    """A client that resumes while the server still holds its old,
    half-open connection takes the session over: the old connection is
    aborted at once, not at its timeout, and nothing is duplicated."""
    link = link_for(clock, framing)
    traffic = Traffic(link)
    traffic.send(3)
    link.flush()
    old = link.current
    link.dropClientSide()
    link.advance(0.5)
    assert len(link.connections) == 2
    assert old.pump.serverIO.disconnected
    assert link.hub.sessions.resumed == 1
    traffic.send(3)
    link.flush()
    traffic.check()


@pytest.mark.parametrize("framing", FRAMINGS)
def test_acknowledgements_empty_the_buffers_under_load_and_when_idle(clock, framing):
    """Under a stream of lines each side keeps at most about 64 lines
    unacknowledged, and once traffic stops both buffers are empty within
    the acknowledgement delay, without a heartbeat."""
    link = link_for(clock, framing, heartbeatInterval=25, heartbeatTimeout=90)
    traffic = Traffic(link)
    peak = 0
    for _ in range(50):
        traffic.send(10)
        link.flush()
        peak = max(peak, traffic.session().unacknowledged,
                   link.client._session.unacknowledged)
    assert peak <= 64 + 10
    assert traffic.session().unacknowledged > 0
    link.advance(0.25)
    assert traffic.session().unacknowledged == 0
    assert link.client._session.unacknowledged == 0
    traffic.check()


def test_heartbeats_carry_the_counts(clock):
    """A ping and its pong each carry the sender's count, acknowledging
    what the other side sent."""
    factory = HeartbeatServerFactory(clock=clock)
    protocol, transport = connect(factory)
    protocol.dataReceived(b"heartbeat/1 resume\n")
    take(transport)
    session = protocol._heartbeatSession
    session.sendMessage(b"one")
    session.sendMessage(b"two")
    protocol.dataReceived(b"hello\nping 7 2\n")
    # The echo of hello is the session's third line, not yet acknowledged.
    assert take(transport) == b"one\ntwo\nhello\npong 7 1\n"
    assert session.unacknowledged == 1
    protocol.heartbeatPing()
    assert take(transport) == b"ping 1 1\n"
    protocol.dataReceived(b"pong 1 3\n")
    assert session.unacknowledged == 0
    lose(protocol)


@pytest.mark.parametrize("framing", FRAMINGS)
def test_application_lines_are_never_taken_for_control_lines(clock, framing):
    """Lines that look like acknowledgements, pings, goodbyes or errors,
    or that begin with the escape, reach the application as they were
    sent, both ways, and move no count."""
    link = link_for(clock, framing)
    tricky = [b"ack 5", b"ack 99999", b"ping", b"ping 1 2", b"pong 3 4",
              b"bye", b"error server full", b".", b"..x", b".ack 1", b"",
              b'{"type":"ack","n":9}', b'{"type":"ping","t":1,"n":3}',
              b'{"type":"pong","t":1}', b'{"type":"hello"}']
    for line in tricky:
        link.client.sendMessage(line)
        link.hub.sessions.sessions[next(iter(link.hub.sessions.sessions))].sendMessage(line)
    link.flush()
    assert link.hub.got == tricky
    assert link.client.got == tricky
    link.advance(1)
    assert link.client.lost == []


def test_a_line_from_a_peer_without_session_reaches_a_session_whole(clock):
    """Under --broadcast, a line 'ack 5' from nc reaches a session client
    as that line, and acknowledges nothing of its session."""
    server = HeartbeatServerFactory(clock=clock)
    from heartbeat import BroadcastServerProtocol

    server.protocol = BroadcastServerProtocol
    client = LossRecorder(clock)
    client.protocol = Recorder
    link = Link(clock, server, client)
    link.connect()
    client.sendMessage(b"mine")
    nc, ncTransport = connect(server)
    nc.dataReceived(b"ack 5\n")
    link.flush()
    assert client.got == [b"ack 5"]
    assert take(ncTransport) == b"mine\n"
    assert client._session.unacknowledged == 1
    lose(nc)


@pytest.mark.parametrize("framing", FRAMINGS)
def test_resume_before_any_line_was_received(clock, framing):
    """A session that has carried nothing yet resumes (socket.io#5538:
    recovery needed the server to have sent something first)."""
    link = link_for(clock, framing)
    traffic = Traffic(link)
    link.reset()
    link.advance(0.5)
    assert link.hub.sessions.resumed == 1
    traffic.send(2)
    link.flush()
    traffic.check()
    assert link.client.lost == []


@pytest.mark.parametrize("framing", FRAMINGS)
def test_a_quiet_session_resumes_after_half_the_window(clock, framing):
    """A session silent for longer than half the window, then cut,
    resumes: the window counts from the loss of its last connection, not
    from when a line was sent (socket.io#5282)."""
    link = link_for(clock, framing, resumeWindow=10)
    traffic = Traffic(link)
    traffic.send(2)
    link.advance(6)
    traffic.send(1)
    link.reset()
    link.advance(0.5)
    assert link.hub.sessions.resumed == 1
    traffic.send(1)
    link.flush()
    traffic.check()


@pytest.mark.parametrize("framing", FRAMINGS)
def test_a_reconnect_within_milliseconds_of_the_cut(clock, framing):
    """A client back within a millisecond, before the server has noticed
    that the old connection died, takes it over (socket.io#4880)."""
    link = link_for(clock, framing)
    traffic = Traffic(link)
    traffic.send(5)
    link.flush()
    link.client.initialDelay = 0.001
    link.dropClientSide()
    traffic.send(5)
    link.advance(0.002, step=0.001)
    assert len(link.connections) == 2
    assert link.connections[0].pump.serverIO.disconnected
    link.flush()
    traffic.check()


@pytest.mark.parametrize("framing", FRAMINGS)
def test_three_cuts_in_a_row_replay_nothing_twice(clock, framing):
    """Three cuts in a row, each right after a resume, give each line once
    (socket.io#5419 replayed the same packets after a second cut)."""
    link = link_for(clock, framing)
    traffic = Traffic(link)
    for _ in range(3):
        traffic.send(4)
        link.reset()
        link.advance(0.3)
    traffic.send(1)
    link.advance(1)
    traffic.check()
    assert link.hub.sessions.resumed == 3


@pytest.mark.parametrize("framing", FRAMINGS)
def test_a_session_past_its_window_is_lost_explicitly(clock, framing):
    """A client away longer than the window is told 'expired', its
    application hears which of its lines are in doubt, and the lines it
    sent while away, which never left it, go in the new session."""
    link = link_for(clock, framing, resumeWindow=2)
    traffic = Traffic(link)
    traffic.send(3)
    link.advance(0.3)
    link.silence()
    link.client.sendMessage(b"in flight")
    link.client.maxDelay = link.client.initialDelay = 10
    link.advance(TIMEOUT)
    link.client.sendMessage(b"while away")
    link.advance(10)
    assert link.client.lost == [("expired", [b"in flight"])]
    assert link.hub.got[-1:] == [b"while away"]
    assert link.hub.sessions.ended["expired"] == 1


@pytest.mark.parametrize("framing", FRAMINGS)
def test_an_overflowing_session_is_lost_explicitly(clock, framing):
    """More unacknowledged lines than --resume-buffer end the session;
    its connection is closed with 'error session overflow' and the client
    is told 'overflow' when it comes back."""
    link = link_for(clock, framing, resumeBuffer=5)
    session = Traffic(link).session()
    link.silence()
    for n in range(6):
        session.sendMessage(b"x%d" % n)
    link.advance(TIMEOUT + 1)
    assert [reason for reason, _ in link.client.lost] == ["overflow"]
    assert link.hub.sessions.ended["overflow"] == 1


def test_the_byte_bound_ends_a_session_too(clock):
    """A session over --resume-buffer-bytes ends, however few its lines."""
    link = link_for(clock, resumeBufferBytes=100)
    session = Traffic(link).session()
    session.sendMessage(b"x" * 60)
    link.silence()
    session.sendMessage(b"y" * 60)
    assert session.store is None


def test_a_restarted_server_says_it_does_not_know_the_session(clock):
    """A server restarted without a shared store answers 'unknown': the
    client's application is told, never left with a silent gap."""
    link = link_for(clock)
    traffic = Traffic(link)
    traffic.send(2)
    link.advance(0.3)
    link.silence()
    link.client.sendMessage(b"unacknowledged")
    link.server = link.hub = HeartbeatServerFactory(clock=clock)
    link.hub.protocol = RecordingServer
    link.hub.got = []
    link.advance(TIMEOUT + 1)
    assert link.client.lost == [("unknown", [b"unacknowledged"])]
    link.client.sendMessage(b"next")
    link.flush()
    assert link.hub.got == [b"next"]


def test_a_session_resumes_only_under_its_own_name(clock):
    """A resume under another name than the session's is refused."""
    factory = HeartbeatServerFactory(clock=clock)
    protocol, transport = connect(factory)
    protocol.dataReceived(b"heartbeat/1 name=alice resume\n")
    sid = take(transport).split(b"session=")[1].split()[0]
    lose(protocol)
    thief, thiefTransport = connect(factory)
    thief.dataReceived(b"heartbeat/1 name=mallory resume=%s received=0\n" % sid)
    assert b"lost=unknown" in take(thiefTransport)
    owner, ownerTransport = connect(factory)
    owner.dataReceived(b"heartbeat/1 name=alice resume=%s received=0\n" % sid)
    assert b"lost" not in take(ownerTransport)
    lose(thief)
    lose(owner)


def test_counts_that_do_not_match_end_the_session(clock):
    """A client claiming more lines than the server sent is told
    'mismatch': its state is not the session's."""
    factory = HeartbeatServerFactory(clock=clock)
    protocol, transport = connect(factory)
    protocol.dataReceived(b"heartbeat/1 resume\n")
    sid = take(transport).split(b"session=")[1].split()[0]
    lose(protocol)
    again, againTransport = connect(factory)
    again.dataReceived(b"heartbeat/1 resume=%s received=3\n" % sid)
    assert b"lost=mismatch" in take(againTransport)
    lose(again)


def test_an_acknowledgement_of_lines_never_sent_closes(clock):
    """A peer acknowledging more than was sent gets 'error bad ack'."""
    factory = HeartbeatServerFactory(clock=clock)
    protocol, transport = connect(factory)
    protocol.dataReceived(b"heartbeat/1 resume\n")
    take(transport)
    protocol.dataReceived(b"ack 1\n")
    assert take(transport) == b"error bad ack\n"
    lose(protocol)


@pytest.mark.parametrize("framing", FRAMINGS)
def test_a_client_that_stops_ends_its_session(clock, framing):
    """stopTrying() says 'bye': the server ends the session at once
    instead of keeping it for the window."""
    link = link_for(clock, framing)
    Traffic(link).send(1)
    link.flush()
    link.client.stopTrying()
    link.flush()
    assert link.hub.sessions.sessions == {}
    assert link.hub.sessions.ended["closed"] == 1


def test_the_session_stays_present_and_gets_lines_while_away(clock):
    """While its client is reconnecting, a session stays present under
    its name and a line sent to that name waits in it; it leaves presence
    as 'expired' only when the window passes."""
    events = []

    class Watching(HeartbeatServerFactory):
        def presenceJoined(self, name, node):
            events.append(("joined", name))

        def presenceLeft(self, name, node, reason):
            events.append(("left", name, reason))

    server = Watching(clock=clock, resumeWindow=5, heartbeatInterval=INTERVAL,
                      heartbeatTimeout=TIMEOUT, heartbeatPongTimeout=PONG_TIMEOUT)
    server.protocol = RecordingServer
    client = LossRecorder(clock)
    client.protocol = Recorder
    client.name = "alice"
    link = Link(clock, server, client)
    link.connect()
    link.silence()
    link.advance(TIMEOUT + 0.1)
    sent = []
    server.sendTo("alice", b"while away").addCallback(sent.append)
    assert sent == [1]
    assert events == [("joined", "alice")]
    client.initialDelay = client.maxDelay = 0.5
    link.advance(1)
    assert client.got == [b"while away"]
    link.silence()
    client.stopTrying()
    link.advance(TIMEOUT + 6)
    assert events == [("joined", "alice"), ("left", "alice", "expired")]


def test_a_session_connection_sets_no_attribute_after_it_is_made(clock):
    """A session costs its connection no attribute set later: one set
    after connections accepted in a burst costs each a whole attribute
    dictionary of its own."""
    factory = HeartbeatServerFactory(clock=clock)
    protocol, transport = connect(factory)
    initial = set(vars(protocol))
    protocol.dataReceived(b"heartbeat/1 resume name=a\nhello\nping 1 0\n.x\n")
    protocol.heartbeatPing()
    protocol.dataReceived(b"pong 1 1\nack 1\n")
    clock.advance(1)
    assert set(vars(protocol)) == initial
    lose(protocol)


class Producer:
    """
    A producer of lines (standard input, say) that records being paused.
    """

    def __init__(self):
        self.paused = False
        self.pauses = 0

    def pauseProducing(self):
        self.paused = True
        self.pauses += 1

    def resumeProducing(self):
        self.paused = False

    def stopProducing(self):
        pass


def test_the_buffer_bounds_what_the_server_has_not_acknowledged(clock):
    """With a session, maxBufferedMessages bounds the lines the server has
    not acknowledged, connected or not; a registered producer is paused
    when it is reached and resumed once acknowledgements make room, so it
    never meets BufferFull."""
    from heartbeat import BufferFull

    link = link_for(clock)
    client = link.client
    client.maxBufferedMessages = 3
    producer = Producer()
    client.registerProducer(producer)
    link.silence()
    for n in range(3):
        client.sendMessage(b"%d" % n)
    assert producer.paused
    with pytest.raises(BufferFull):
        client.sendMessage(b"one too many")
    link.advance(TIMEOUT + 1)
    assert not producer.paused
    assert link.hub.got == [b"0", b"1", b"2"]
    assert client.bufferedMessages == 0 and producer.pauses == 1


def test_the_session_id_is_the_servers(clock):
    """The client's sessionId is the one the server gave, kept across a
    resumption; None from a server that offers none."""
    link = link_for(clock)
    [sid] = [session for session in link.hub.sessions.sessions]
    from heartbeat._session.store import session_id_text

    assert link.client.sessionId == session_id_text(sid)
    link.reset()
    link.advance(0.5)
    assert link.client.sessionId == session_id_text(sid)
    plain = link_for(clock, resumeWindow=0)
    assert plain.client.sessionId is None


def test_the_window_counts_from_the_last_loss(clock):
    """A session lost, resumed just before its window ended, and lost again
    lives a whole window after the second loss, not the first; then it
    ends, and leaves no timer behind."""
    factory = HeartbeatServerFactory(clock=clock, resumeWindow=10)
    protocol, transport = connect(factory)
    protocol.dataReceived(b"heartbeat/1 resume\n")
    sid = take(transport).split(b"session=")[1].split()[0]
    lose(protocol)
    clock.advance(9)
    again, againTransport = connect(factory)
    again.dataReceived(b"heartbeat/1 resume=%s received=0\n" % sid)
    assert b"lost" not in take(againTransport)
    lose(again)
    clock.advance(9.9)
    assert factory.sessions.detachedCount == 1
    clock.advance(0.2)
    assert factory.sessions.sessions == {}
    assert factory.sessions.ended["expired"] == 1
    factory.stopFactory()
    assert clock.getDelayedCalls() == []


class LateStore:
    """
    A session store that answers when the test says (as Redis does, a
    round trip later), in memory otherwise.
    """

    def __init__(self, clock):
        from heartbeat._session.store import SessionStore

        class Late(SessionStore):
            answers = []

            def negotiate(self, connection, handshake):
                from twisted.internet.defer import Deferred

                found = Deferred()
                self.answers.append(
                    lambda: found.callback(SessionStore.negotiate(self, connection, handshake)))
                return found

        self.store = Late(clock, None)

    def answer(self):
        self.store.answers.pop(0)()


def test_while_the_store_answers_the_clients_lines_wait(clock):
    """While the store looks for the session, what the client sends is
    held and nothing is written: then the answer goes first, the client's
    lines are read in order after it, and a line the application sent
    meanwhile goes through the session."""
    late = LateStore(clock)
    factory = HeartbeatServerFactory(clock=clock, sessions=late.store)
    late.store.cluster = factory.cluster
    protocol, transport = connect(factory)
    protocol.dataReceived(b"heartbeat/1 resume\nping 1 0\nhello\n")
    protocol.sendMessage(b"from the application")
    assert take(transport) == b""
    late.answer()
    written = take(transport).split(b"\n")
    assert written[0].startswith(b"heartbeat/1 id=1 ") and b"session=" in written[0]
    assert written[1:] == [b"from the application", b"pong 1 0", b"hello", b""]
    assert protocol.heartbeatSession.sent == 2
    lose(protocol)


def test_a_connection_gone_before_its_answer_leaves_its_session_waiting(clock):
    """A connection lost while the store looks for its session leaves the
    session waiting for the next one, with what the application sent it."""
    late = LateStore(clock)
    factory = HeartbeatServerFactory(clock=clock, sessions=late.store)
    late.store.cluster = factory.cluster
    protocol, transport = connect(factory)
    protocol.dataReceived(b"heartbeat/1 resume\n")
    protocol.sendMessage(b"kept")
    lose(protocol)
    late.answer()
    assert take(transport) == b""
    [session] = late.store.sessions.values()
    assert session.connection is None and late.store.detachedCount == 1
    assert session.unacknowledgedLines() == [b"kept"]


def test_a_session_the_server_disconnects_is_lost_as_closed(clock):
    """disconnect(name) ends the client's session too: the client is told
    'error disconnected by server' and, when it comes back, 'closed'."""
    hub = HeartbeatServerFactory(clock=clock, heartbeatInterval=INTERVAL,
                                 heartbeatTimeout=TIMEOUT, heartbeatPongTimeout=PONG_TIMEOUT)
    hub.protocol = RecordingServer
    client = LossRecorder(clock)
    client.protocol = Recorder
    client.name = "alice"
    link = connected(Link(clock, hub, client))
    told = []
    link.hub.disconnect("alice").addCallback(told.append)
    assert told == [1]
    # The server closes after its error line has lingered (a second).
    link.advance(2)
    assert link.client.lost == [("closed", [])]
    assert len(link.hub.sessions.sessions) == 1


def test_a_count_told_before_redis_had_it_is_told_again(clock):
    """In Redis, the count told is what Redis has; lines recorded after a
    count went out are acknowledged once recorded, so that the client's
    buffer empties when traffic stops."""
    from heartbeat._session.redis import RedisServerSession
    from heartbeat._session.session import AckScheduler

    class Store:
        maxLines, maxBytes = 1000, 1 << 20
        acks = AckScheduler(clock)

        def changed(self, session):
            pass

    class Connection:
        heartbeatConnectionId, heartbeatName, heartbeatSince = 1, None, 0.0
        heartbeatVerified = False
        told = []

        def sessionDeliver(self, payload, isBinary):
            pass

        def sessionAck(self, count):
            self.told.append(count)

    connection = Connection()
    session = RedisServerSession(1, Store(), connection)
    session.attach(connection, 0)
    for _ in range(64):
        session.receive(b"line")
    assert connection.told == [0]
    session.recorded(64, 0)
    clock.advance(0.2)
    assert connection.told == [0, 64]
    clock.advance(1)
    assert connection.told == [0, 64] and clock.getDelayedCalls() == []


def session_id_in(answer):
    return parse_handshake(answer.splitlines()[0]).fields["session"]


def test_broadcasts_before_the_handshake_reach_a_resumed_session_once(clock):
    """A line broadcast while the client's new connection waits for its
    handshake reaches it once: the session kept it, so the connection does
    not send it again; a session started with the handshake gets what was
    broadcast while it waited, through the session."""
    server = HeartbeatServerFactory(clock=clock, heartbeatInterval=None,
                                    heartbeatTimeout=None)
    first, transport = connect(server)
    server.broadcast(b"b0")
    first.dataReceived(b"heartbeat/1 resume\n")
    answer = take(transport)
    assert answer.endswith(b"\nb0\n")
    (session,) = server.sessions.sessions.values()
    assert session.sent == 1
    lose(first)
    server.broadcast(b"b1")
    again, transport = connect(server)
    server.broadcast(b"b2")
    again.dataReceived(b"heartbeat/1 resume=%s received=1\n" % session_id_in(answer).encode())
    assert take(transport).split(b"\n")[1:] == [b"b1", b"b2", b""]
    assert session.sent == 3


def test_a_late_handshake_gets_no_session(epoch_clock):
    """A connection whose handshake comes after the handshake wait is in
    presence as itself already: it is answered without a session (and the
    log says why), so that its name is never present twice."""
    from .tokens import mint, verifier

    server = HeartbeatServerFactory(clock=epoch_clock, heartbeatInterval=None,
                                    heartbeatTimeout=None, jwtVerifier=verifier())
    protocol, transport = connect(server)
    protocol.dataReceived(b"auth " + mint(epoch_clock) + b"\n")
    epoch_clock.advance(3)
    protocol.dataReceived(b"heartbeat/1 resume\n")
    assert "session" not in parse_handshake(take(transport).rstrip(b"\n")).fields
    assert server.sessions.sessions == {}
    assert case.successResultOf(server.cluster.sendTo("alice", b"hi")) == 1
    assert take(transport) == b"hi\n"
    lose(protocol)
    assert case.successResultOf(server.cluster.isOnline("alice")) is False


def test_a_store_that_fails_after_the_wait_leaves_presence_whole(clock):
    """A resume whose store fails after the handshake wait is over closes
    the connection with 'sessions unavailable', and the count of who is
    online is what it was: the connection was never in presence."""
    found = []

    class SlowStore(SessionStore):
        def negotiate(self, connection, handshake):
            found.append(Deferred())
            return found[-1]

    server = HeartbeatServerFactory(clock=clock, heartbeatInterval=None,
                                    heartbeatTimeout=None)
    server.sessions = SlowStore(clock, server.cluster)
    bob, _ = connect(server)
    bob.dataReceived(b"heartbeat/1 name=bob\n")
    protocol, transport = connect(server)
    protocol.dataReceived(b"heartbeat/1 resume=%s received=0\n" % (b"A" * 22))
    clock.advance(2.5)
    assert not protocol.heartbeatPresent
    found[0].errback(ClusterUnavailable("timed out"))
    assert take(transport) == b"error sessions unavailable\n"
    assert case.successResultOf(server.cluster.onlineCount()) == 1
