"""
The factory's presence and routing API across nodes: an application of
the library (tests/clusterapp.py) on three processes and a real Redis.
"""

import re
import subprocess
import sys
import threading

import pytest

from heartbeat._framing.handshake import format_handshake

from .clusternodes import names
from .processes import ROOT, LoggedProcess, Peer, wait_for
from .redisserver import REDIS_CLI


class App(LoggedProcess):
    def __init__(self, redis, node):
        super().__init__([sys.executable, str(ROOT / "tests" / "clusterapp.py"),
                          redis.url, node])
        self.node = node
        found = wait_for(lambda: re.search(r"listening (\d+)", self.log()),
                         what=f"{node} to listen")
        self.port = int(found.group(1))
        wait_for(lambda: node in redis.lines("ZRANGE", "heartbeat:nodes", "0", "-1"),
                 what=f"{node} to register")

    def peer(self, name):
        peer = Peer(self.port)
        handshake = format_handshake({"name": name})
        peer.send(handshake + b"\n")
        assert handshake.split(b" ")[1] in peer.readline()
        return peer


def ask(peer, question):
    peer.send(question.encode() + b"\n")
    return peer.readline().decode()


@pytest.fixture
def apps(redis):
    started = []
    try:
        for n in range(1, 4):
            started.append(App(redis, f"app{n}"))
        yield started
    finally:
        for app in started:
            app.stop()
        for app in started:
            assert "Traceback" not in app.log(), app.log()


class ChannelWatcher:
    """Which node channels a message was published on."""

    def __init__(self, redis):
        self.process = subprocess.Popen(
            [REDIS_CLI, "-s", redis.socket, "PSUBSCRIBE", "heartbeat:0:node:*"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT,
        )
        self.lines = []
        threading.Thread(target=self._read, daemon=True).start()
        wait_for(lambda: "psubscribe" in self.lines, what="PSUBSCRIBE")

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line.decode().rstrip("\n"))

    def channels_with(self, text):
        found = []
        for index, line in enumerate(self.lines):
            if line.endswith(text) and index >= 1:
                found.append(self.lines[index - 1])
        return sorted(found)

    def close(self):
        self.process.kill()
        self.process.wait()


def test_a_line_for_a_name_reaches_its_connections_on_their_nodes_only(apps, redis):
    """sendTo reaches every connection of the name on every node, and is
    published only to the nodes that hold it; disconnect closes them all."""
    app1, app2, app3 = apps
    laptop, phone = app1.peer("alice"), app3.peer("alice")
    bob = app2.peer("bob")
    watcher = ChannelWatcher(redis)
    try:
        assert ask(bob, "to alice hello alice") == "to: 2"
        assert laptop.readline() == phone.readline() == b"hello alice"
        wait_for(lambda: watcher.channels_with("hello alice"), what="the published lines")
        assert watcher.channels_with("hello alice") == [
            "heartbeat:0:node:app1", "heartbeat:0:node:app3"]
        assert ask(laptop, "to bob hi bob") == "to: 1"
        assert bob.readline() == b"hi bob"
        assert ask(bob, "kick alice") == "kick: 2"
        assert laptop.readline() == phone.readline() == b"error disconnected by server"
        assert laptop.closed_within(3) and phone.closed_within(3)
        wait_for(lambda: "alice" not in names(redis), what="alice gone")
    finally:
        watcher.close()


def test_presence_queries_and_events_span_the_nodes(apps, redis):
    """isOnline, connectionsOf, onlineCount and onlineNames answer for the
    whole cluster, and every node's hooks hear every join and leave."""
    app1, app2, app3 = apps
    carol = app1.peer("carol")
    dave = [app2.peer("dave"), app3.peer("dave")]
    asker = app3.peer("erin")
    assert ask(asker, "online carol") == "online: True"
    assert ask(asker, "online nobody") == "online: False"
    assert ask(asker, "where dave") == "where: app2 app3"
    assert ask(asker, "count") == "count: 3"
    assert ask(asker, "names") == "names: carol dave erin"
    assert ask(asker, "names carol") == "names: dave erin"
    carol.close()
    for app in apps:
        wait_for(lambda: "left carol app1 closed" in app.log(), what="carol's leave")
        assert "joined dave app2" in app.log() and "joined dave app3" in app.log()
    assert ask(asker, "online carol") == "online: False"
    for peer in dave:
        peer.close()


def test_names_beyond_ascii_are_themselves_on_every_node(apps, redis):
    """José and Josè, on two nodes, are two names everywhere: in Redis, in
    every node's events, in the queries, and a line for one reaches only
    that one."""
    app1, app2, app3 = apps
    jose, josè = app1.peer("José"), app3.peer("Josè")
    asker = app2.peer("Zoë")
    assert ask(asker, "where José") == "where: app1"
    assert ask(asker, "where Josè") == "where: app3"
    assert ask(asker, "names") == "names: Josè José Zoë"
    assert ask(asker, "to José olá") == "to: 1"
    assert jose.readline().decode() == "olá"
    assert set(names(redis)) == {"José", "Josè", "Zoë"}
    wait_for(lambda: "joined José app1" in app3.log() and "joined Josè app3" in app1.log(),
             what="the joins heard")
    josè.close()
    wait_for(lambda: "left Josè app3 closed" in app2.log(), what="Josè's leave")
    assert ask(jose, "online Josè") == "online: False"
    assert ask(asker, "online José") == "online: True"


def test_without_redis_the_api_fails_clearly_and_local_lines_still_go(apps, redis):
    """While Redis hangs, a cross-node send and a presence query fail with
    ClusterUnavailable and a broadcast still reaches the sender's own node;
    once Redis is back, lines cross again."""
    app1, app2, _ = apps
    local = app1.peer("frank")
    sender = app1.peer("gina")
    hank = app2.peer("hank")
    redis.pause()
    try:
        answer = ask(sender, "to hank hello")
        assert answer.startswith("failed ClusterUnavailable: Redis at redis://127.0.0.1:")
        answer = ask(sender, "all to everyone")
        assert local.readline() == b"to everyone"
        assert answer.startswith("failed ClusterUnavailable")
        assert ask(sender, "online hank").startswith("failed ClusterUnavailable")
    finally:
        redis.resume()
    wait_for(lambda: ask(sender, "online hank") == "online: True", what="Redis back")
    # Lines published before hank's node has subscribed again are lost.
    wait_for(lambda: redis.lines("PUBSUB", "NUMSUB", "heartbeat:0:node:app2")[1] == "1",
             what="app2 subscribed again")
    assert ask(sender, "to hank back") == "to: 1"
    # A send that failed for want of an answer may still have reached Redis
    # before it hung: then it is delivered once, when Redis resumes.
    first = hank.readline()
    assert [first] == [b"back"] or [first, hank.readline()] == [b"hello", b"back"]


def test_a_send_counts_only_connections_on_nodes_that_got_it(apps, redis):
    """sendTo's count leaves out the connections of a node that is dead
    but not yet removed, and a key whose connection is gone: it counts
    the connections presence holds on the nodes the line was handed to."""
    app1, app2, app3 = apps
    asker = app1.peer("asker")
    ghost = app3.peer("ghost")
    unnamed = Peer(app2.port)
    unnamed.send(b"ping settle\n")
    assert unnamed.readline() == b"pong settle"
    key = wait_for(lambda: [n for n in names(redis) if n.startswith("app2#")],
                   what="the unnamed connection's key")[0]
    assert ask(asker, f"to {key} hello") == "to: 1"
    assert unnamed.readline() == b"hello"
    unnamed.close()
    wait_for(lambda: key not in names(redis), what="the key gone")
    assert ask(asker, f"to {key} hello") == "to: 0"
    app3.kill()
    assert ask(asker, "to ghost hello") == "to: 0"
    assert "ghost" in names(redis)
    ghost.close()
