"""
The client handshake: its grammar, the server's answer in both framings,
and the peers that never send it.
"""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heartbeat import HeartbeatServerFactory
from heartbeat._framing.handshake import (
    SUBPROTOCOL,
    Handshake,
    HandshakeError,
    format_handshake,
    handshake_from_json,
    json_fields,
    parse_handshake,
)

from .helpers import connect, take
from .test_client import make as make_client
from .test_websocket import Browser, goodbye, make_server, open_browser

KEYS = st.from_regex(r"[a-z][a-z0-9-]{0,31}", fullmatch=True)
VALUES = st.none() | st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=256
)
# Any text at all but lone surrogates, which are not text one can encode,
# of up to 256 bytes of UTF-8 (64 characters of up to four bytes).
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=64)


@given(st.dictionaries(KEYS, VALUES, max_size=32))
def test_what_is_formatted_parses_back(fields):
    """Any fields a side may send are read back as they were sent."""
    line = format_handshake(fields)
    assert parse_handshake(line) == Handshake(1, fields)


@given(st.dictionaries(KEYS, TEXT, max_size=8))
def test_any_text_is_carried_whole_over_the_line_and_json(fields):
    """A value is carried whole, whatever it holds (accents, '%', spaces,
    emoji): percent-encoded UTF-8 on the line, as it is in JSON; and the
    line stays printable ASCII."""
    line = format_handshake(fields)
    assert line.isascii() and b"\n" not in line and b"\r" not in line
    assert parse_handshake(line) == Handshake(1, fields)


@given(TEXT)
def test_json_carries_any_text_but_what_would_break_a_line(text):
    """A hello's string (of up to 256 bytes) is the same text in the
    handshake, unless it holds an ASCII space or control character, which
    a line could not carry either: then it is malformed."""
    try:
        handshake = handshake_from_json({"type": "hello", "name": text})
    except HandshakeError:
        assert any(c <= " " or c == "\x7f" for c in text)
    else:
        assert handshake.get("name") == text


def test_names_beyond_ascii_are_percent_encoded_on_the_line():
    """José's name travels as UTF-8, percent-encoded, and comes back as
    José, never as Jos?: Josè is another name."""
    assert format_handshake({"name": "José"}) == b"heartbeat/1 name=Jos%C3%A9"
    assert parse_handshake(b"heartbeat/1 name=Jos%C3%A9").get("name") == "José"
    assert parse_handshake(b"heartbeat/1 name=Jos%c3%a8").get("name") == "Josè"
    assert parse_handshake(b"heartbeat/1 name=50%25").get("name") == "50%"
    assert handshake_from_json({"type": "hello", "name": "José"}).get("name") == "José"
    assert handshake_from_json({"type": "hello", "name": "Josè"}).get("name") == "Josè"


@given(st.binary(max_size=400))
def test_any_bytes_parse_or_fail_cleanly(tail):
    """Whatever follows the prefix, the parser answers or raises
    HandshakeError: a hostile line can never raise anything else."""
    try:
        parse_handshake(b"heartbeat/" + tail)
    except HandshakeError:
        pass


@pytest.mark.parametrize("line, why", [
    (b"heartbeat/", "bad version"),
    (b"heartbeat/01", "bad version"),
    (b"heartbeat/1x", "bad version"),
    (b"heartbeat/1  name=a", "bad field"),
    (b"heartbeat/1 Name=a", "bad field"),
    (b"heartbeat/1 name=", "bad value for name"),
    (b"heartbeat/1 name=a name=b", "name given twice"),
    (b"heartbeat/1 name=\xc3\xa9", "bad value for name"),
    (b"heartbeat/1 name=50%", "bad value for name"),
    (b"heartbeat/1 name=%zz", "bad value for name"),
    (b"heartbeat/1 name=%C3", "bad value for name"),
    (b"heartbeat/1 name=" + b"%41" * 257, "bad value for name"),
    (b"heartbeat/1 " + b" ".join(b"k%d" % n for n in range(33)), "more than 32"),
])
def test_malformed_lines_say_how(line, why):
    """A broken handshake is refused with a reason fit for the log."""
    with pytest.raises(HandshakeError, match=why):
        parse_handshake(line)


def test_json_members_are_the_same_fields_in_camel_case():
    """A WebSocket hello carries the line's fields: maxLength is max-length,
    true is a bare key, numbers are written plainly."""
    handshake = handshake_from_json(
        {"type": "hello", "name": "alice", "resume": True, "maxLength": 10, "x": None}
    )
    assert handshake == Handshake(1, {"name": "alice", "resume": None, "max-length": "10"})
    assert json_fields({"max-length": 10, "resume": None}) == {"maxLength": 10, "resume": True}
    with pytest.raises(HandshakeError):
        handshake_from_json({"type": "hello", "name": ["a"]})
    with pytest.raises(HandshakeError):
        handshake_from_json({"type": "hello", "name": "two words"})
    with pytest.raises(HandshakeError, match="bad value for name"):
        handshake_from_json({"type": "hello", "name": "lone \ud800"})


# The line server


def make(clock, **kwargs):
    kwargs.setdefault("heartbeatInterval", 25.0)
    kwargs.setdefault("heartbeatTimeout", 90.0)
    return HeartbeatServerFactory(clock=clock, **kwargs)


def test_server_answers_with_id_timing_and_name(clock):
    """A client's handshake is answered first, with its connection's id, the
    server's timing and line limit, and the name it took; what follows is
    served as usual."""
    factory = make(clock, maxLineLength=1000)
    connect(factory)
    protocol, transport = connect(factory)
    protocol.dataReceived(b"heartbeat/1 name=alice future-thing=3\r\nping 7\nhi\n")
    assert take(transport) == (
        b"heartbeat/1 id=2 interval=25 timeout=90 pong-timeout=5 max-length=1000 "
        b"name=alice\n"
        b"pong 7\nhi\n"
    )
    assert protocol.heartbeatName == "alice"


def test_a_name_beyond_ascii_is_granted_as_it_was_given(clock):
    """José and Josè are two names, each granted as given and answered in
    the line's encoding."""
    factory = make(clock)
    jose, transport = connect(factory)
    jose.dataReceived(b"heartbeat/1 name=Jos%C3%A9\n")
    assert take(transport).endswith(b" name=Jos%C3%A9\n")
    other, transport = connect(factory)
    other.dataReceived(b"heartbeat/1 name=Jos%C3%A8\n")
    assert take(transport).endswith(b" name=Jos%C3%A8\n")
    assert (jose.heartbeatName, other.heartbeatName) == ("José", "Josè")


@pytest.mark.parametrize("asked, why", [
    (b"a#b", "'#' is kept for connection keys"),
    (b"two%20words", "no spaces"),
    (b"line%0Abreak", "control"),
    (b"in%E2%80%8Bvisible", "invisible"),
    (b"x" * 257, "1 to 256 bytes"),
])
def test_a_name_against_the_rule_is_not_granted(clock, asked, why):
    """A name the rule refuses is not granted: the answer has no name, the
    connection is served under its key, and the log says why."""
    from twisted.logger import globalLogPublisher, formatEvent

    logged = []
    globalLogPublisher.addObserver(logged.append)
    try:
        factory = make(clock)
        protocol, transport = connect(factory)
        protocol.dataReceived(b"heartbeat/1 name=" + asked + b"\n")
    finally:
        globalLogPublisher.removeObserver(logged.append)
    answer = take(transport)
    assert answer.startswith(b"heartbeat/1 id=1 ") and b"name=" not in answer
    assert protocol.heartbeatName is None and protocol.heartbeatPresent
    assert [text for text in map(formatEvent, logged) if "not granted" in text and why in text]


def test_only_the_first_line_is_a_handshake(clock):
    """Later, the same line is the application's, echoed like any other."""
    factory = make(clock)
    protocol, transport = connect(factory)
    protocol.dataReceived(b"hello\nheartbeat/1 name=alice\n")
    assert take(transport) == b"hello\nheartbeat/1 name=alice\n"
    assert protocol.heartbeatName is None


def test_a_session_that_never_negotiates_is_byte_for_byte_the_same(clock):
    """A peer such as nc sees exactly what it saw before handshakes existed:
    echoes, pongs, the server's pings, the errors."""
    factory = make(clock, heartbeatInterval=1.0, heartbeatTimeout=3.0)
    protocol, transport = connect(factory)
    protocol.dataReceived(b"hello\nping a1\npong\n\nPING\n")
    clock.advance(1.0)
    assert take(transport) == b"hello\npong a1\n\nPING\nping 1\n"
    protocol.dataReceived(b"x" * 70000 + b"\n")
    assert take(transport) == b"error line too long\n"


def test_the_handshake_comes_after_auth(clock):
    """Where the server asks for a token, the handshake follows the auth
    line, and a handshake instead of it is refused as any other line."""
    factory = make(clock, authToken=b"s3cret")
    protocol, transport = connect(factory)
    protocol.dataReceived(b"auth s3cret\nheartbeat/1 name=bob\n")
    assert take(transport).startswith(b"heartbeat/1 id=1 ")
    stranger, strangerTransport = connect(factory)
    stranger.dataReceived(b"heartbeat/1 name=bob\n")
    assert strangerTransport.value() == b"error unauthorized\n"


def test_a_malformed_handshake_is_refused(clock):
    """A client whose handshake is broken is told so and closed."""
    factory = make(clock)
    protocol, transport = connect(factory)
    protocol.dataReceived(b"heartbeat/1 name=\n")
    assert transport.value() == b"error bad handshake\n"


# The line client


def test_client_sends_its_handshake_and_reads_the_answer(clock):
    """The client asks with its name after its auth line, before its first
    ping, and keeps the server's answer."""
    factory, endpoint = make_client(clock, name="alice", authToken=b"t")
    protocol, transport, wrapper = endpoint.accept()
    assert take(transport) == b"auth t\nheartbeat/1 name=alice resume\nping 1\n"
    received = []
    protocol.messageReceived = received.append
    protocol.dataReceived(b"heartbeat/1 id=4 interval=2 timeout=5\npong 1\nhi\n")
    assert protocol.heartbeatServerHandshake == Handshake(
        1, {"id": "4", "interval": "2", "timeout": "5"})
    assert factory.connectedProtocol is protocol
    assert received == [b"hi"]


def test_client_takes_an_echo_of_its_handshake_for_no_answer(clock):
    """A server that echoes every line sends the handshake back: the
    connection is healthy without an answer, and the application never
    sees the echo."""
    factory, endpoint = make_client(clock)
    protocol, transport, wrapper = endpoint.accept()
    received = []
    protocol.messageReceived = received.append
    protocol.dataReceived(b"heartbeat/1 resume\npong 1\nhi\n")
    assert protocol.heartbeatServerHandshake is None
    assert factory.connectedProtocol is protocol
    assert received == [b"hi"]


def test_client_and_server_negotiate_end_to_end(clock):
    """The library's client and server agree, in memory."""
    server = make(clock, heartbeatInterval=2.0, heartbeatTimeout=5.0)
    factory, endpoint = make_client(clock, name="carol")
    protocol, clientTransport, wrapper = endpoint.accept()
    peer, serverTransport = connect(server)
    peer.dataReceived(take(clientTransport))
    protocol.dataReceived(take(serverTransport))
    assert peer.heartbeatName == "carol"
    answer = protocol.heartbeatServerHandshake
    assert (answer.number("interval"), answer.number("timeout")) == (2.0, 5.0)


# WebSocket


class NegotiatingBrowser(Browser):
    """A page that offers heartbeat.v1 and sends its hello at once."""

    hello = {"type": "hello", "name": "dave"}

    def onOpen(self):
        self.sendMessage(json.dumps(self.hello).encode())


def hellos(browser):
    return [json.loads(m) for m in browser.messages
            if isinstance(m, str) and '"hello"' in m]


def test_a_page_that_offers_the_subprotocol_gets_its_hello_answered(clock):
    """The server picks heartbeat.v1 and sends its one hello in answer to
    the page's, with the page's name and the line answer's fields."""
    hub, factory = make_server(clock)
    server, browser, pump = open_browser(clock, factory, NegotiatingBrowser, [SUBPROTOCOL])
    assert browser.websocket_protocol_in_use == SUBPROTOCOL
    assert hellos(browser) == [{
        "type": "hello", "id": 1, "interval": 1, "timeout": 3,
        "pongTimeout": 5, "maxLength": 65536, "name": "dave",
    }]
    assert server.heartbeatName == "dave"
    goodbye(pump)
    assert clock.getDelayedCalls() == []


def test_a_page_that_does_not_offer_it_is_greeted_as_before(clock):
    """Without the subprotocol, the page gets the hello at admission, as
    pages always did, and its own hello changes nothing."""
    hub, factory = make_server(clock)
    server, browser, pump = open_browser(clock, factory, NegotiatingBrowser)
    assert browser.websocket_protocol_in_use is None
    assert hellos(browser) == [
        {"type": "hello", "interval": 1.0, "timeout": 3.0, "pongTimeout": 5,
         "maxLength": 65536}]
    assert server.heartbeatName is None
    goodbye(pump)


def test_a_page_named_beyond_ascii_keeps_its_name(clock):
    """A page whose hello names it José is José in presence and in the
    answer, not Jos?."""
    class Jose(NegotiatingBrowser):
        hello = {"type": "hello", "name": "José"}

    hub, factory = make_server(clock)
    server, browser, pump = open_browser(clock, factory, Jose, [SUBPROTOCOL])
    assert server.heartbeatName == "José"
    assert hellos(browser)[0]["name"] == "José"
    goodbye(pump)


def test_a_page_hears_its_answer_before_any_broadcast(clock):
    """A page that offers heartbeat.v1 hears nothing broadcast before the
    answer to its hello, then what it missed, in order; a page that does
    not offer it hears broadcasts from admission, as it will send no
    hello."""
    from heartbeat import BroadcastServerProtocol
    from heartbeat._server.websocket import BroadcastWebSocketServerProtocol

    class Slow(Browser):
        """A page that offers the subprotocol and says hello when told."""

    hub, factory = make_server(clock, protocol=BroadcastWebSocketServerProtocol)
    hub.protocol = BroadcastServerProtocol
    line, _ = connect(hub)
    line.dataReceived(b"pong\n")
    server, page, pump = open_browser(clock, factory, Slow, [SUBPROTOCOL])
    plain, plainPage, plainPump = open_browser(clock, factory)
    line.dataReceived(b"first\nsecond\n")
    pump.flush()
    plainPump.flush()
    assert page.messages == []
    assert plainPage.app() == ["first", "second"]
    page.sendMessage(json.dumps({"type": "hello", "name": "slow"}).encode())
    pump.flush()
    assert [json.loads(page.messages[0])["name"]] == ["slow"]
    assert page.messages[1:] == ["first", "second"]
    goodbye(pump, plainPump)


def test_a_malformed_hello_closes_the_page(clock):
    """A page whose hello breaks the grammar is closed with 4007."""
    class BadPage(NegotiatingBrowser):
        hello = {"type": "hello", "name": "two words"}

    hub, factory = make_server(clock)
    server, browser, pump = open_browser(clock, factory, BadPage, [SUBPROTOCOL])
    pump.flush()
    assert browser.closed == (4007, "bad handshake")
