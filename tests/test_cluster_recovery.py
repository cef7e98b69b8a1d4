"""
What the cluster must not do when Redis stalls, loses its data or comes
back from its saved data, two processes share a node id, or a node holds
a hundred thousand connections: against a real redis-server, with nodes
as processes.
"""

import sys
import time

from .clusternodes import NODE_TIMEOUT, Node, PresenceWatcher, names
from .processes import ROOT, LoggedProcess, wait_for
from .redisserver import require_redis


def gated(redis):
    """
    Start C{redis} again, empty, behind a password the nodes do not know,
    watch its presence events, then let the nodes in: so that the watcher
    hears what they publish as they register again.
    """
    redis.password = "gate"
    redis.start()
    watcher = PresenceWatcher(redis)
    redis.cli("CONFIG", "SET", "requirepass", "")
    redis.password = None
    return watcher


def test_leaves_during_an_outage_are_told_when_redis_comes_back_empty(redis):
    """A connection that joined before Redis died and closed while it was
    down is told as a leave (closed) when Redis is back empty, so that the
    other nodes, which heard its join, hear its end."""
    node = Node(redis, "keeper")
    watcher = None
    try:
        stay, go = node.peer("stay"), node.peer("go")
        wait_for(lambda: {"stay", "go"} <= set(names(redis)), what="both present")
        redis.kill()
        wait_for(lambda: "lost Redis" in node.log(), what="the node to notice")
        go.close()
        wait_for(lambda: "disconnected" in node.log(), what="the close")
        watcher = gated(redis)
        watcher.wait(lambda events: ("L", "keeper", "c", "go") in events,
                     what="go's leave")
        assert ("J", "keeper", None, "stay") in watcher.events
        assert names(redis) == ["stay"]
        assert "lost the cluster's data" in node.log()
        stay.close()
    finally:
        if watcher is not None:
            watcher.close()
        node.stop()
    assert "Traceback" not in node.log(), node.log()


def test_redis_restarted_from_its_data_takes_no_node_for_dead(redis):
    """Redis restarted from its saved data after more than the node
    timeout: the deadlines it kept are long past, yet the first node back
    (here one that was not in the cluster before) takes no node for dead
    for the time Redis was away."""
    nodes = [Node(redis, f"saved{n}") for n in (1, 2)]
    watcher = fresh = None
    try:
        peers = [node.peer(f"s{n}") for n, node in enumerate(nodes)]
        wait_for(lambda: {"s0", "s1"} <= set(names(redis)), what="both present")
        redis.cli("SAVE")
        redis.kill()
        time.sleep(NODE_TIMEOUT * 2.5)
        redis.password = "gate"
        redis.start()
        watcher = PresenceWatcher(redis)
        # A node of its own user gets in first, alone with the saved nodes'
        # records, and beats.
        redis.cli("ACL", "SETUSER", "fresh", "on", ">pw", "~*", "&*", "+@all")
        fresh = Node(redis, "fresh", url=f"redis://fresh:pw@127.0.0.1:{redis.port}/0")
        time.sleep(NODE_TIMEOUT / 2)
        redis.cli("CONFIG", "SET", "requirepass", "")
        redis.password = None
        for node in nodes:
            node.waitRegistered(times=2)
        time.sleep(NODE_TIMEOUT * 1.5)
        assert watcher.leaves() == []
        assert sorted(redis.lines("ZRANGE", "heartbeat:nodes", "0", "-1")) == [
            "fresh", "saved1", "saved2"]
        for peer in peers:
            peer.close()
    finally:
        if watcher is not None:
            watcher.close()
        for node in nodes + [fresh]:
            if node is not None:
                node.stop()


def test_two_processes_with_one_node_id_do_not_reap_each_other(redis):
    """A second process started with a live node's id is refused by Redis
    and says so once; the first keeps its connections in presence; once
    the first stops, the second takes the id."""
    first = Node(redis, "twin")
    second = None
    watcher = PresenceWatcher(redis)
    try:
        mine = first.peer("first-peer")
        second = Node(redis, "twin", register=False)
        theirs = second.peer("second-peer")
        wait_for(lambda: "node id twin is in use" in second.log(), what="the refusal")
        time.sleep(NODE_TIMEOUT * 2)
        assert second.log().count("is in use") == 1
        assert "first-peer" in names(redis) and "second-peer" not in names(redis)
        assert watcher.leaves() == []
        first.stop()
        second.waitRegistered()
        wait_for(lambda: names(redis) == ["second-peer"], what="the second's peer")
        assert not watcher.leaves("d")
        mine.close()
        theirs.close()
    finally:
        watcher.close()
        for node in (first, second):
            if node is not None:
                node.stop()
    assert "Traceback" not in second.log(), second.log()


def test_a_node_restarted_after_a_crash_takes_its_id_back_at_once(redis, figure):
    """A node killed and started again under its id rejoins as soon as
    its previous life has stopped beating (two beat periods), not a node
    timeout later: its old connections leave (node died), its new ones
    join."""
    watcher = PresenceWatcher(redis)
    nodes = []
    try:
        nodes.append(Node(redis, "phoenix", "--node-timeout", "5"))
        before = nodes[0].peer("before")
        watcher.wait(lambda events: ("J", "phoenix", None, "before") in events)
        nodes[0].kill()
        killed = time.monotonic()
        nodes.append(Node(redis, "phoenix", "--node-timeout", "5"))
        back = time.monotonic() - killed
        figure("node restarted under its id (node timeout 5 s): registered after", back, "s")
        assert back < 5
        after = nodes[1].peer("after")
        watcher.wait(lambda events: ("J", "phoenix", None, "after") in events)
        assert watcher.leaves() == [("L", "phoenix", "d", "before")]
        assert names(redis) == ["after"]
        before.close()
        after.close()
    finally:
        watcher.close()
        for node in nodes:
            node.stop()


class BigNode(LoggedProcess):
    """tests/bignode.py: a node of COUNT connections without sockets."""

    def __init__(self, redis, node, count):
        super().__init__([sys.executable, str(ROOT / "tests" / "bignode.py"), redis.url,
                          node, str(count), str(NODE_TIMEOUT)])


def test_a_node_of_100k_connections_holds_redis_for_no_one(redis, figure):
    """A node of 100,000 connections registers, dies, and is removed from
    presence with a leave for each, without any command holding Redis long
    enough for another node's commands to time out: none runs 100 ms, and
    a node with a half-second command timeout never loses Redis."""
    require_redis()
    count = 100_000
    redis.cli("CONFIG", "SET", "latency-monitor-threshold", "1")
    watcher = PresenceWatcher(redis)
    bystander = Node(redis, "bystander")
    big = None
    try:
        started = time.monotonic()
        big = BigNode(redis, "big", count)
        wait_for(lambda: redis.cli("ZCARD", "heartbeat:names") == str(count),
                 timeout=60, what="the big node registered")
        figure("100k-connection node: registered after", time.monotonic() - started, "s")
        big.kill()
        killed = time.monotonic()
        wait_for(lambda: redis.cli("ZCARD", "heartbeat:names") == "0", timeout=60,
                 what="the big node's connections gone")
        figure("100k-connection node: gone from presence after its kill",
               time.monotonic() - killed, "s")
        watcher.wait(lambda events: len([e for e in events if e[0] == "L"]) == count,
                     timeout=30, what="every leave")
        assert {e[2] for e in watcher.leaves()} == {"d"}
        # Redis's own record of its longest command (from 1 ms up).
        latest = redis.lines("LATENCY", "LATEST")
        longest = int(latest[latest.index("command") + 3]) if "command" in latest else 0
        figure("100k-connection node: longest command Redis ran", longest, "ms")
        assert longest < 100
        assert "lost Redis" not in bystander.log()
        assert redis.lines("KEYS", "heartbeat:dead:*") == []
    finally:
        watcher.close()
        bystander.stop()
        if big is not None:
            big.stop()
