"""
The push API scenario: a backend's POST /send/{name}, timed to the line's
arrival at a connection of that name on the API's own node and on another
node of a cluster on Redis, side by side in one run; and how many sends a
second the API takes, with the server's CPU per send.
"""

from __future__ import annotations

import http.client
import os
import tempfile
import threading
import time
from contextlib import ExitStack
from typing import Dict, List

from ._procs import Server, free_port
from ._report import percentile, table
from .cluster import NODE_TIMEOUT, Redis, _Listener, _wait

TOKEN = "a bearer token for the benchmark"


class _Target(_Listener):
    """
    A connection named C{name}, recording when each numbered line arrives.
    """

    def __init__(self, port: int, name: str) -> None:
        super().__init__(port, b"heartbeat/1 name=%s" % name.encode())


class _Backend:
    """
    A backend's keep-alive HTTP connection to the API.
    """

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.headers = {"Authorization": f"Bearer {TOKEN}",
                        "Content-Type": "text/plain"}

    def send(self, name: str, line: bytes) -> int:
        self.connection.request("POST", f"/send/{name}", line, self.headers)
        response = self.connection.getresponse()
        response.read()
        return response.status


def _servers(stack: ExitStack, logdir: str):
    """
    Two nodes on one Redis, the first with the API.
    """
    redis = Redis()
    stack.callback(redis.stop)
    token = os.path.join(tempfile.mkdtemp(prefix="heartbeat-bench-api-"), "token")
    with open(token, "w") as f:
        f.write(TOKEN)
    apiPort = free_port()
    servers = []
    for n in (1, 2):
        options = ["--redis", redis.url, "--node-id", f"bench{n}",
                   "--node-timeout", str(NODE_TIMEOUT)]
        if n == 1:
            options += ["--api-port", f"tcp:{apiPort}:interface=127.0.0.1",
                        "--api-token-file", token]
        server = Server("heartbeat", free_port(), logdir=logdir, options=options)
        server.start()
        stack.callback(server.stop)
        servers.append(server)
    _wait(lambda: redis.cli("ZCARD", "heartbeat:nodes") == "2", 20,
          "both nodes registered")
    return servers, redis, apiPort


def latency(count: int, rate: float, seconds: float, backends: int, logdir: str) -> str:
    """
    C{count} lines sent through the API at C{rate} a second to a name on
    the API's node and to one on the other node, timed from the POST to
    the line's arrival; then C{backends} backends sending as fast as they
    can for C{seconds}, to each.
    """
    rows = []
    with ExitStack() as stack:
        servers, redis, apiPort = _servers(stack, logdir)
        targets = {"same node": _Target(servers[0].port, "near"),
                   "other node": _Target(servers[1].port, "far")}
        _wait(lambda: redis.present() == 2, 10, "both names present")
        for where, name in (("same node", "near"), ("other node", "far")):
            listener = targets[where]
            backend = _Backend(apiPort)
            sent: Dict[int, float] = {}
            for n in range(count):
                sent[n] = time.monotonic()
                assert backend.send(name, b"t %d" % n) == 200
                time.sleep(max(0.0, sent[n] + 1.0 / rate - time.monotonic()))
            _wait(lambda: len(listener.arrivals) >= count, 10, "every line")
            delays = [listener.arrivals[n] - sent[n] for n in sent]
            listener.arrivals.clear()
            sends, cpu = _flood(apiPort, name, seconds, backends, servers[0])
            _wait(lambda: len(listener.arrivals) >= sends, 10, "every flooded line")
            rows.append([where, f"{len(delays)}/{count}",
                         percentile(delays, 0.5) * 1000, percentile(delays, 0.99) * 1000,
                         sends / seconds, sends / cpu if cpu else float("nan"),
                         f"{len(listener.arrivals)}/{sends}"])
            listener.arrivals.clear()
    return table(
        f"Push API: POST /send/NAME to a connection of the API's node and of "
        f"another node on Redis; {count} lines at {rate:g}/s timed from the POST "
        f"to the line's arrival, then {backends} backends sending as fast as "
        f"they can for {seconds:g} s",
        ["to a name on", "received", "p50 ms", "p99 ms", "sends/s",
         "sends/API CPU-s", "flood received"],
        rows,
    )


def _flood(port: int, name: str, seconds: float, backends: int, server: Server):
    """
    C{backends} keep-alive backends sending to C{name} for C{seconds}:
    how many sends were answered 200, and the API's node's CPU seconds.
    """
    counts: List[int] = [0] * backends
    stop = time.monotonic() + seconds
    # Numbered past anything the latency run sent; the listener counts them.
    base = 10_000_000

    def run(index: int) -> None:
        backend = _Backend(port)
        n = 0
        while time.monotonic() < stop:
            if backend.send(name, b"t %d" % (base * (index + 1) + n)) == 200:
                n += 1
        counts[index] = n

    threads = [threading.Thread(target=run, args=(i,)) for i in range(backends)]
    cpu = server.cpu()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts), server.cpu() - cpu
