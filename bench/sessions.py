"""
What sessions cost: application-line throughput with and without them,
the memory of an idle session against a connection without one, and the
time to replay the lines kept for a client that comes back.  Both sides
of each comparison run against the same server, in the same run.
"""

from __future__ import annotations

import socket
import time
from typing import List

from ._procs import run_for
from ._report import median, ratio, table
from .scenarios import loading, serving

GENERATOR = "bench.sessionload"


def throughput(connections: int, seconds: float, rounds: int, logdir: str) -> str:
    """
    Every connection keeps one application line in flight (a new one for
    each echo), with and without a session; interleaved rounds, medians.
    """
    samples: dict = {False: [], True: []}
    for _ in range(rounds):
        for resume in (False, True):
            with serving("heartbeat", logdir) as server:
                with loading(server.port, connections, "lines", module=GENERATOR,
                             resume=resume) as load:
                    summary, cpu, wall = run_for(server, load, seconds)
            samples[resume].append((
                summary["lines"] / wall, cpu / wall, summary["lines"] / cpu,
                summary["cpu"] / cpu,
            ))
    rows = []
    base = None
    for resume, values in samples.items():
        rate, load, perCpu, generator = [median([v[i] for v in values]) for i in range(4)]
        base = base or perCpu
        rows.append(["session" if resume else "no session", rate, load, perCpu,
                     ratio(perCpu, base), generator])
    return table(
        f"Session throughput: {connections:,} connections, one application line "
        f"in flight each (echoed), {seconds:g} s, median of {rounds}",
        ["connections", "lines/s", "server CPU s/s", "lines/CPU-s", "x no session",
         "loadgen CPU/server CPU"],
        rows,
    )


# Seconds over which the idle connections exchange their one line.
SPREAD = 3.0


def hold(size: int, seconds: float, rounds: int, logdir: str) -> str:
    """
    Idle connections that have each sent one line and read its echo (each
    at its own instant within L{SPREAD} seconds), with every line
    acknowledged, with and without a session: the server's memory and CPU
    per connection.
    """
    samples: dict = {False: [], True: []}
    for _ in range(rounds):
        for resume in (False, True):
            with serving("heartbeat", logdir) as server:
                time.sleep(0.5)
                before = server.rss()
                with loading(server.port, size, "hold", module=GENERATOR,
                             resume=resume, spread=SPREAD) as load:
                    # Past the acknowledgements of the one line each way.
                    time.sleep(SPREAD + 1.0)
                    load.send("go")
                    cpu = server.cpu()
                    time.sleep(seconds)
                    cpu = (server.cpu() - cpu) / seconds
                    perConnection = (server.rss() - before) / size
                    summary = load.stop()
            samples[resume].append((perConnection, cpu, summary["open"], summary["errors"]))
    rows = []
    base = None
    for resume, values in samples.items():
        perConnection, cpu, opened, errors = [median([v[i] for v in values]) for i in range(4)]
        base = base or (perConnection, cpu)
        rows.append([f"{size:,}", "session" if resume else "no session", int(opened),
                     perConnection, ratio(perConnection, base[0]), cpu * 1000,
                     ratio(cpu, base[1]), int(errors)])
    return table(
        f"Idle sessions: connections that each exchanged one line (within "
        f"{SPREAD:g} s), everything acknowledged, {seconds:g} s measured, "
        f"median of {rounds}",
        ["conns", "connections", "open", "RSS B/conn", "x no session", "CPU ms/s",
         "x no session", "errors"],
        rows,
    )


def replay(count: int, rounds: int, logdir: str) -> str:
    """
    A client away while another broadcasts C{count} lines comes back: the
    time from its resuming handshake to the last of those lines, which its
    session kept, and, beside it, the same lines to a client that never
    left.
    """
    resumed: List[float] = []
    live: List[float] = []
    with serving("heartbeat", logdir, options=["--broadcast"]) as server:
        for _ in range(rounds):
            away = _Peer(server.port, b"heartbeat/1 resume")
            sid = away.answer.split(b"session=")[1].split()[0]
            away.close()
            present = _Peer(server.port, b"heartbeat/1")
            sender = _Peer(server.port, b"heartbeat/1")
            time.sleep(0.2)
            started = time.perf_counter()
            sender.send(b"".join(b"line %d\n" % n for n in range(count)))
            present.read(count)
            live.append(time.perf_counter() - started)
            time.sleep(0.2)
            started = time.perf_counter()
            back = _Peer(server.port, b"heartbeat/1 resume=%s received=0" % sid)
            back.read(count)
            resumed.append(time.perf_counter() - started)
            back.send(b"bye\n")
            for peer in (back, present, sender):
                peer.close()
    return table(
        f"Replay: {count:,} lines kept for a client that was away, from its "
        f"handshake to the last of them; median of {rounds}",
        ["lines", "replayed in ms", "the same lines live, ms"],
        [[f"{count:,}", median(resumed) * 1000, median(live) * 1000]],
    )


class _Peer:
    """
    A blocking line connection for L{replay}: its handshake and the answer.
    """

    def __init__(self, port: int, handshake: bytes) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.sock.sendall(handshake + b"\n")
        self.answer = self.line()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise RuntimeError("the server closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    def read(self, count: int) -> None:
        """
        Read C{count} application lines (heartbeats and counts skipped).
        """
        while count:
            line = self.line()
            if not line.startswith((b"ping", b"pong", b"ack ")):
                count -= 1

    def close(self) -> None:
        self.sock.close()
