"""
The wire format of session connections: escaping and control lines, for
arbitrary bytes.
"""

from hypothesis import given, settings
from hypothesis import strategies as st

from heartbeat._framing.resume import (
    ACK,
    BYE,
    control_line,
    escape,
    parse_control,
    parse_count,
    unescape,
)
from heartbeat._framing.line import PING, PONG

lines = st.binary(max_size=80).filter(lambda line: b"\n" not in line)
tokens = st.lists(st.integers(0x21, 0x7E), min_size=1, max_size=64).map(bytes)
counts = st.integers(min_value=0, max_value=10**19)


@settings(max_examples=300, deadline=None)
@given(lines)
def test_an_escaped_line_comes_back_whole_and_is_never_a_control_line(line):
    """Whatever an application line holds, escaped it reads as an
    application line, and unescaped it is the line sent."""
    sent = escape(line)
    assert parse_control(sent) is None
    assert unescape(sent) == line


@settings(max_examples=300, deadline=None)
@given(lines)
def test_reading_arbitrary_bytes_never_raises(line):
    """Any line parses as a control line or as an application line."""
    control = parse_control(line)
    assert control is None or control[0] in (PING, PONG, ACK, BYE)


@given(st.sampled_from([PING, PONG]), tokens, counts)
def test_a_heartbeat_carries_its_count(kind, token, count):
    """A ping or pong with a token and a count reads back as written."""
    assert parse_control(control_line(kind, token, count)) == (kind, token, count)


@given(counts)
def test_an_ack_carries_its_count(count):
    """An acknowledgement reads back as written; a line that is not one
    (a sign, a space too many, no count) is the application's."""
    assert parse_control(control_line(ACK, None, count)) == (ACK, None, count)
    for other in (b"ack", b"ack ", b"ack -1", b"ack 1 2", b"ack x", b"ack  1",
                  b"ack " + b"9" * 21, b"acks 1", b"bye now"):
        assert parse_control(other) is None


def test_counts_are_decimal_digits():
    """Only plain decimal digits are counts: no sign, no space, no other
    digits Python would take."""
    assert parse_count(b"0") == 0 and parse_count(b"123") == 123
    for other in (b"", b"-1", b"+1", b" 1", b"1_0", "\u0663".encode(), b"9" * 21):
        assert parse_count(other) is None
