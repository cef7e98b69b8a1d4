"""
Presence and routing on one node, the embedded cluster: who is online,
where, since when, and lines sent to a name.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from heartbeat import HeartbeatServerFactory
from heartbeat._cluster.identity import (
    ConnectionKey,
    check_name,
    check_node_id,
    connection_key,
    new_incarnation,
    parse_connection_key,
)
from heartbeat._cluster.interface import PresentConnection
from heartbeat._framing.handshake import SUBPROTOCOL

from .helpers import connect, lose, take
from .test_handshake import NegotiatingBrowser
from .test_websocket import goodbye, make_server, open_browser

case = SynchronousTestCase()
result = case.successResultOf


class Recording(HeartbeatServerFactory):
    """A server that keeps the presence events it hears."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.events = []

    def presenceJoined(self, name, node):
        self.events.append(("joined", name, node))

    def presenceLeft(self, name, node, reason):
        self.events.append(("left", name, node, reason))


def make(clock, **kwargs):
    kwargs.setdefault("heartbeatInterval", 1.0)
    kwargs.setdefault("heartbeatTimeout", 3.0)
    return Recording(clock=clock, **kwargs)


def named(factory, name):
    protocol, transport = connect(factory)
    protocol.dataReceived(b"heartbeat/1 name=%s\n" % name.encode())
    take(transport)
    return protocol, transport


def test_a_named_connection_is_online_from_its_handshake(clock):
    """A client that names itself is online at once, under its name, with
    its node and the time it was admitted; closing it takes it offline."""
    factory = make(clock)
    clock.advance(7.0)
    protocol, transport = named(factory, "alice")
    node = factory.cluster.nodeId
    assert factory.events == [("joined", "alice", node)]
    assert result(factory.isOnline("alice")) is True
    assert result(factory.isOnline("bob")) is False
    [connection] = result(factory.connectionsOf("alice"))
    assert connection == PresentConnection(node, factory.cluster.keyOf(protocol), 7.0)
    lose(protocol)
    assert factory.events[-1] == ("left", "alice", node, "closed")
    assert result(factory.isOnline("alice")) is False
    assert clock.getDelayedCalls() == []


def test_the_join_comes_after_the_handshake_answer(clock):
    """What an application sends from presenceJoined reaches the client
    after the handshake's answer, which must come first."""
    class Greeter(Recording):
        def presenceJoined(self, name, node):
            self.sendTo(name, b"welcome " + name.encode())

    factory = Greeter(clock=clock)
    protocol, transport = connect(factory)
    protocol.dataReceived(b"heartbeat/1 name=carol\n")
    first, second = transport.value().splitlines()
    assert first.startswith(b"heartbeat/1 id=1 ")
    assert second == b"welcome carol"
    lose(protocol)


def test_an_unnamed_connection_joins_under_its_key_after_the_wait(clock):
    """A peer that says nothing (nc) is online under its connection key
    once the handshake wait is over, not before; one that sends a line
    first is online at that line."""
    factory = make(clock, heartbeatInterval=5.0, heartbeatTimeout=11.0)
    silent, _ = connect(factory)
    talker, talkerTransport = connect(factory)
    talker.dataReceived(b"hello\n")
    assert factory.events == [("joined", factory.cluster.keyOf(talker), factory.cluster.nodeId)]
    clock.advance(factory.handshakeWait - 0.01)
    assert silent.heartbeatPresent is False
    assert not result(factory.isOnline(factory.cluster.keyOf(silent)))
    clock.advance(0.02)
    key = factory.cluster.keyOf(silent)
    assert factory.events[-1] == ("joined", key, factory.cluster.nodeId)
    assert result(factory.isOnline(key)) is True
    assert result(factory.onlineCount()) == 2
    lose(silent)
    lose(talker)
    assert result(factory.onlineCount()) == 0


def held_by(owner):
    """What C{owner}'s own state holds: its attributes, and what is in the
    lists, sets, dictionaries and tuples among them."""
    held, todo = [], list(vars(owner).values())
    while todo:
        value = todo.pop()
        held.append(value)
        if isinstance(value, dict):
            todo += list(value.keys()) + list(value.values())
        elif isinstance(value, (list, tuple, set, frozenset)) or type(value).__name__ == "deque":
            todo += list(value)
    return held


def test_connections_that_come_and_go_are_not_kept_for_their_wait(clock):
    """Connections that close before their handshake wait is over are not
    held by the server until it is: a churn of short connections keeps
    no more of them than are open."""
    factory = make(clock, maxConnections=5)
    quiet, _ = connect(factory)
    gone = []
    for _ in range(50):
        protocol, _ = connect(factory)
        gone.append(protocol)
        lose(protocol)
    kept = held_by(factory)
    assert [protocol for protocol in gone if any(protocol is h for h in kept)] == []
    assert any(quiet is h for h in kept)
    lose(quiet)
    assert clock.getDelayedCalls() == []


def test_a_restarted_server_forgets_who_was_waiting(clock):
    """A factory stopped while connections waited for their handshake, and
    started again, times the new ones' waits as if it were new: its timer
    goes once they are settled."""
    factory = make(clock, heartbeatInterval=None, heartbeatTimeout=None)
    factory.summaryInterval = 0
    factory.startFactory()
    old = [connect(factory)[0], connect(factory)[0]]
    factory.stopFactory()
    factory.startFactory()
    fresh, _ = connect(factory)
    fresh.dataReceived(b"heartbeat/1 name=fresh\n")
    assert fresh.heartbeatPresent
    assert clock.getDelayedCalls() == []
    for protocol in old + [fresh]:
        lose(protocol)


def test_a_late_or_reserved_name_is_not_granted(clock):
    """A handshake after the connection entered presence, or a name with
    '#' (which could pass for another connection's key), is answered
    without the name."""
    factory = make(clock, heartbeatInterval=5.0, heartbeatTimeout=11.0)
    late, lateTransport = connect(factory)
    clock.advance(factory.handshakeWait + 0.1)
    late.dataReceived(b"heartbeat/1 name=alice\n")
    assert b"name=" not in take(lateTransport)
    assert late.heartbeatName is None
    sly, slyTransport = connect(factory)
    sly.dataReceived(b"heartbeat/1 name=%s\n" % factory.cluster.keyOf(late).encode())
    assert b"name=" not in take(slyTransport)
    assert result(factory.connectionsOf(factory.cluster.keyOf(late)))[0].connection == (
        factory.cluster.keyOf(late)
    )
    lose(late)
    lose(sly)


def test_a_timeout_leaves_with_its_reason(clock):
    """A connection whose heartbeat times out leaves presence as a
    timeout, once."""
    factory = make(clock)
    protocol, _ = named(factory, "dora")
    clock.pump([0.1] * 31)
    assert factory.events[1:] == [("left", "dora", factory.cluster.nodeId, "timeout")]
    lose(protocol)
    assert len(factory.events) == 2


def test_a_connection_closed_with_an_error_leaves_at_once(clock):
    """A line too long takes the connection out of presence when the
    error is sent, not a linger later, and it hears no more broadcasts."""
    factory = make(clock, maxLineLength=32)
    protocol, transport = named(factory, "eve")
    protocol.dataReceived(b"x" * 40 + b"\n")
    assert factory.events[-1][-1] == "closed"
    assert result(factory.isOnline("eve")) is False
    take(transport)
    factory.relay(b"news")
    assert transport.value() == b""
    lose(protocol)
    assert len(factory.events) == 2


def test_a_name_has_every_connection_it_made(clock):
    """Phone and laptop: both are listed, a line to the name reaches both
    and nobody else, and the name stays online until the last one goes."""
    factory = make(clock)
    phone, phoneTransport = named(factory, "frank")
    laptop, laptopTransport = named(factory, "frank")
    other, otherTransport = named(factory, "gina")
    assert len(result(factory.connectionsOf("frank"))) == 2
    assert result(factory.onlineCount()) == 2
    assert result(factory.sendTo("frank", b"hi")) == 2
    assert (phoneTransport.value(), laptopTransport.value(), otherTransport.value()) == (
        b"hi\n", b"hi\n", b"")
    lose(phone)
    assert result(factory.isOnline("frank")) is True
    lose(laptop)
    assert result(factory.isOnline("frank")) is False
    assert result(factory.sendTo("frank", b"hi")) == 0
    lose(other)


def test_a_line_reaches_an_unnamed_connection_by_its_key(clock):
    """sendTo with a connection key reaches that connection alone."""
    factory = make(clock)
    a, ta = connect(factory)
    b, tb = connect(factory)
    a.dataReceived(b"x\n")
    b.dataReceived(b"y\n")
    take(ta), take(tb)
    assert result(factory.sendTo(factory.cluster.keyOf(b), b"only you")) == 1
    assert (ta.value(), tb.value()) == (b"", b"only you\n")
    lose(a)
    lose(b)


def test_disconnect_closes_every_connection_of_a_name(clock):
    """disconnect(name) tells each connection why and closes it; they leave
    presence as closed."""
    factory = make(clock)
    one, t1 = named(factory, "hugo")
    two, t2 = named(factory, "hugo")
    assert result(factory.disconnect("hugo")) == 2
    assert t1.value() == t2.value() == b"error disconnected by server\n"
    assert [e[-1] for e in factory.events if e[0] == "left"] == ["closed", "closed"]
    lose(one)
    lose(two)


def test_names_are_listed_a_page_at_a_time(clock):
    """The listing gives every present name once, in order, a page at a
    time, each page starting after the last name of the one before."""
    factory = make(clock)
    protocols = [named(factory, name)[0] for name in ["m", "c", "x", "a", "c"]]
    first = result(factory.onlineNames(count=2))
    second = result(factory.onlineNames(after=first[-1], count=2))
    third = result(factory.onlineNames(after=second[-1], count=2))
    assert (first, second, third) == (["a", "c"], ["m", "x"], [])
    for protocol in protocols:
        lose(protocol)


def test_a_page_names_itself_and_can_be_disconnected(clock):
    """A page's hello names it in presence; disconnect closes it with 4002."""
    hub, factory = make_server(clock)
    server, browser, pump = open_browser(clock, factory, NegotiatingBrowser, [SUBPROTOCOL])
    assert result(hub.isOnline("dave")) is True
    assert result(hub.disconnect("dave")) == 1
    pump.flush()
    assert browser.closed == (4002, "disconnected by server")
    assert result(hub.isOnline("dave")) is False
    goodbye(pump)


@pytest.mark.parametrize("name", [
    "alice", "José", "Josè", "\U0001f642", "a" * 256, "é" * 128, "50%", "a/b:c",
])
def test_names_that_may_be_given(name):
    """Names of any script, up to 256 bytes, are names."""
    assert check_name(name) == name


@pytest.mark.parametrize("name, why", [
    ("", "1 to 256 bytes"),
    ("a" * 257, "1 to 256 bytes"),
    ("é" * 129, "1 to 256 bytes"),
    ("a b", "spaces"),
    ("a\u00a0b", "spaces"),
    ("a\nb", "control"),
    ("a\tb", "control"),
    ("a\x7fb", "control"),
    ("a\u2028b", "spaces"),
    ("a\u200bb", "invisible"),
    ("a\u202eb", "invisible"),
    ("a#b", "'#'"),
    ("a\ud800", "UTF-8"),
])
def test_names_that_may_not(name, why):
    """A name that could break a frame, pass for another, or not be
    encoded is refused with the reason."""
    with pytest.raises(ValueError, match=why):
        check_name(name)


def test_node_ids_are_checked():
    """A node id with a space or '#' is refused with the reason."""
    assert check_node_id("web-1:1234/2") == "web-1:1234/2"
    for bad in ["", "a b", "a#b", "x" * 129, "caf\u00e9"]:
        with pytest.raises(ValueError, match="node id"):
            check_node_id(bad)


def test_incarnations_differ():
    """Two lives of a node draw different incarnations."""
    assert new_incarnation(lambda n: bytes(n)) == "000000"
    assert new_incarnation() != new_incarnation()


@given(
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E).filter(
        lambda c: c != "#"), min_size=1, max_size=40),
    st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8),
    st.integers(min_value=0, max_value=2**63),
)
def test_keys_parse_back(node, incarnation, number):
    """Every connection key reads back as its node, incarnation and number."""
    key = connection_key(node, incarnation, number)
    assert parse_connection_key(key) == ConnectionKey(node, incarnation, number)


@given(st.text(max_size=60))
def test_anything_else_is_no_key_or_a_key_that_formats_back(text):
    """Any text either is not a key or is exactly the key of its parts."""
    key = parse_connection_key(text)
    assert key is None or connection_key(*key) == text
