"""
The pieces of the proof that sessions lose nothing and repeat nothing:
the server application of L{sessionapp} as a process, and a fault proxy
cut at random points while numbered lines flow both ways.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from .processes import CLIENT, ENV, ROOT, Controlled, FaultProxy, wait_for

# Lines each way, their rate (a second, each way), and cuts.
COUNT = 10_000
RATE = 1000
CUTS = 20
# The server's timing, which the clients follow: a blackholed path is
# found within about interval + pong timeout.
TIMING = ["--interval", "0.2", "--timeout", "3", "--pong-timeout", "0.2"]
# Each kind of cut, a third of the time.
KINDS = ("reset", "blackhole", "blackhole then reset")


class SessionApp(Controlled):
    """
    tests/sessionapp.py: records what its application receives in
    C{record}, and sends each session C{s1} to C{sCOUNT}.

    @ivar linePort: where it serves lines.
    @ivar websocketPort: where it serves WebSocket (and /heartbeat.js).
    @ivar logPath: its log.
    """

    def log(self) -> str:
        return self.logPath.read_text(errors="replace")

    def __init__(self, record: Path, *options: str, name: str = "server",
                 prefix: Sequence[str] = ()) -> None:
        self.logPath = record.with_name(f"{name}.log")
        super().__init__(
            list(prefix)
            + [sys.executable, "tests/sessionapp.py", str(record), str(COUNT), str(RATE)]
            + TIMING
            + list(options),
            stderr=open(self.logPath, "wb"),
        )
        self.record = record
        words = self.readline().split()
        assert words[0] == "listening", words
        self.linePort, self.websocketPort = int(words[1]), int(words[2])


def lines_of(path: Path) -> List[bytes]:
    """
    The complete lines of a file (a last line still being written is not
    one yet).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return data.split(b"\n")[:-1]


def numbered(prefix: bytes) -> List[bytes]:
    return [prefix + b"%d" % n for n in range(1, COUNT + 1)]


def cut_at_random(
    proxy: FaultProxy,
    seed: int,
    resumed: Callable[[], int],
    extra: Optional[Callable[[int], None]] = None,
) -> dict:
    """
    Cut the path CUTS times, each at a random moment of a connection that
    carries the session (once the client has resumed it after the last
    cut), each of a random kind among L{KINDS}, a third of each.

    @param resumed: how many times the client has resumed its session.
    @param extra: called with the cut's number before each cut, to do
        something more then (freeze the server, say).
    @return: how many cuts of each kind were made.
    """
    rng = random.Random(seed)
    wait_for(lambda: proxy.accepted() > 0, what="the client's first connection")
    kinds = [KINDS[n % len(KINDS)] for n in range(CUTS)]
    rng.shuffle(kinds)
    made = dict.fromkeys(KINDS, 0)
    for number, kind in enumerate(kinds):
        time.sleep(rng.uniform(0.05, 0.3))
        if extra is not None:
            extra(number)
        before = resumed()
        if kind == "reset":
            proxy.command("reset")
        else:
            proxy.command("blackhole")
            if kind == "blackhole then reset":
                time.sleep(rng.uniform(0.05, 0.3))
                proxy.command("reset-blackholed")
        made[kind] += 1
        wait_for(lambda: resumed() > before, timeout=20, interval=0.02,
                 what=f"the session resumed after cut {number + 1} ({kind}, seed {seed})")
    return made



def quick_client(proxy: FaultProxy, directory: Path, stopping: Callable) -> tuple:
    """
    heartbeat-client through C{proxy}, quick to come back after a cut
    (0.05 to 0.2 s), its stdin a pipe; stopped after the test.

    @return: the process, and the files its stdout and stderr go to.
    """
    received, errors = directory / "stdout", directory / "stderr"
    client = subprocess.Popen(
        CLIENT + ["--initial-delay", "0.05", "--max-delay", "0.2", f"127.0.0.1:{proxy.port}"],
        cwd=ROOT, env=ENV, stdin=subprocess.PIPE,
        stdout=open(received, "wb"), stderr=open(errors, "wb"),
    )
    stopping(client)
    return client, received, errors


def count_in(path: Path, text: str) -> Callable[[], int]:
    """
    How many times C{text} is in the file at C{path}, as a function.
    """
    return lambda: path.read_text(errors="replace").count(text) if path.exists() else 0


def wait_until_complete(*paths: Path, timeout: float = 90.0) -> float:
    """
    Wait until every file holds COUNT lines or more, then a little longer,
    so that a line delivered twice would show.

    @return: the seconds waited.
    """
    started = time.monotonic()
    wait_for(lambda: all(len(lines_of(path)) >= COUNT for path in paths),
             timeout=timeout, interval=0.05, what="every line")
    elapsed = time.monotonic() - started
    time.sleep(0.5)
    return elapsed


def first_difference(got: List[bytes], expected: List[bytes]) -> str:
    """
    Where two sequences of lines part, for a failure message.
    """
    for index, (a, b) in enumerate(zip(got, expected)):
        if a != b:
            return f"at {index}: {got[max(0, index - 2):index + 3]} for {expected[index]}"
    return f"lengths {len(got)} and {len(expected)}"


def feed(stdin, count=COUNT, rate=RATE):
    """
    Type c1..cCOUNT into a process's standard input at about RATE lines a
    second, from a thread of its own (a write waits while the process
    does not read).
    """
    def run():
        batch = max(1, rate // 100)
        for start in range(1, count + 1, batch):
            stdin.write(b"".join(b"c%d\n" % n for n in range(start, min(start + batch, count + 1))))
            stdin.flush()
            time.sleep(0.01)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
