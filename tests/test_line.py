"""
The line wire format: parsing, answers, limits and closing with an error.
"""

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport

from heartbeat import HeartbeatLineProtocol, parse_heartbeat

from .helpers import connect, factory_for, lose, take

TOKEN = st.text(
    alphabet=[chr(c) for c in range(0x21, 0x7F)], min_size=1, max_size=64
).map(str.encode)


class Recorder(HeartbeatLineProtocol):
    def __init__(self):
        self.messages = []

    def messageReceived(self, line):
        self.messages.append(line)


class HalfCloseTransport(StringTransport):
    """
    A transport that, like TCP's, can shut its write side alone.
    """

    writeClosed = False

    def loseWriteConnection(self):
        self.writeClosed = True


def make(clock, transport=None, **attributes):
    factory = factory_for(Recorder, clock)
    protocol, transport = connect(factory, transport)
    for name, value in attributes.items():
        setattr(protocol, name, value)
    return protocol, transport


@given(TOKEN)
def test_ping_with_token_parses(token):
    """Every well-formed token is read back exactly."""
    assert parse_heartbeat(b"ping " + token) == (b"ping", token)
    assert parse_heartbeat(b"pong " + token) == (b"pong", token)


def test_bare_ping_and_pong_parse():
    """Without a token, ping and pong are still heartbeats."""
    assert parse_heartbeat(b"ping") == (b"ping", None)
    assert parse_heartbeat(b"pong") == (b"pong", None)


@given(st.binary(max_size=80))
def test_parser_agrees_with_the_grammar(line):
    """Arbitrary bytes are a heartbeat exactly when the grammar says so."""
    grammar = re.fullmatch(rb"(ping|pong)( [\x21-\x7e]{1,64})?", line)
    parsed = parse_heartbeat(line)
    if grammar is None:
        assert parsed is None
    else:
        assert parsed == (grammar.group(1), grammar.group(2) and grammar.group(2)[1:])


def test_malformed_heartbeats_are_application_lines():
    """Over-long tokens, spaces, odd case and empty tokens are not pings."""
    for line in [
        b"ping " + b"x" * 65,
        b"ping a b",
        b"ping ",
        b"Ping",
        b"ping\t1",
        b"pingx",
        b"ping \xff",
        b"",
    ]:
        assert parse_heartbeat(line) is None, line


def test_ping_is_answered_with_the_same_token(clock):
    """A ping gets a pong carrying its token, on a line of its own."""
    protocol, transport = make(clock)
    protocol.dataReceived(b"ping abc\nping\n")
    assert transport.value() == b"pong abc\npong\n"
    assert protocol.messages == []


def test_pong_is_never_answered(clock):
    """A pong is a sign of life, not something to answer."""
    protocol, transport = make(clock)
    protocol.dataReceived(b"pong 1\npong\n")
    assert transport.value() == b""
    assert protocol.messages == []


def test_crlf_is_stripped_and_replies_end_in_lf(clock):
    """A trailing \\r is part of the terminator; our lines end in a bare \\n."""
    protocol, transport = make(clock)
    protocol.dataReceived(b"ping 7\r\nhello\r\n")
    assert transport.value() == b"pong 7\n"
    assert protocol.messages == [b"hello"]


def test_application_lines_are_bytes_untouched(clock):
    """Empty lines, non-UTF-8 and malformed pings reach the application."""
    protocol, transport = make(clock)
    lines = [b"", b"\xff\xfe\x00", b"ping a b", b"ping " + b"t" * 65, b"PING"]
    protocol.dataReceived(b"".join(line + b"\n" for line in lines))
    assert protocol.messages == lines
    assert transport.value() == b""


def test_line_of_exactly_the_limit_is_accepted(clock):
    """The limit counts the line without its terminator, \\r\\n included."""
    protocol, transport = make(clock, maxLineLength=10)
    protocol.dataReceived(b"a" * 10 + b"\n" + b"b" * 10 + b"\r\n")
    assert protocol.messages == [b"a" * 10, b"b" * 10]
    assert not transport.disconnecting


def test_line_over_the_limit_gets_an_error_and_a_close(clock):
    """One byte over the limit: 'error line too long', then the close."""
    protocol, transport = make(clock, maxLineLength=10)
    protocol.dataReceived(b"a" * 11 + b"\nping\n")
    assert transport.value() == b"error line too long\n"
    assert protocol.messages == []
    assert transport.disconnecting


def test_stream_without_newline_is_cut_off(clock):
    """Megabytes without a newline end in an error, not in memory growth."""
    protocol, transport = make(clock, maxLineLength=1000)
    chunk = b"x" * 600
    protocol.dataReceived(chunk)
    assert transport.value() == b""
    protocol.dataReceived(chunk)
    assert transport.value() == b"error line too long\n"
    for _ in range(2000):
        protocol.dataReceived(chunk)
    assert len(protocol._buffer) <= 1002
    assert transport.value() == b"error line too long\n"


def test_error_close_keeps_the_error_line(clock):
    """The error is flushed and the write side shut, reading goes on, and
    the connection is aborted if the peer never closes."""
    protocol, transport = make(clock, HalfCloseTransport(), maxLineLength=4)
    protocol.dataReceived(b"toolong\n")
    assert transport.value() == b"error line too long\n"
    assert transport.writeClosed and not transport.disconnected
    # The peer keeps talking: read and dropped, never answered.
    protocol.dataReceived(b"ping 1\nmore\n")
    assert transport.value() == b"error line too long\n"
    assert protocol.messages == []
    clock.advance(protocol.errorLinger - 0.1)
    assert not transport.disconnected
    clock.advance(0.2)
    assert transport.disconnected
    lose(protocol)
    assert clock.getDelayedCalls() == []


def test_peer_closing_during_linger_cancels_the_abort(clock):
    """When the peer closes first, no timer is left behind."""
    protocol, transport = make(clock, HalfCloseTransport(), maxLineLength=4)
    protocol.dataReceived(b"toolong\n")
    lose(protocol)
    assert clock.getDelayedCalls() == []


def test_send_message_adds_the_terminator(clock):
    """sendMessage writes one line, and refuses a line that would split."""
    protocol, transport = make(clock)
    protocol.sendMessage(b"hello \xff")
    assert take(transport) == b"hello \xff\n"
    try:
        protocol.sendMessage(b"two\nlines")
    except ValueError:
        pass
    else:
        raise AssertionError("a line with a newline was sent")
    assert transport.value() == b""


def test_ping_goes_out_as_a_line(clock):
    """The mixin's ping takes the line format: 'ping <token>\\n'."""
    protocol, transport = make(clock, heartbeatInterval=1.0)
    protocol.stopHeartbeat()
    protocol.startHeartbeat()
    clock.advance(1.01)
    assert take(transport) == b"ping 1\n"
    clock.advance(0.2)
    protocol.dataReceived(b"pong 1\n")
    assert 0.19 < protocol.heartbeatRtt < 0.21


def expected_replies(stream: bytes, limit: int):
    """
    The oracle: what the server must answer to C{stream}, line by line.
    """
    replies = []
    for line in stream.split(b"\n")[:-1]:  # the last piece is unfinished
        line = line[:-1] if line.endswith(b"\r") else line
        if len(line) > limit:
            return replies + [b"error line too long"]
        parsed = parse_heartbeat(line)
        if parsed and parsed[0] == b"ping":
            replies.append(b"pong" + (b" " + parsed[1] if parsed[1] else b""))
    return replies


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=40),
            TOKEN.map(lambda t: b"ping " + t + b"\n"),
            st.sampled_from([b"ping\n", b"ping\r\n", b"pong 1\n", b"\n", b"p"]),
        ),
        max_size=20,
    ).map(b"".join),
    st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=8),
    st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=8),
)
def test_any_bytes_in_any_chunks(stream, cuts, pauses):
    """Arbitrary bytes, split anywhere, with time passing between chunks:
    no exception, exactly one pong per well-formed ping, none otherwise."""
    from twisted.internet.task import Clock

    clock = Clock()
    factory = factory_for(Recorder, clock)
    protocol, transport = connect(factory)
    protocol.maxLineLength = 64
    protocol.heartbeatInterval, protocol.heartbeatTimeout = 0.3, 100.0
    position = index = 0
    while position < len(stream):
        size = cuts[index % len(cuts)]
        protocol.dataReceived(stream[position : position + size])
        clock.advance(pauses[index % len(pauses)])
        position += size
        index += 1
    # The protocol's own pings ("ping <n>") are not answers: leave them out.
    replies = [
        line for line in transport.value().split(b"\n")[:-1]
        if not re.fullmatch(rb"ping \d+", line)
    ]
    assert replies == expected_replies(stream, 64)
    lose(protocol)
    assert clock.getDelayedCalls() == []
