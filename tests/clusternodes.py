"""
Nodes of a cluster on a real Redis, for the integration tests: twistd
servers as separate processes, named peers, and a watcher of the presence
events every node hears.
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from typing import List, Optional, Tuple

from .processes import Peer, Server, wait_for
from .redisserver import REDIS_CLI, RedisServer

# A node missed for a second is dead.  The test peers answer no pings, so
# connections are kept for 11 s of silence, unless a test asks for the
# short settings (pinged after 0.3 s, dropped after 0.9 s).
NODE_TIMEOUT = 1.0
INTERVAL, TIMEOUT = 0.3, 0.9
SHORT = ["--interval", "5", "--timeout", "11", "--node-timeout", str(NODE_TIMEOUT)]
SHORT_HEARTBEAT = ["--interval", str(INTERVAL), "--timeout", str(TIMEOUT)]


class Node(Server):
    """
    C{twistd heartbeat --redis} on 127.0.0.1, registered in Redis before
    the constructor returns.
    """

    def __init__(self, redis: RedisServer, nodeId: str, *options: str,
                 url: Optional[str] = None, register: bool = True, **kwargs):
        self.nodeId = nodeId
        super().__init__("--redis", url or redis.url, "--node-id", nodeId,
                         *SHORT, *options, **kwargs)
        if register:
            self.waitRegistered()

    def waitRegistered(self, times: int = 1) -> None:
        wait_for(lambda: self.log().count(f"node {self.nodeId} registered") >= times,
                 what=f"{self.nodeId} to register")

    def peer(self, name: Optional[str] = None) -> Peer:
        """
        A peer on this node, named when C{name} is given; it has entered
        presence when this returns (a name's handshake is answered first).
        """
        peer = self.connect()
        if name is not None:
            peer.send(b"heartbeat/1 name=%s\n" % name.encode())
            answer = peer.readline()
            assert answer.startswith(b"heartbeat/1 ") and b" name=%s" % name.encode() in answer, answer
        else:
            peer.send(b"ping hello\n")
            assert peer.readline() == b"pong hello"
        return peer


def names(redis: RedisServer) -> List[str]:
    return redis.lines("ZRANGE", "heartbeat:names", "0", "-1")


def nodes_of(redis: RedisServer, name: str) -> List[str]:
    """
    The node of each connection of C{name}, as Redis has them.
    """
    keys = redis.lines("HKEYS", f"heartbeat:name:{name}")
    return sorted(key.rpartition("#")[0] for key in keys)


class PresenceWatcher:
    """
    Every presence event published, as C{(kind, node, reason, name)}
    tuples, read from a C{redis-cli SUBSCRIBE} over the unix socket.
    """

    def __init__(self, redis: RedisServer) -> None:
        argv = [REDIS_CLI, "-s", redis.socket]
        if redis.password:
            argv += ["--no-auth-warning", "-a", redis.password]
        self.process = subprocess.Popen(
            argv + ["SUBSCRIBE", "heartbeat:0:presence"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self.events: List[Tuple[str, str, Optional[str], str]] = []
        self._buffer = b""
        # The subscription is confirmed before anything is published.
        wait_for(lambda: self._read() or b"subscribe" in self._seen, what="SUBSCRIBE")

    _seen = b""

    def _read(self) -> bool:
        fd = self.process.stdout.fileno()
        while select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            self._seen += chunk
            self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            words = line.decode().split(" ")
            if words[0] == "J" and len(words) == 3:
                self.events.append(("J", words[1], None, words[2]))
            elif words[0] == "L" and len(words) == 4:
                self.events.append(("L", words[1], words[2], words[3]))
        return False

    def wait(self, predicate, timeout: float = 10.0, what: str = "events"):
        def check():
            self._read()
            return predicate(self.events)

        return wait_for(check, timeout=timeout, what=what)

    def leaves(self, reason: Optional[str] = None):
        self._read()
        return [e for e in self.events if e[0] == "L" and reason in (None, e[2])]

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


def until_gone(redis: RedisServer, gone: List[str], timeout: float) -> float:
    """
    Seconds until none of C{gone} is present, polling every 10 ms.
    """
    started = time.monotonic()
    wait_for(lambda: not set(gone) & set(names(redis)), timeout=timeout,
             what=f"{gone} to leave presence")
    return time.monotonic() - started
