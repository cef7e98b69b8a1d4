"""
The cluster scenario: two nodes on one Redis against two standalone nodes,
side by side, and what the cluster adds: Redis commands, cross-node
latency, convergence after a node is killed, and a reconnect storm.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from typing import Dict, Iterator, List, Optional, Sequence

from ._procs import Load, Server, free_port
from ._report import median, percentile, ratio, table

REDIS_SERVER = shutil.which("redis-server") or "redis-server"
REDIS_CLI = shutil.which("redis-cli") or "redis-cli"
NODE_TIMEOUT = 5.0


class Redis:
    """
    A redis-server of the bench's own, empty, on a unix socket and a free
    loopback port.
    """

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="heartbeat-bench-redis-")
        self.socket = os.path.join(self.directory, "redis.sock")
        self.port = free_port()
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
             "--unixsocket", self.socket, "--save", "", "--appendonly", "no",
             "--dir", self.directory],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while self.cli("PING") != "PONG":
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def cli(self, *command: str) -> str:
        result = subprocess.run([REDIS_CLI, "-s", self.socket, *command],
                                capture_output=True, text=True)
        return result.stdout.strip()

    def commands(self) -> int:
        """
        Commands Redis has processed since it started (a script counts
        once, with the commands it runs inside).
        """
        for line in self.cli("INFO", "stats").splitlines():
            if line.startswith("total_commands_processed:"):
                return int(line.split(":")[1])
        return 0

    def present(self) -> int:
        return int(self.cli("ZCARD", "heartbeat:names") or 0)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextmanager
def nodes(clustered: bool, logdir: str, **options) -> Iterator[tuple]:
    """
    Two nodes: on one Redis when C{clustered}, else standalone.
    """
    with ExitStack() as stack:
        redis = Redis() if clustered else None
        if redis is not None:
            stack.callback(redis.stop)
        servers = []
        common = list(options.pop("extra", []))
        for n in (1, 2):
            extra = list(common)
            if redis is not None:
                extra += ["--redis", redis.url, "--node-id", f"bench{n}",
                          "--node-timeout", str(NODE_TIMEOUT)]
            server = Server("heartbeat", free_port(), logdir=logdir, options=extra,
                            **options)
            server.start()
            stack.callback(server.stop)
            servers.append(server)
        if redis is not None:
            _wait(lambda: redis.cli("ZCARD", "heartbeat:nodes") == "2", 20,
                  "both nodes registered")
        yield servers, redis


def _wait(predicate, seconds: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > seconds:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - started


def _hold(clustered: bool, size: int, seconds: float, pingInterval: float,
          logdir: str) -> Dict[str, float]:
    with nodes(clustered, logdir) as (servers, redis):
        time.sleep(0.5)
        before = sum(server.rss() for server in servers)
        loads = [Load(server.port, size // 2, "hold", ping_interval=pingInterval)
                 for server in servers]
        try:
            for load in loads:
                load.waitConnected()
            # Unnamed connections enter presence after the handshake wait.
            time.sleep(3.0)
            if redis is not None:
                _wait(lambda: redis.present() == size, 30, "all present")
            for load in loads:
                load.send("go")
            cpu = sum(server.cpu() for server in servers)
            commands = redis.commands() if redis else 0
            time.sleep(seconds)
            cpu = (sum(server.cpu() for server in servers) - cpu) / seconds
            commands = ((redis.commands() - commands) / seconds) if redis else None
            rss = (sum(server.rss() for server in servers) - before) / size
            summaries = [load.stop() for load in loads]
        finally:
            for load in loads:
                load.kill()
    return {
        "rss": rss, "cpu": cpu, "commands": commands,
        "open": sum(s["open"] for s in summaries),
        "errors": sum(s["errors"] for s in summaries),
    }


def hold(size: int, seconds: float, rounds: int, logdir: str,
         pingIntervals: Sequence[float] = (25.0, 5.0)) -> str:
    """
    C{size} connections split over two nodes, standalone and on Redis,
    interleaved C{rounds} times; the clustered run again at a faster ping
    rate, to show that Redis's load does not follow it.
    """
    rows = []
    for pingInterval in pingIntervals:
        samples: Dict[bool, List[dict]] = {False: [], True: []}
        for _ in range(rounds):
            for clustered in (False, True):
                samples[clustered].append(
                    _hold(clustered, size, seconds, pingInterval, logdir))
        floor = None
        for clustered in (False, True):
            values = samples[clustered]
            rss = median([v["rss"] for v in values])
            cpu = median([v["cpu"] for v in values])
            commands = (median([v["commands"] for v in values])
                        if clustered else None)
            floor = floor or (rss, cpu)
            rows.append([
                f"{size:,}", f"{pingInterval:g} s",
                "2 nodes on Redis" if clustered else "2 standalone",
                int(median([v["open"] for v in values])), rss,
                ratio(rss, floor[0]), cpu * 1000, ratio(cpu, floor[1]),
                commands, int(median([v["errors"] for v in values])),
            ])
    return table(
        f"Cluster hold: connections over two nodes, {seconds:g} s measured, "
        f"median of {rounds}",
        ["conns", "pings every", "servers", "open", "RSS B/conn", "x standalone",
         "CPU ms/s", "x standalone", "Redis cmds/s", "errors"],
        rows,
    )


class _Listener:
    """
    A raw line peer that records when each numbered line arrives.
    """

    def __init__(self, port: int, handshake: bytes = b"heartbeat/1") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        # A handshake settles it at once: else it would hear no broadcast
        # for the two seconds of the handshake wait.
        self.sock.sendall(handshake + b"\n")
        self.arrivals: Dict[int, float] = {}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            now = time.monotonic()
            *lines, buffer = (buffer + data).split(b"\n")
            for line in lines:
                if line.startswith(b"t "):
                    self.arrivals[int(line.split()[1])] = now
                elif line.startswith(b"ping"):
                    self.sock.sendall(b"pong" + line[4:] + b"\n")


def latency(count: int, rate: float, logdir: str) -> str:
    """
    Lines broadcast on one node, timed to their arrival on the other node
    (and on the sender's own, for comparison); C{rate} lines a second.
    """
    with nodes(True, logdir, extra=["--broadcast"]) as (servers, redis):
        sender = socket.create_connection(("127.0.0.1", servers[0].port))
        local = _Listener(servers[0].port)
        remote = _Listener(servers[1].port)
        time.sleep(0.5)
        sent: Dict[int, float] = {}
        for n in range(count):
            sent[n] = time.monotonic()
            sender.sendall(b"t %d\n" % n)
            time.sleep(1.0 / rate)
        _wait(lambda: len(remote.arrivals) == count, 10, "every line")
        rows = []
        for where, listener in (("same node", local), ("other node", remote)):
            delays = [listener.arrivals[n] - sent[n] for n in sent
                      if n in listener.arrivals]
            ordered = [n for n, _ in sorted(listener.arrivals.items(),
                                           key=lambda item: item[1])]
            rows.append([where, f"{len(delays)}/{count}",
                         percentile(delays, 0.5) * 1000,
                         percentile(delays, 0.99) * 1000,
                         "yes" if ordered == sorted(ordered) else "NO"])
        sender.close()
    return table(
        f"Cross-node broadcast: {count} lines at {rate:g}/s from a client of "
        "node 1, timed to a client of each node",
        ["to a client of", "received", "p50 ms", "p99 ms", "in order"],
        rows,
    )


def convergence(size: int, logdir: str) -> str:
    """
    Node 2, holding half of C{size} connections, is killed (SIGKILL): how
    long until its connections have left presence?
    """
    rows = []
    with nodes(True, logdir) as (servers, redis):
        loads = [Load(server.port, size // 2, "hold") for server in servers]
        try:
            for load in loads:
                load.waitConnected()
            _wait(lambda: redis.present() == size, 30, "all present")
            killed = time.monotonic()
            servers[1].kill()
            gone = _wait(lambda: redis.present() == size - size // 2,
                         NODE_TIMEOUT + 30, "the dead node's connections to leave")
            rows.append([f"{size // 2:,}", f"{NODE_TIMEOUT:g} s", gone,
                         time.monotonic() - killed - NODE_TIMEOUT])
        finally:
            for load in loads:
                load.kill()
    return table(
        "Presence after a node is killed (SIGKILL)",
        ["its connections", "node timeout", "all gone after s", "beyond the timeout s"],
        rows,
    )


def storm(clients: int, logdir: str) -> str:
    """
    Both nodes killed and started again under C{clients} library-backoff
    clients: the peak of Redis commands, and the time until every client
    is back in presence.
    """
    with nodes(True, logdir) as (servers, redis):
        loads = [Load(server.port, clients // 2, "reconnect") for server in servers]
        try:
            for load in loads:
                load.waitConnected()
            _wait(lambda: redis.present() == clients, 30, "all present")
            # The records of the nodes' previous lives stay until they are
            # taken for dead: only the new lives' count.
            before = [redis.cli("HGET", f"heartbeat:node:bench{n}", "incarnation")
                      for n in (1, 2)]
            for server in servers:
                server.kill()
            restarted = time.monotonic()
            for server in servers:
                server.start()
            samples: List[tuple] = []
            deadline = time.monotonic() + 60
            back: Optional[float] = None
            while time.monotonic() < deadline:
                samples.append((time.monotonic(), redis.commands()))
                conns = sum(
                    int(redis.cli("HLEN", f"heartbeat:conns:bench{n}") or 0)
                    for n, old in zip((1, 2), before)
                    if redis.cli("HGET", f"heartbeat:node:bench{n}", "incarnation") != old
                )
                if conns == clients and back is None:
                    back = time.monotonic() - restarted
                    break
                time.sleep(0.1)
            peak = max((c2 - c1) / (t2 - t1) for (t1, c1), (t2, c2)
                       in zip(samples, samples[1:])) if len(samples) > 1 else 0
        finally:
            for load in loads:
                load.kill()
    return table(
        f"Reconnect storm: {clients:,} clients (library backoff) into 2 nodes "
        "killed and started again",
        ["clients", "all present after s", "peak Redis cmds/s"],
        [[f"{clients:,}", back, peak]],
    )
