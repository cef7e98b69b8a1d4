"""
Timer designs side by side on many connections, with no sockets in the
way, so only the timers differ:

- floor: no timer at all;
- reset: one L{DelayedCall} per connection, C{reset()} per message;
- sweep: one L{LoopingCall} per factory visiting every connection;
- wheel: the library's L{HeartbeatProtocol} on its shared timing wheel.

Each design runs in a fresh process, on the real reactor: memory per
connection (tracemalloc), CPU per message, CPU while holding the
connections with traffic, CPU per timer event once they fall silent, and
how late each silent connection is aborted.  Times are scaled down (1 s
interval, 2.2 s timeout, 0.4 s sweep: 25 s / 55 s / 10 s divided by 25)
so a run takes seconds; lateness is also given as a share of the timeout.

    python -m bench.timers [--connections 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
import tracemalloc
from typing import Dict, List

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionAborted
from twisted.python.failure import Failure

from ._baselines import DESIGNS, BaselineFactory
from ._report import median, percentile, ratio, table

# Every time is a multiple of the interval: 25 s / 55 s / 10 s scaled.
TIMEOUT = 2.2
SWEEP = 0.4
# Each connection receives a line this often while the traffic lasts.
MESSAGE_PERIOD = 0.5
BUSY = 4.0
FEED_TICK = 0.01


class _NullTransport:
    """
    Just enough of a TCP transport: counts pings, records its abort time.
    """

    disconnecting = False

    def __init__(self, number: int, run: "_Run") -> None:
        self.number = number
        self.run = run
        self.protocol = None

    def write(self, data: bytes) -> None:
        if data[:4] == b"ping":
            self.run.pings += 1

    def writeSequence(self, data) -> None:
        self.write(b"".join(data))

    def abortConnection(self) -> None:
        if self.disconnecting:
            return
        self.disconnecting = True
        self.run.closed[self.number] = self.run.clock.seconds()
        self.protocol.connectionLost(Failure(ConnectionAborted()))

    loseConnection = abortConnection

    def getPeer(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.2", 10000 + self.number)

    getHost = getPeer


class _Run:
    """
    One design's connections on the real reactor.
    """

    def __init__(self, design: str, clock, interval: float) -> None:
        self.clock = clock
        self.factory = BaselineFactory(
            DESIGNS[design], interval, TIMEOUT * interval, clock
        )
        self.factory.sweepPeriod = SWEEP * interval
        self.pings = 0
        self.closed: Dict[int, float] = {}

    def connect(self, count: int, start: int = 0) -> List:
        protocols = []
        for number in range(start, start + count):
            protocol = self.factory.buildProtocol(None)
            transport = _NullTransport(number, self)
            transport.protocol = protocol
            protocol.makeConnection(transport)
            protocol.dataReceived(b"ping 1\n")
            protocols.append(protocol)
        return protocols


def measure(design: str, count: int, interval: float = 1.0) -> dict:
    """
    Every figure for one design, in this (fresh) process.
    """
    from twisted.internet import reactor
    from twisted.internet.task import LoopingCall

    run = _Run(design, reactor, interval)
    timeout = TIMEOUT * interval
    run.factory.doStart()
    result: dict = {"design": design}

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    protocols = run.connect(count)
    gc.collect()
    result["traced"] = (tracemalloc.get_traced_memory()[0] - before) / count
    tracemalloc.stop()

    rounds = 5
    start = time.process_time()
    for _ in range(rounds):
        for protocol in protocols:
            protocol.dataReceived(b"ping 7\n")
    result["perMessage"] = (time.process_time() - start) / (rounds * count)

    fed = [reactor.seconds()] * count
    perTick = max(1, round(count * FEED_TICK / (MESSAGE_PERIOD * interval)))
    state = {"next": 0, "gap": 0.0, "last": reactor.seconds()}

    def feed() -> None:
        now = reactor.seconds()
        state["gap"] = max(state["gap"], now - state["last"])
        state["last"] = now
        first = state["next"]
        for number in range(first, first + perTick):
            number %= count
            protocols[number].dataReceived(b"ping 7\n")
            fed[number] = now
        state["next"] = (first + perTick) % count

    feeder = LoopingCall(feed)
    feeder.clock = reactor

    def busy() -> None:
        state["cpu"] = time.process_time()
        feeder.start(FEED_TICK)
        reactor.callLater(BUSY * interval, silent)

    def silent() -> None:
        feeder.stop()
        now = time.process_time()
        result["busyCpu"] = (now - state["cpu"]) / (BUSY * interval)
        result["stall"] = state["gap"] - FEED_TICK
        state["cpu"] = now
        run.pings = 0
        reactor.callLater((TIMEOUT + SWEEP + 0.5) * interval, done)

    def done() -> None:
        spent = time.process_time() - state["cpu"]
        events = run.pings + len(run.closed)
        result["perEvent"] = spent / events if events else None
        late = [run.closed[n] - fed[n] - timeout for n in run.closed]
        result["latePercent"] = 100 * percentile(late, 0.99) / timeout
        result["closed"] = len(late)
        result["lateP50"] = percentile(late, 0.50)
        result["lateP99"] = percentile(late, 0.99)
        result["lateMax"] = max(late) if late else None
        reactor.stop()

    reactor.callWhenRunning(busy)
    reactor.run()
    return result


def compare(
    count: int, repeat: int, interval: float = 1.0, out=sys.stdout
) -> List[dict]:
    """
    Run every design C{repeat} times, interleaved, and print the medians.
    """
    runs: Dict[str, List[dict]] = {design: [] for design in DESIGNS}
    for _ in range(repeat):
        for design in DESIGNS:
            child = subprocess.run(
                [sys.executable, "-m", "bench.timers", "--child", design,
                 "--connections", str(count), "--interval", str(interval)],
                check=True, capture_output=True, text=True,
            )
            runs[design].append(json.loads(child.stdout))
    results = []
    for design, samples in runs.items():
        summary = {"design": design}
        for key in samples[0]:
            if key != "design":
                values = [s[key] for s in samples if s[key] is not None]
                summary[key] = median(values) if values else None
        results.append(summary)
    out.write(render(results, count, repeat, interval))
    return results


def render(results: List[dict], count: int, repeat: int, interval: float) -> str:
    floor = results[0]
    rows = []
    for r in results:
        detects = r["design"] != "floor"
        rows.append([
            r["design"],
            r["traced"],
            r["traced"] - floor["traced"],
            r["perMessage"] * 1e6,
            ratio(r["perMessage"], floor["perMessage"]),
            r["busyCpu"] * 1e3,
            ratio(r["busyCpu"], floor["busyCpu"]),
            r["perEvent"] * 1e6 if detects else None,
            r["lateP50"] * 1e3 if detects else None,
            r["lateP99"] * 1e3 if detects else None,
            r["lateMax"] * 1e3 if detects else None,
            f"{r['latePercent']:.1f}%" if detects else None,
            r["stall"] * 1e3,
        ])
    return table(
        f"Timer designs, {count:,} connections, median of {repeat} "
        f"(interval {interval:g} s, timeout {TIMEOUT * interval:g} s, "
        f"sweep {SWEEP * interval:g} s, a line per connection every "
        f"{MESSAGE_PERIOD * interval:g} s)",
        ["design", "B/conn", "+B", "us/msg", "x floor",
         "busy ms/s", "x floor", "us/event", "late p50 ms", "p99 ms",
         "max ms", "p99/timeout", "stall ms"],
        rows,
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.timers")
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--interval", type=float, default=1.0,
        help="heartbeat interval in seconds; the other times scale with it",
    )
    parser.add_argument("--child", choices=sorted(DESIGNS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.connections, args.interval)))
    else:
        compare(args.connections, args.repeat, args.interval)


if __name__ == "__main__":
    main()
