"""
The link to Redis, in memory (tests/fakeredis.py): how it connects,
authenticates, comes up, goes down, and what it says meanwhile.
"""

import gc
import weakref

import pytest
from twisted.logger import globalLogPublisher

from heartbeat._cluster.address import parse_redis_url
from heartbeat._cluster.link import RedisLink

from .fakeredis import FakeRedis, subscribed

CHANNELS = [b"heartbeat:0:presence", b"heartbeat:0:node:n1"]


@pytest.fixture
def logged():
    """Every event logged while the test runs, after a garbage collection
    (which logs the errors that Deferreds left unhandled)."""
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    gc.collect()
    globalLogPublisher.removeObserver(events.append)


def texts(events):
    from twisted.logger import formatEvent

    return [formatEvent(event) for event in events]


class Link:
    """A link to a fake Redis, recording when it comes up and goes down."""

    def __init__(self, url="unix:///tmp/redis.sock?db=0", timeout=0.5):
        self.redis = FakeRedis()
        self.ups = []
        self.downs = []
        self.messages = []
        self.link = RedisLink(
            parse_redis_url(url), CHANNELS,
            lambda channel, message: self.messages.append((channel, message)),
            lambda: self.ups.append(self.clock.seconds()),
            lambda: self.downs.append(self.clock.seconds()),
            timeout=timeout, reactor=self.redis.reactor,
        )

    @property
    def clock(self):
        return self.redis.reactor

    def up(self):
        """Start the link and bring it up: both connections accepted, the
        subscription answered."""
        self.link.start()
        command, subscriber = self.redis.acceptBoth()
        assert subscriber.commands() == [[b"SUBSCRIBE", *CHANNELS]]
        subscriber.reply(subscribed(CHANNELS))
        assert self.link.up
        return command, subscriber

    def retry(self):
        """Let the link's next attempts come."""
        self.clock.advance(self.link.maxRetryDelay)


def test_the_link_comes_up_subscribed_and_delivers(logged):
    """Both connections made and the subscription answered: the link is
    up, once, and hands on what is published on its channels."""
    link = Link()
    command, subscriber = link.up()
    assert link.ups == [0.0]
    subscriber.reply(b"*3\r\n$7\r\nmessage\r\n$20\r\nheartbeat:0:presence\r\n$5\r\nJ n a\r\n")
    assert link.messages == [(b"heartbeat:0:presence", b"J n a")]
    link.link.stop()


def test_reconnecting_keeps_no_connection_that_is_gone(logged):
    """However often Redis goes away and comes back, the process holds
    only the link's two current connections, not every one it ever had."""
    link = Link()
    command, subscriber = link.up()
    gone = []
    for _ in range(5):
        gone += [weakref.ref(link.link._command), weakref.ref(link.link._subscriber)]
        command.lose()
        subscriber.lose()
        link.retry()
        command, subscriber = link.redis.acceptBoth()
        subscriber.commands()
        subscriber.reply(subscribed(CHANNELS))
        assert link.link.up
    del command, subscriber
    gc.collect()
    assert [ref for ref in gone if ref() is not None] == []
    assert len(link.ups) == 6 and len(link.downs) == 5
    link.link.stop()


def test_a_wrong_password_is_said_once_and_nothing_is_left_unhandled(logged):
    """A Redis that refuses the password: one error line that says so, not
    one per attempt, and no unhandled error later."""
    link = Link("unix://:wrong@/tmp/redis.sock?db=0")
    link.link.start()
    for _ in range(6):
        for connection in (link.redis.accept(), link.redis.accept()):
            assert connection.commands() == [[b"AUTH", b"wrong"]]
            connection.reply(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
            assert connection.transport.disconnecting or connection.transport.disconnected
            connection.lose()
        link.retry()
    said = texts(logged)
    refusals = [text for text in said if "refused this node" in text]
    assert refusals == [
        "Redis at unix:///tmp/redis.sock?db=0 refused this node: AUTH refused: "
        "WRONGPASS invalid username-password pair or user is disabled."]
    assert not [text for text in said if "could not auth" in text]
    assert "wrong" not in " ".join(said).replace("WRONGPASS", "")
    assert not link.link.up and link.ups == []
    link.link.stop()
    gc.collect()
    assert [e for e in logged if e.get("log_failure") or e.get("isError")] == []


def test_a_database_redis_lacks_is_said_once():
    """SELECT refused (a database Redis does not have): said as such."""
    link = Link("unix:///tmp/redis.sock?db=99")
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        link.link.start()
        command, subscriber = link.redis.acceptBoth()
        assert command.commands() == [[b"SELECT", b"99"]]
        assert subscriber.commands() == [[b"SUBSCRIBE", *CHANNELS]]
        command.reply(b"-ERR DB index is out of range\r\n")
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert [text for text in texts(events) if "refused this node" in text] == [
        "Redis at unix:///tmp/redis.sock?db=99 refused this node: SELECT refused: "
        "ERR DB index is out of range"]
    link.link.stop()


def test_a_password_that_gets_no_answer_is_no_refusal(logged):
    """A Redis that hangs during AUTH is unreachable, not refusing: no
    refusal is said, and the minute's line says what happened."""
    link = Link("unix://:secret@/tmp/redis.sock?db=0")
    link.link.start()
    command, subscriber = link.redis.acceptBoth()
    assert command.commands() == [[b"AUTH", b"secret"]]
    link.clock.advance(0.5)
    assert command.transport.disconnecting or command.transport.disconnected
    command.lose()
    subscriber.lose()
    link.clock.advance(60)
    said = texts(logged)
    assert not [text for text in said if "refused" in text]
    assert [text for text in said if "cannot reach Redis" in text][-1] == (
        "cannot reach Redis at unix:///tmp/redis.sock?db=0 for 60s (Not received "
        "Redis response in 0.5 seconds): serving this node's connections only, and "
        "retrying")
    link.link.stop()


def test_stopping_while_the_subscription_is_unanswered_leaves_nothing(logged):
    """Stopped before Redis answered SUBSCRIBE: no timer is left behind,
    and a late answer does not bring the stopped link up."""
    link = Link()
    link.link.start()
    command, subscriber = link.redis.acceptBoth()
    link.link.stop()
    assert link.clock.getDelayedCalls() == []
    subscriber.reply(subscribed(CHANNELS))
    assert not link.link.up and link.ups == []


def test_a_redis_that_hangs_is_noticed_by_the_subscriber_alone(logged):
    """The subscribing connection, which otherwise only listens, pings
    Redis: one that stops answering takes the link down within the
    keepalive and the timeout, without any command being sent."""
    link = Link()
    link.link.keepalive = 1.0
    command, subscriber = link.up()
    link.clock.advance(1.0)
    assert subscriber.commands() == [[b"PING"]]
    subscriber.reply(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n")
    link.clock.advance(1.0)
    assert subscriber.commands() == [[b"PING"]]
    link.clock.advance(0.5)
    assert subscriber.transport.disconnecting or subscriber.transport.disconnected
    subscriber.lose()
    command.lose()
    assert link.downs == [2.5] and not link.link.up
    assert command.commands() == []
    link.link.stop()
    assert link.clock.getDelayedCalls() == []


def test_an_observer_listens_only_for_answers_to_its_questions():
    """The supervisor's view of the cluster subscribes to its own channel
    only: it does not receive every broadcast and presence event of the
    cluster."""
    from twisted.internet.testing import MemoryReactorClock

    from heartbeat._cluster.redis import RedisCluster

    observer = RedisCluster("unix:///tmp/redis.sock?db=2", "box", 1.0,
                            reactor=MemoryReactorClock(), observer=True)
    assert observer.link.channels == [b"heartbeat:2:node:box"]
    node = RedisCluster("unix:///tmp/redis.sock?db=2", "box/1", 1.0,
                        reactor=MemoryReactorClock())
    assert sorted(node.link.channels) == [
        b"heartbeat:2:all", b"heartbeat:2:node:box/1", b"heartbeat:2:presence"]


def test_a_command_the_client_cannot_encode_fails_instead_of_raising(logged):
    """An argument the Redis client cannot encode fails the command's
    Deferred; it never raises into the caller (a heartbeat's loop would
    die of it, and the node never beat again)."""
    link = Link()
    command, subscriber = link.up()
    failure = None

    def failed(f):
        nonlocal failure
        failure = f

    link.link.call("publish", "lone \ud800", b"x").addErrback(failed)
    assert failure is not None
    assert command.commands() == []
    link.link.stop()
