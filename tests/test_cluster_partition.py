"""
A node cut off from Redis by a real network fault (a veth link set down:
no reset, no close), longer than its node timeout, then mended.
"""

import socket
import time

from .clusternodes import NODE_TIMEOUT, SHORT, Node, PresenceWatcher, names, until_gone
from .netns import link  # noqa: F401  (a fixture)
from .processes import TWISTD, LoggedProcess, wait_for
from .redisserver import RedisServer, require_redis


class UnixPeer:
    """A named peer of a node that listens on a unix socket."""

    def __init__(self, path, name):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(5)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")
        self.sock.sendall(b"heartbeat/1 name=%s\n" % name.encode())
        assert b"name=%s" % name.encode() in self.file.readline()

    def ask(self, line):
        self.sock.sendall(line + b"\n")
        return self.file.readline().rstrip(b"\n")

    def close(self):
        self.sock.close()


def test_a_node_cut_off_from_redis_is_taken_for_dead_and_comes_back(link, tmp_path):  # noqa: F811
    """Cut a node off from Redis past its node timeout: it keeps serving its
    own clients while the others remove its connections (node died); when
    the path is mended it registers again and they are back."""
    require_redis()
    redis = RedisServer("--protected-mode", "no", bind=link.addressB,
                        wrapper=link.command(link.b, []))
    cut = other = watcher = None
    try:
        watcher = PresenceWatcher(redis)
        path = str(tmp_path / "cut.sock")
        cut = LoggedProcess(link.command(link.a, TWISTD + [
            "-n", "--pidfile=", "--logfile=-", "heartbeat", "--port", f"unix:{path}",
            "--redis", redis.url, "--node-id", "cut", *SHORT]))
        wait_for(lambda: "node cut registered" in cut.log(), what="the cut node to register")
        # The other node reaches Redis through its unix socket, which no
        # namespace stops.
        other = Node(redis, "other", url=f"unix://{redis.socket}?db=0")
        alone = UnixPeer(path, "alone")
        wait_for(lambda: "alone" in names(redis), what="alone in presence")
        link.down()
        cutAt = time.monotonic()
        until_gone(redis, ["alone"], timeout=NODE_TIMEOUT + 5)
        watcher.wait(lambda events: ("L", "cut", "d", "alone") in events)
        assert time.monotonic() - cutAt >= NODE_TIMEOUT * 0.9
        # Cut off, the node still serves its own client.
        assert alone.ask(b"ping still") == b"pong still"
        assert alone.ask(b"echo") == b"echo"
        wait_for(lambda: "lost Redis" in cut.log(), what="the cut node to notice")
        link.up()
        wait_for(lambda: "alone" in names(redis), timeout=10, what="alone back")
        watcher.wait(lambda events: events.count(("J", "cut", None, "alone")) == 2)
        assert sorted(redis.lines("ZRANGE", "heartbeat:nodes", "0", "-1")) == ["cut", "other"]
        alone.close()
    finally:
        for process in (cut, other):
            if process is not None:
                process.stop()
        if watcher is not None:
            watcher.close()
        redis.close()
    assert "Traceback" not in cut.log(), cut.log()
