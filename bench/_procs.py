"""
The processes of a scenario: a server under test and the load generators.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

from ._report import cpu_seconds, rss_bytes
from .workerman import configured

# Connections per generator process: well under the 20,000 open files a
# process may hold, with room for the rest of the process.
PER_GENERATOR = 9000
# Connections per source address: under the 28,000 ephemeral ports.
PER_SOURCE = 5000
RTT_SAMPLES = 20000

_TWISTD = "from twisted.scripts.twistd import run; run()"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """
    One server under test: a baseline (C{floor}, C{reset}, C{sweep},
    C{wheel}), the real C{heartbeat} twistd plugin, or Workerman's
    heartbeat example (see L{bench.workerman}), on 127.0.0.1.

    @ivar options: more command-line options, for C{heartbeat} only.
    @ivar backlog: the listen backlog set in C{heartbeat}'s C{--port}, or
        C{None} for the server's own default, as a user gets it.
    """

    def __init__(
        self,
        kind: str,
        port: int,
        interval: float = 25.0,
        timeout: float = 55.0,
        workers: int = 1,
        logdir: str = "/tmp",
        options: Sequence[str] = (),
        backlog: Optional[int] = None,
    ) -> None:
        self.kind = kind
        self.port = port
        self.interval = interval
        self.timeout = timeout
        self.workers = workers
        self.logdir = logdir
        self.options = list(options)
        self.backlog = backlog
        self.process: Optional[subprocess.Popen] = None

    def command(self) -> List[str]:
        # The sweep's period, as in Workerman's example: 10 s for 55 s.
        sweep = self.timeout * 10 / 55
        if self.kind == "workerman":
            return configured().command(self.port, self.timeout, sweep, self.logdir)
        if self.kind != "heartbeat":
            return [sys.executable, "-m", "bench.serve", self.kind,
                    f"tcp:{self.port}:interface=127.0.0.1:backlog=4096",
                    "--interval", str(self.interval),
                    "--timeout", str(self.timeout),
                    "--sweep", str(sweep)]
        endpoint = f"tcp:{self.port}:interface=127.0.0.1"
        if self.backlog is not None:
            endpoint += f":backlog={self.backlog}"
        command = [sys.executable, "-c", _TWISTD, "-n", "--pidfile=",
                   "-l", os.path.join(self.logdir, f"heartbeat-{self.port}.log"),
                   "heartbeat", "--port", endpoint,
                   "--interval", str(self.interval),
                   "--timeout", str(self.timeout),
                   "--max-connections", "20000"]
        if self.workers != 1:
            command += ["--workers", str(self.workers)]
        return command + self.options

    def start(self, wait: float = 20.0) -> float:
        """
        Start the server and wait until it accepts connections.

        @return: the C{time.monotonic()} when it first accepted one.
        """
        log = open(os.path.join(self.logdir, f"{self.kind}-{self.port}.err"), "ab")
        self.process = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited at start")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
            except OSError:
                time.sleep(0.01)
            else:
                ready = time.monotonic()
                self._waitForWorkers(deadline)
                return ready
        raise RuntimeError(f"{self.kind} server not listening after {wait}s")

    def _waitForWorkers(self, deadline: float) -> None:
        while len(self.pids()) < self.workers + (self.workers > 1):
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start")
            time.sleep(0.05)

    def pids(self) -> List[int]:
        """
        The server's process and, with workers, every descendant.
        """
        found, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            try:
                with open(f"/proc/{pid}/task/{pid}/children") as f:
                    todo.extend(int(child) for child in f.read().split())
            except OSError:
                pass
        return found

    def cpu(self) -> float:
        return sum(_quietly(cpu_seconds, pid) for pid in self.pids())

    def rss(self) -> int:
        return sum(_quietly(rss_bytes, pid) for pid in self.pids())

    def kill(self) -> None:
        children = _identified(self.pids()[1:])
        self.process.kill()
        self.process.wait()
        _kill_left(children)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        children = _identified(self.pids()[1:])
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        _kill_left(children)


def run_for(server: "Server", load: "Load", seconds: float) -> Tuple[Dict, float, float]:
    """
    Let C{load} go on C{server} for C{seconds}, half a second after its
    connections are made, then stop it.

    @return: its summary, the server's CPU seconds over that time, and
        the wall seconds it took.
    """
    time.sleep(0.5)
    load.send("go")
    cpu, start = server.cpu(), time.monotonic()
    time.sleep(seconds)
    cpu, wall = server.cpu() - cpu, time.monotonic() - start
    return load.stop(), cpu, wall


def _started(pid: int) -> Optional[str]:
    """
    When process C{pid} started (in clock ticks since boot), or C{None}.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


def _identified(pids: Sequence[int]) -> List[tuple]:
    return [(pid, _started(pid)) for pid in pids]


def _kill_left(children: Sequence[tuple]) -> None:
    """
    Kill what is left of a server's children (a worker whose parent was
    killed under it), each only while it is the same process.
    """
    for pid, started in children:
        if started is not None and _started(pid) == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _quietly(measure, pid: int):
    try:
        return measure(pid)
    except OSError:
        return 0


class Load:
    """
    Generator processes sharing C{connections} to one server port.

    @param module: the generator (L{bench.loadgen}, or
        L{bench.sessionload} for sessions).
    """

    def __init__(self, port: int, connections: int, mode: str,
                 module: str = "bench.loadgen", **options) -> None:
        processes = max(1, math.ceil(connections / PER_GENERATOR))
        shares = [connections // processes] * processes
        shares[0] += connections - sum(shares)
        self.processes: List[subprocess.Popen] = []
        source = 2
        for share in shares:
            count = max(1, math.ceil(share / PER_SOURCE))
            sources = ",".join(f"127.0.0.{source + n}" for n in range(count))
            source += count
            command = [sys.executable, "-m", module,
                       "--port", str(port), "--connections", str(share),
                       "--sources", sources, "--mode", mode]
            for name, value in options.items():
                flag = f"--{name.replace('_', '-')}"
                if value is True:
                    command.append(flag)
                elif value is not False:
                    command += [flag, str(value)]
            self.processes.append(subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                text=True, bufsize=1,
            ))

    def _next(self, process: subprocess.Popen, name: str) -> Dict:
        """
        Read C{process}'s events until the one called C{name}.
        """
        for line in process.stdout:
            event = json.loads(line)
            if event["event"] == name:
                return event
        raise RuntimeError(f"a load generator died before its {name!r} event")

    def waitConnected(self) -> None:
        """
        Wait until every generator reports all its connections open.
        """
        for process in self.processes:
            self._next(process, "connected")

    def send(self, command: str) -> None:
        for process in self.processes:
            process.stdin.write(command + "\n")

    def stop(self) -> Dict:
        """
        Stop every generator; return their summaries added together.
        """
        self.send("stop")
        total: Dict = {}
        for process in self.processes:
            event = self._next(process, "summary")
            process.wait()
            for key, value in event.items():
                if isinstance(value, list):
                    total.setdefault(key, []).extend(value)
                elif isinstance(value, (int, float)):
                    total[key] = total.get(key, 0) + value
        rtts = total.get("rtts", [])
        if len(rtts) > RTT_SAMPLES:
            total["rtts"] = random.sample(rtts, RTT_SAMPLES)
        return total

    def kill(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
