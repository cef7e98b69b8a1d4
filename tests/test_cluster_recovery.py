"""
What the cluster must not do when a node holds a hundred thousand
connections: against a real redis-server, with nodes as processes.
"""

import sys
import time

from .clusternodes import NODE_TIMEOUT, Node, PresenceWatcher
from .processes import ROOT, LoggedProcess, wait_for
from .redisserver import require_redis


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
