"""
The pong deadline: a peer that has answered a ping and then leaves one
unanswered is dropped at the deadline, which adapts to its round trip as
TCP's retransmission timer does; one ping outstanding at a time; peers that
never answer keep the timeout rule.  On a fake clock, every boundary.
"""

import pytest
from twisted.logger import capturedLogs

from .helpers import take
from .test_protocol import SLOT, NetstringHeartbeat, make


def pinger(clock, interval=1.0, timeout=10.0, pongTimeout=0.5, cls=NetstringHeartbeat):
    protocol, transport = make(clock, interval, timeout, cls)
    protocol.heartbeatPongTimeout = pongTimeout
    protocol.stopHeartbeat()
    protocol.startHeartbeat()
    return protocol, transport


def pong(protocol, n):
    token = b"PONG %d" % (n,)
    protocol.dataReceived(b"%d:%s," % (len(token), token))


STEP = SLOT / 5


def next_ping(clock, transport, within=100.0):
    """
    Advance the clock in small steps until a ping goes out, and return what
    was sent; the clock is then at the ping's time, to a step.
    """
    end = clock.seconds() + within
    while clock.seconds() < end:
        clock.advance(STEP)
        sent = take(transport)
        if sent:
            return sent
    raise AssertionError(f"no ping within {within}s")


def run(clock, seconds):
    """
    Let C{seconds} pass in small steps, as a reactor that keeps up would.
    """
    clock.pump([STEP] * round(seconds / STEP))


def answer_first_ping(clock, protocol, transport, rtt=0.01):
    """
    Let the first ping go out and answer it after C{rtt}: the peer has
    shown that it answers.
    """
    assert next_ping(clock, transport) == b"6:PING 1,"
    clock.advance(rtt)
    pong(protocol, 1)


def test_a_peer_that_answered_is_dropped_at_the_pong_deadline(clock):
    """A peer that answered once and then leaves a ping unanswered is
    dropped at the pong deadline, long before the timeout, not earlier."""
    protocol, transport = pinger(clock)
    answer_first_ping(clock, protocol, transport)
    assert protocol.heartbeatPongDeadline == 0.5
    answered = clock.seconds()
    assert next_ping(clock, transport) == b"6:PING 2,"
    assert clock.seconds() - answered == pytest.approx(1.0, abs=SLOT + STEP)
    clock.advance(0.5 - SLOT)
    assert not transport.disconnecting
    with capturedLogs() as events:
        clock.advance(2 * SLOT)
    assert transport.disconnected
    [event] = [e for e in events if "pong deadline" in e["log_format"]]
    assert event["silence"] == pytest.approx(1.5, abs=3 * SLOT)
    assert event["token"] == 2
    assert clock.getDelayedCalls() == []


def test_the_timeout_hook_hears_the_silence_at_the_pong_deadline(clock):
    """Applications see a pong-deadline drop through the same hook as a
    timeout, with the silence so far."""
    seen = []

    class Hooked(NetstringHeartbeat):
        def heartbeatTimedOut(self, silence):
            seen.append(silence)

    protocol, transport = pinger(clock, cls=Hooked)
    answer_first_ping(clock, protocol, transport)
    run(clock, 1.5 + 3 * SLOT)
    assert seen == [pytest.approx(1.5, abs=3 * SLOT)]
    assert transport.disconnected


def test_any_data_before_the_deadline_counts_as_an_answer(clock):
    """Data other than the pong, received before the deadline, keeps the
    peer: its next ping comes an interval later, with a deadline of its
    own."""
    protocol, transport = pinger(clock)
    answer_first_ping(clock, protocol, transport)
    assert next_ping(clock, transport) == b"6:PING 2,"
    clock.advance(0.4)
    protocol.dataReceived(b"2:hi,")
    heard = clock.seconds()
    clock.advance(0.2)
    assert not transport.disconnecting
    assert next_ping(clock, transport) == b"6:PING 3,"
    assert clock.seconds() - heard == pytest.approx(1.0, abs=SLOT + STEP)
    clock.advance(0.5 + 2 * SLOT)
    assert transport.disconnected


def test_a_peer_that_never_answered_keeps_the_timeout_rule(clock):
    """A peer that only ever sends its own data is pinged every interval,
    as before, and dropped at the timeout, not at any pong deadline."""
    protocol, transport = pinger(clock, timeout=5.0)
    previous = 0.0
    for n in range(1, 5):
        assert next_ping(clock, transport) == b"6:PING %d," % (n,)
        assert clock.seconds() - previous == pytest.approx(1.0, abs=SLOT + STEP)
        previous = clock.seconds()
    assert protocol.heartbeatPongDeadline is None
    run(clock, 5.0 - clock.seconds() - SLOT)
    assert not transport.disconnecting
    clock.advance(2 * SLOT)
    assert transport.disconnected


def test_a_pong_deadline_of_zero_turns_the_rule_off(clock):
    """With heartbeatPongTimeout 0 an answering peer that falls silent is
    dropped at the timeout, as before."""
    protocol, transport = pinger(clock, timeout=5.0, pongTimeout=0)
    answer_first_ping(clock, protocol, transport)
    assert protocol.heartbeatPongDeadline is None
    clock.advance(5.0 - 2 * SLOT)
    assert not transport.disconnecting
    clock.advance(2 * SLOT)
    assert transport.disconnected


def test_the_timeout_stays_the_bound(clock):
    """A round trip so long that the pong deadline would come after the
    timeout does not save a silent peer from the timeout."""
    protocol, transport = pinger(clock, interval=2.0, timeout=6.0)
    answer_first_ping(clock, protocol, transport, rtt=1.9)
    assert protocol.heartbeatPongDeadline == pytest.approx(1.9 + 4 * 0.95)
    clock.advance(6.0 - SLOT)
    assert not transport.disconnecting
    clock.advance(2 * SLOT)
    assert transport.disconnected


def test_the_deadline_follows_rfc_6298(clock):
    """The deadline is SRTT + 4 x RTTVAR, with TCP's gains (1/8, 1/4), and
    never below heartbeatPongTimeout."""
    protocol, transport = pinger(clock, interval=10.0, timeout=100.0, pongTimeout=1.0)
    for n, rtt in enumerate([0.4, 0.8, 0.2], 1):
        assert next_ping(clock, transport) == b"6:PING %d," % (n,)
        clock.advance(rtt)
        pong(protocol, n)
    # First sample: SRTT 0.4, RTTVAR 0.2.  Then 0.8: RTTVAR 0.25, SRTT 0.45.
    # Then 0.2: RTTVAR 0.25, SRTT 0.41875.
    assert protocol.heartbeatSmoothedRtt == pytest.approx(0.41875)
    assert protocol.heartbeatRttVariation == pytest.approx(0.25)
    assert protocol.heartbeatPongDeadline == pytest.approx(1.41875)
    protocol.heartbeatPongTimeout = 2.0
    assert protocol.heartbeatPongDeadline == 2.0


def test_a_three_second_round_trip_is_never_dropped_for_it(clock):
    """A peer 3 s away, far more than the least deadline (1 s) and the
    interval (2 s), answers every ping in 3 s for a long while and is
    never dropped: the deadline has grown to fit."""
    protocol, transport = pinger(clock, interval=2.0, timeout=30.0, pongTimeout=1.0)
    inFlight = {}
    for step in range(int(200 / SLOT / 10)):
        clock.advance(10 * SLOT)
        for token in take(transport).split(b",")[:-1]:
            inFlight[int(token.split(b" ")[1])] = clock.seconds()
        for n, sentAt in list(inFlight.items()):
            if clock.seconds() - sentAt >= 3.0 - 1e-9:
                del inFlight[n]
                pong(protocol, n)
    assert not transport.disconnecting
    assert protocol.heartbeatRtt == pytest.approx(3.0, abs=0.1)
    assert protocol.heartbeatPongDeadline > 3.0
    # One ping at a time once measured: 200 s of 3 s round trips plus 2 s
    # intervals is 40 pings, not the 100 of a ping every interval.
    assert protocol.heartbeatPingsSent <= 200 / 5 + 2


def test_one_ping_outstanding_and_the_pong_of_either_ping_measured(clock):
    """Pongs slower than the interval: the first comes back after the
    second ping and is still measured; from then on a silent peer is
    pinged again only once its ping is answered."""
    protocol, transport = pinger(clock, interval=1.0, timeout=10.0, pongTimeout=5.0)
    assert next_ping(clock, transport) == b"6:PING 1,"
    first = clock.seconds()
    assert next_ping(clock, transport) == b"6:PING 2,"
    second = clock.seconds()
    clock.advance(first + 1.2 - clock.seconds())
    pong(protocol, 1)
    assert protocol.heartbeatRtt == pytest.approx(1.2)
    clock.advance(1.0 + SLOT)  # ping 2 still unanswered: no ping 3
    assert take(transport) == b""
    clock.advance(second + 1.2 - clock.seconds())
    pong(protocol, 2)
    assert protocol.heartbeatRtt == pytest.approx(1.2)
    answered = clock.seconds()
    assert next_ping(clock, transport) == b"6:PING 3,"
    assert clock.seconds() - answered == pytest.approx(1.0, abs=SLOT + STEP)


def test_stale_forged_or_repeated_pongs_give_no_sample(clock):
    """A pong for a ping answered already, an older ping's, or a token never
    sent is only a sign of life, never a round-trip sample."""
    protocol, transport = pinger(clock, interval=1.0, timeout=10.0)
    for n in (1, 2, 3):  # none answered
        assert next_ping(clock, transport) == b"6:PING %d," % (n,)
    pong(protocol, 1)
    protocol.dataReceived(b"9:PONG 9999,")
    protocol.dataReceived(b"4:PONG,")
    assert protocol.heartbeatRtt is None
    clock.advance(0.1)
    pong(protocol, 3)
    assert protocol.heartbeatRtt == pytest.approx(0.1)
    pong(protocol, 2)
    assert protocol.heartbeatRtt == pytest.approx(1.1, abs=SLOT + STEP)
    measured = protocol.heartbeatRtt
    clock.advance(0.3)
    pong(protocol, 2)
    pong(protocol, 3)
    assert protocol.heartbeatRtt == measured


def test_a_late_pong_deadline_after_a_blocked_reactor_looks_again(clock):
    """A pong deadline that fires late because the reactor was blocked
    first lets the waiting data be read: a peer whose answer was waiting
    is kept, one that sent nothing is dropped one slot later."""
    for answered in (True, False):
        protocol, transport = pinger(clock, interval=1.0, timeout=30.0)
        answer_first_ping(clock, protocol, transport)
        assert next_ping(clock, transport) == b"6:PING 2,"
        clock.advance(5.0)  # blocked: the 0.5 s deadline fires 4.5 s late
        assert not transport.disconnecting
        if answered:
            pong(protocol, 2)
        clock.advance(2 * SLOT)
        assert transport.disconnecting is not answered
        protocol.stopHeartbeat()
    assert clock.getDelayedCalls() == []


def test_a_manual_ping_keeps_its_pong_measured(clock):
    """heartbeatPing() while a ping awaits its pong: both pongs are
    measured, the older one too."""
    protocol, transport = pinger(clock, interval=10.0, timeout=30.0)
    first = protocol.heartbeatPing()
    clock.advance(0.1)
    second = protocol.heartbeatPing()
    clock.advance(0.1)
    pong(protocol, int(first))
    assert protocol.heartbeatRtt == pytest.approx(0.2)
    pong(protocol, int(second))
    assert protocol.heartbeatRtt == pytest.approx(0.1)
