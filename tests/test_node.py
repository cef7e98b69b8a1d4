"""
heartbeat.js in Node, unchanged, against the real server: in Node 22 with
its own WebSocket, and in the machine's Node (20) with the ws package's.

C{.ci/run} installs Node 22 and ws into C{tests/node/node_modules} (npm ci);
elsewhere these tests are skipped without them, except when C{CI} is set.
"""

import json
import os
import select
import socket
import subprocess
import time

from .conftest import NODE
from .webserver import WebServer


class NodeSocket:
    """
    tests/node/client.mjs: a HeartbeatSocket whose events come back as
    JSON lines, with bounded waits.
    """

    def __init__(self, runtime, url, **options):
        argv, major = runtime
        self.process = subprocess.Popen(
            argv + [str(NODE / "client.mjs"), url, json.dumps(options)]
            + ([] if major else ["ws"]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.events = []
        self._buffer = b""
        [started] = self.until(lambda e: e["event"] == "started")
        if major:
            assert started["node"].startswith(f"v{major}."), started

    def command(self, line):
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def until(self, predicate, count=1, timeout=10.0):
        """Read events until C{count} of them match; return those."""
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while len(matching := [e for e in self.events if predicate(e)]) < count:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError(
                    f"not seen within {timeout}s; events: {self.events}; "
                    f"stderr: {self._stderr()}")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"node exited: {self._stderr()}")
            *lines, self._buffer = (self._buffer + chunk).split(b"\n")
            self.events += [json.loads(line) for line in lines]
        return matching[:count]

    def finish(self):
        """Close the socket and stdin; the process must then end by itself
        (no timer or socket of the HeartbeatSocket left), cleanly."""
        self.command("close")
        self.process.stdin.close()
        try:
            status = self.process.wait(5)
        except subprocess.TimeoutExpired:
            raise AssertionError("node kept running after close()")
        return status, self._stderr()

    def _stderr(self):
        try:
            self.process.wait(2)
        except subprocess.TimeoutExpired:
            return "(still running)"
        return self.process.stderr.read().decode()

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def kind(name):
    return lambda event: event["event"] == name


def test_talks_to_the_server_and_comes_back_after_it_dies(runtime):
    """Node gets the server's hello, its echo and a round trip; when the
    server is killed it reports the close (no CloseEvent needed) and is
    back by itself once the server returns."""
    server = WebServer("--interval", "0.5", "--timeout", "1.5",
                       ports=("port", "websocket-port"))
    url = f"ws://127.0.0.1:{server.ports['websocket-port']}/"
    node = NodeSocket(runtime, url, initialDelay=0.1, maxDelay=0.5, name="bot")
    try:
        [opened] = node.until(kind("open"))
        assert opened["hello"]["name"] == "bot"
        assert opened["hello"]["interval"] == 0.5
        node.command("send hello")
        [echo] = node.until(kind("message"))
        assert echo["data"] == "hello" and echo["rtt"] > 0
        server.kill()
        [lost] = node.until(kind("close"))
        assert lost["code"] == 1006 and lost["wasClean"] is False
        server = server.restart()
        node.until(kind("open"), count=2)
        node.command("send again")
        node.until(lambda e: e.get("data") == "again")
        assert node.finish() == (0, "")
    finally:
        node.kill()
        server.stop()


def test_a_refused_attempt_is_left_at_once(runtime):
    """Nothing listening: each attempt ends as soon as it is refused, and
    the next follows after the backoff, not after a timeout."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    node = NodeSocket(runtime, f"ws://127.0.0.1:{port}/",
                      initialDelay=0.05, maxDelay=0.1)
    try:
        closes = node.until(kind("close"), count=5, timeout=5)
        assert {(c["code"], c["wasClean"]) for c in closes} == {(1006, False)}
        assert closes[-1]["t"] < 3
        assert node.finish() == (0, "")
    finally:
        node.kill()


def test_a_hanging_attempt_is_given_up_after_the_connect_timeout(runtime):
    """A server that takes the connection and never answers: each attempt
    is given up after the connect timeout, without an unhandled error."""
    silent = socket.create_server(("127.0.0.1", 0), backlog=64)
    try:
        url = f"ws://127.0.0.1:{silent.getsockname()[1]}/"
        node = NodeSocket(runtime, url, connectTimeout=0.3, initialDelay=0.05,
                          maxDelay=0.1)
        try:
            closes = node.until(kind("close"), count=3, timeout=5)
            assert {(c["code"], c["reason"]) for c in closes} == {
                (4000, "connect timeout")}
            first = closes[0]["t"]
            assert 0.3 <= first < 1.5
            time.sleep(0.3)
            assert node.finish() == (0, "")
        finally:
            node.kill()
    finally:
        silent.close()
