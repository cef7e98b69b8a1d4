"""
The reconnecting client: backoff, health, refusals, the send buffer.
"""

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.protocol import ReconnectingClientFactory
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from heartbeat import (
    BufferFull,
    ClientStopped,
    HeartbeatClientFactory,
    ServerRefused,
    backoff_delay,
)

from .helpers import lose, take


class FakeEndpoint:
    """
    An endpoint whose connection attempts the test completes or fails.
    """

    def __init__(self):
        self.attempts = []

    def connect(self, factory):
        attempt = Deferred(lambda d: None)
        self.attempts.append((factory, attempt))
        return attempt

    def accept(self):
        """
        Complete the latest attempt; return the client protocol and transport.
        """
        factory, attempt = self.attempts[-1]
        wrapper = factory.buildProtocol(None)
        transport = StringTransport()
        wrapper.makeConnection(transport)
        attempt.callback(wrapper)
        return wrapper.wrappedProtocol, transport, wrapper

    def refuse(self):
        factory, attempt = self.attempts[-1]
        attempt.errback(Failure(ConnectionRefusedError()))


def make(clock, random=lambda: 1.0, **attributes):
    factory = HeartbeatClientFactory(clock=clock, random=random)
    factory.heartbeatInterval = 1.0
    factory.heartbeatTimeout = 3.0
    for name, value in attributes.items():
        setattr(factory, name, value)
    endpoint = FakeEndpoint()
    factory.connectEndpoint(endpoint, "fake")
    return factory, endpoint


def next_delay(clock):
    [call] = clock.getDelayedCalls()
    return call.getTime() - clock.seconds()


# The delay function on its own


def test_first_delay_is_initial_delay_not_times_factor():
    """The first retry waits at most initialDelay (the base class used
    initialDelay x factor once reset)."""
    assert backoff_delay(0, 1.0, 2.0, 30.0, random=lambda: 1.0) == 1.0


def test_delays_double_up_to_the_cap():
    """Each failure doubles the cap, which stops at maxDelay."""
    caps = [backoff_delay(n, 1.0, 2.0, 30.0, random=lambda: 1.0) for n in range(8)]
    assert caps == [1, 2, 4, 8, 16, 30, 30, 30]


def test_jitter_stays_within_zero_and_the_cap():
    """Full jitter is drawn in [0, cap]: never negative, never above the cap
    (the base class's Gaussian jitter, applied after the cap, could be)."""
    for n in range(40):
        assert backoff_delay(n, 1.0, 2.0, 30.0, random=lambda: 0.0) == 0.0
        assert backoff_delay(n, 1.0, 2.0, 30.0, random=lambda: 1.0) <= 30.0
    assert backoff_delay(3, random=lambda: 0.5) == 4.0


def test_huge_attempt_counts_do_not_overflow():
    """After thousands of failures the delay is still the cap."""
    assert backoff_delay(5000, random=lambda: 1.0) == 30.0


def test_jitter_off_waits_the_whole_cap():
    """The test-only switch makes every client wait exactly the cap."""
    assert backoff_delay(2, jitter=False, random=lambda: 0.0) == 4.0


def test_defaults_suit_a_keepalive_client():
    """About 1 s first, 30 s at most: not the base class's hour."""
    assert ReconnectingClientFactory.maxDelay == 3600
    factory = HeartbeatClientFactory(clock=object())
    assert (factory.initialDelay, factory.maxDelay) == (1.0, 30.0)


# Reconnection


def test_reconnects_after_loss_with_growing_delays(clock):
    """Each failed attempt doubles the wait, up to the cap."""
    factory, endpoint = make(clock)
    protocol, transport, wrapper = endpoint.accept()
    lose(wrapper, ConnectionLost())
    delays = []
    for _ in range(7):
        delays.append(next_delay(clock))
        clock.advance(delays[-1])
        endpoint.refuse()
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert len(endpoint.attempts) == 8


def test_random_spreads_the_delay(clock):
    """With the random source at 0.25 the wait is a quarter of the cap."""
    factory, endpoint = make(clock, random=lambda: 0.25)
    endpoint.refuse()
    assert next_delay(clock) == 0.25
    clock.advance(0.25)
    endpoint.refuse()
    assert next_delay(clock) == 0.5


def test_backoff_resets_only_once_healthy(clock):
    """A server that accepts and drops at once is not hammered: TCP connect
    alone does not reset the backoff, a pong does."""
    factory, endpoint = make(clock)
    delays = []
    for _ in range(4):
        protocol, transport, wrapper = endpoint.accept()
        lose(wrapper, ConnectionLost())
        delays.append(next_delay(clock))
        clock.advance(delays[-1])
    assert delays == [1, 2, 4, 8]
    protocol, transport, wrapper = endpoint.accept()
    assert take(transport) == b"heartbeat/1 resume\nping 1\n"
    protocol.dataReceived(b"pong 1\n")
    lose(wrapper, ConnectionLost())
    assert next_delay(clock) == 1


def test_dead_server_is_detected_and_replaced(clock):
    """A server gone silent is aborted at the timeout, then reconnected."""
    factory, endpoint = make(clock)
    protocol, transport, wrapper = endpoint.accept()
    protocol.dataReceived(b"pong 1\n")
    clock.pump([0.5] * 5)
    assert not transport.disconnected
    clock.pump([0.5, 0.01])
    assert transport.disconnected
    lose(wrapper, ConnectionLost())
    clock.advance(next_delay(clock))
    assert len(endpoint.attempts) == 2


def test_server_full_retries_at_the_cap(clock):
    """'error server full' makes the client wait half to all of maxDelay."""
    factory, endpoint = make(clock, random=lambda: 0.0)
    protocol, transport, wrapper = endpoint.accept()
    protocol.dataReceived(b"error server full\n")
    lose(wrapper)
    assert next_delay(clock) == 15.0
    assert factory.continueTrying


def test_unauthorized_stops_retrying_and_says_why(clock):
    """'error unauthorized' ends the retries and fails the waiters."""
    factory, endpoint = make(clock)
    connected = factory.whenConnected()
    stopped = factory.whenStopped()
    protocol, transport, wrapper = endpoint.accept()
    protocol.dataReceived(b"error unauthorized\n")
    lose(wrapper)
    assert clock.getDelayedCalls() == []
    assert not factory.continueTrying
    for d in (connected, stopped):
        failures = []
        d.addErrback(failures.append)
        assert failures[0].check(ServerRefused)
        assert failures[0].value.reason == b"unauthorized"
    with pytest.raises(ClientStopped):
        factory.sendMessage(b"late")


def test_error_line_followed_by_more_is_an_application_line(clock):
    """An echoed 'error ...' line is delivered like any other, in order."""
    got = []
    factory, endpoint = make(clock)
    factory.protocol = type(
        "Recorder",
        (factory.protocol,),
        {"messageReceived": lambda self, line: got.append(line)},
    )
    protocol, transport, wrapper = endpoint.accept()
    protocol.dataReceived(b"pong 1\nerror unauthorized\nafter\n")
    assert got == [b"error unauthorized", b"after"]
    lose(wrapper)
    assert factory.continueTrying


def test_stop_trying_stops_everything(clock):
    """stopTrying closes the connection, cancels retries, fires whenStopped."""
    factory, endpoint = make(clock)
    protocol, transport, wrapper = endpoint.accept()
    stopped = factory.whenStopped()
    factory.stopTrying()
    assert transport.disconnecting
    assert not stopped.called
    lose(wrapper)
    assert stopped.called and stopped.result is None
    assert clock.getDelayedCalls() == []


def test_stop_trying_while_waiting_cancels_the_retry(clock):
    """A pending reconnection is cancelled, and healthy traffic later cannot
    revive it (the base class's resetDelay did)."""
    factory, endpoint = make(clock)
    endpoint.refuse()
    assert clock.getDelayedCalls()
    factory.stopTrying()
    assert clock.getDelayedCalls() == []
    factory.resetDelay()
    assert not factory.continueTrying


def test_stop_trying_while_connecting_cancels_the_attempt(clock):
    """An attempt in flight is cancelled and not retried."""
    factory, endpoint = make(clock)
    factory.stopTrying()
    assert clock.getDelayedCalls() == []
    assert factory.connector.state == "disconnected"


def test_max_retries_gives_up(clock):
    """With maxRetries set, the client stops after that many retries."""
    factory, endpoint = make(clock, maxRetries=2)
    stopped = factory.whenStopped()
    failures = []
    stopped.addErrback(failures.append)
    for _ in range(2):
        endpoint.refuse()
        clock.advance(next_delay(clock))
    endpoint.refuse()
    assert clock.getDelayedCalls() == []
    assert failures and failures[0].check(ClientStopped)


# Sending and buffering


def test_messages_sent_while_down_are_flushed_in_order(clock):
    """Lines sent while disconnected arrive, in order, once healthy."""
    factory, endpoint = make(clock)
    for n in range(5):
        factory.sendMessage(b"line %d" % n)
    assert factory.bufferedMessages == 5
    protocol, transport, wrapper = endpoint.accept()
    # Connected, but not proven healthy yet: nothing but the ping.
    assert take(transport) == b"heartbeat/1 resume\nping 1\n"
    factory.sendMessage(b"line 5")
    protocol.dataReceived(b"pong 1\n")
    assert take(transport) == b"".join(b"line %d\n" % n for n in range(6))
    factory.sendMessage(b"direct")
    assert take(transport) == b"direct\n"
    assert factory.bufferedMessages == 0


@pytest.mark.parametrize("count, said", [(1, "1 buffered message"),
                                          (2, "2 buffered messages")])
def test_the_log_counts_buffered_messages_in_words(clock, count, said):
    """The log line for a flush reads as English, one message or several."""
    from twisted.logger import Logger, formatEvent

    events = []
    factory, endpoint = make(clock, log=Logger(observer=events.append))
    for n in range(count):
        factory.sendMessage(b"%d" % n)
    protocol, transport, wrapper = endpoint.accept()
    protocol.dataReceived(b"pong 1\n")
    assert f"sending {said}" in [formatEvent(event) for event in events]


def test_buffer_full_fails_loudly(clock):
    """Past maxBufferedMessages a send raises; nothing is dropped silently."""
    factory, endpoint = make(clock, maxBufferedMessages=3)
    for n in range(3):
        factory.sendMessage(b"%d" % n)
    with pytest.raises(BufferFull):
        factory.sendMessage(b"3")
    protocol, transport, wrapper = endpoint.accept()
    protocol.dataReceived(b"pong 1\n")
    assert take(transport) == b"heartbeat/1 resume\nping 1\n0\n1\n2\n"


def test_newline_in_message_is_refused(clock):
    """A line that would split in two on the wire is refused."""
    factory, endpoint = make(clock)
    with pytest.raises(ValueError):
        factory.sendMessage(b"a\nb")
    assert factory.bufferedMessages == 0


def test_when_connected_fires_on_each_reconnection(clock):
    """Applications hear of every (re)connection to re-subscribe."""
    factory, endpoint = make(clock)
    seen = []

    def subscribe(protocol):
        seen.append(protocol)
        protocol.sendMessage(b"subscribe")
        factory.nextConnection().addCallback(subscribe)

    factory.whenConnected().addCallback(subscribe)
    for round in range(3):
        protocol, transport, wrapper = endpoint.accept()
        assert len(seen) == round
        protocol.dataReceived(b"pong 1\n")
        assert take(transport).endswith(b"subscribe\n")
        lose(wrapper, ConnectionLost())
        clock.advance(next_delay(clock))
    assert len(seen) == 3


def test_rtt_is_measured_from_the_first_ping(clock):
    """The ping sent on connect gives a round-trip time at once."""
    factory, endpoint = make(clock)
    protocol, transport, wrapper = endpoint.accept()
    clock.advance(0.03)
    protocol.dataReceived(b"pong 1\n")
    assert protocol.heartbeatRtt == pytest.approx(0.03)
    assert factory.connectedProtocol is protocol


def test_auth_line_goes_first(clock):
    """With a token the client's first line is 'auth <token>', then ping."""
    factory, endpoint = make(clock, authToken=b"s3cret")
    protocol, transport, wrapper = endpoint.accept()
    assert transport.value() == b"auth s3cret\nheartbeat/1 resume\nping 1\n"
