"""
The scenarios: each runs its servers one after the other in the same run,
against the same load, and prints one table with ratios to the floor.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Iterator, List, Optional, Sequence, Tuple

from ._procs import Load, Server, free_port, run_for
from ._report import median, percentile, ratio, table

# Twisted's listen backlog when an endpoint sets none.
TWISTED_BACKLOG = 50


@contextmanager
def serving(kind: str, logdir: str, **options) -> Iterator[Server]:
    server = Server(kind, free_port(), logdir=logdir, **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def loading(port: int, connections: int, mode: str, **options) -> Iterator[Load]:
    load = Load(port, connections, mode, **options)
    try:
        load.waitConnected()
        yield load
    finally:
        load.kill()


def ms(value):
    return None if value is None else value * 1000


def hold(kinds: Sequence[str], sizes: Sequence[int], seconds: float,
         logdir: str, pingInterval: float = 25.0, rounds: int = 1,
         figures: Optional[dict] = None) -> str:
    """
    N idle connections at the default 25 s interval: memory and CPU, the
    median of C{rounds} interleaved runs of every server.

    Clients that ping every 25 s race the server's own 25 s interval, so
    the server pings some of them too ("server pings"); C{pingInterval}
    below 25 s shows the cost without that race.

    @param figures: filled with each server's C{(size, pingInterval)}
        figures, for L{summary}.
    """
    rows = []
    for size in sizes:
        samples: dict = {kind: [] for kind in kinds}
        for _ in range(rounds):
            for kind in kinds:
                with serving(kind, logdir) as server:
                    perConnection, cpu, _, summary = _held(
                        server, size, seconds, pingInterval
                    )
                rtts = summary["rtts"]
                samples[kind].append((
                    perConnection, cpu, summary["open"], summary["pings"],
                    summary["pongs"], summary["answered"],
                    percentile(rtts, 0.5), percentile(rtts, 0.99),
                    summary["errors"],
                ))
        floor = None
        for kind, values in samples.items():
            (perConnection, cpu, opened, pings, pongs, answered, p50, p99,
             errors) = [median([v[i] for v in values]) for i in range(9)]
            floor = floor or (perConnection, cpu)
            if figures is not None:
                figures.setdefault(kind, {})[size, pingInterval] = (
                    perConnection, cpu, p99
                )
            rows.append([
                f"{size:,}", kind, int(opened), perConnection,
                ratio(perConnection, floor[0]), cpu * 1000,
                ratio(cpu, floor[1]), int(pings), int(pongs), int(answered),
                ms(p50), ms(p99), int(errors),
            ])
    return table(
        f"Hold: idle connections pinging every {pingInterval:g} s "
        f"(server interval 25 s), {seconds:g} s measured, median of "
        f"{rounds}",
        ["conns", "server", "open", "RSS B/conn", "x floor", "CPU ms/s",
         "x floor", "pings", "pongs", "server pings", "RTT p50 ms", "p99 ms",
         "errors"],
        rows,
    )


def throughput(kinds: Sequence[str], connections: int, seconds: float,
               logdir: str, workers: Sequence[int] = (1,), rounds: int = 1,
               lean: bool = False, figures: Optional[dict] = None) -> str:
    """
    Every connection pings again as soon as its pong arrives; C{rounds}
    interleaved runs of every server, medians reported.

    @param figures: filled with each single-process server's pongs per
        CPU-second, for L{summary}.
    """
    runs = _runs(kinds, workers)
    samples: dict = {run: [] for run in runs}
    for _ in range(rounds):
        for kind, count in runs:
            # A ping flood is this scenario's point: the flood guard is off.
            with serving(kind, logdir, workers=count,
                         options=["--min-ping-interval", "0"]) as server:
                with loading(server.port, connections, "throughput",
                             lean=lean) as load:
                    summary, cpu, wall = run_for(server, load, seconds)
            rtts = summary["rtts"]
            samples[kind, count].append((
                summary["pongs"] / wall, cpu / wall, summary["pongs"] / cpu,
                summary["cpu"] / cpu, percentile(rtts, 0.5),
                percentile(rtts, 0.99),
            ))
    rows = []
    floor = None
    for (kind, count), values in samples.items():
        rate, load, perCpu, generator, p50, p99 = [
            median([v[i] for v in values]) for i in range(6)
        ]
        floor = floor or perCpu
        if figures is not None and count == 1:
            figures.setdefault(kind, {})["throughput"] = perCpu
        rows.append([_label(kind, count), rate, load, perCpu,
                     ratio(perCpu, floor), generator, ms(p50), ms(p99)])
    return table(
        f"Heartbeat throughput: {connections:,} connections, one ping in "
        f"flight each, {seconds:g} s, median of {rounds} "
        f"({'plain asyncio' if lean else 'uvloop'} load generator)",
        ["server", "pongs/s", "server CPU s/s", "pongs/CPU-s", "x floor",
         "loadgen CPU/server CPU", "RTT p50 ms", "p99 ms"],
        rows,
    )


def detection(kinds: Sequence[str], peers: int, interval: float,
              timeout: float, logdir: str, figures: Optional[dict] = None) -> str:
    """
    Peers fall silent, each at a known instant: all at once (the worst
    burst for the server) or spread over a second (the usual case, and the
    one that shows a sweep's lateness): how late is each one closed?

    @param figures: filled with each server's p99 lateness, as a share of
        the timeout, when peers fall silent over a second, for L{summary}.
    """
    rows = []
    for kind, spread in [(k, s) for k in kinds for s in (0.0, 1.0)]:
        with serving(kind, logdir, interval=interval, timeout=timeout) as server:
            with loading(server.port, peers, "hold", ping_interval=0) as load:
                time.sleep(0.5)
                load.send("go")
                load.send(f"silent {spread}")
                time.sleep(timeout * 1.2 + spread + 1.0)
                summary = load.stop()
        late = [close - timeout for close in summary["closes"]]
        p99 = percentile(late, 0.99)
        if figures is not None and spread and late:
            figures.setdefault(kind, {})["late"] = p99 / timeout
        rows.append([
            kind, "at once" if not spread else f"over {spread:g} s",
            f"{len(late)}/{peers}", ms(percentile(late, 0.5)), ms(p99),
            ms(max(late)) if late else None,
            f"{100 * p99 / timeout:.2f}%" if late else None,
        ])
    return table(
        f"Detection precision: {peers} peers fall silent (interval "
        f"{interval:g} s, timeout {timeout:g} s; sweep every "
        f"{timeout * 10 / 55:.2f} s); lateness = close - last ping - timeout",
        ["server", "silent", "closed", "late p50 ms", "p99 ms", "max ms",
         "p99/timeout"],
        rows,
    )


# Rules compared by the detection-time table, at the same ping traffic
# (the same interval), with the defaults' timing in units of the interval:
# the pong deadline with the defaults (timeout 90 s, pong timeout 5 s),
# and the timeout alone, with today's 90 s and with the 55 s before it.
DETECTION_RULES = [
    ("pong deadline", 90 / 25, 5 / 25),
    ("timeout 90 s only", 90 / 25, 0),
    ("timeout 55 s only", 55 / 25, 0),
]


def detection_time(peers: int, scale: float, logdir: str,
                   rules: Sequence[Tuple[str, float, float]] = DETECTION_RULES
                   ) -> str:
    """
    Peers that answer the server's pings die, each at a random instant
    within one interval: how long after its death, and after its last
    data (its last pong), is each one closed?  The defaults' timing
    divided by C{scale}.  C{late}: the close's p99 after the last data,
    past what the rule allows (the timeout, or the interval plus the pong
    timeout): the part that does not scale with the timing.
    """
    interval = 25.0 / scale
    rows = []
    for name, timeout, pongTimeout in rules:
        timeout *= interval
        pongTimeout *= interval
        with serving("heartbeat", logdir, interval=interval, timeout=timeout,
                     options=["--pong-timeout", str(pongTimeout)]) as server:
            with loading(server.port, peers, "hold", ping_interval=0) as load:
                # Every peer is pinged, and answers, before any dies.
                time.sleep(interval + 1.0)
                load.send("go")
                load.send(f"die {interval}")
                time.sleep(interval + timeout + 1.0)
                summary = load.stop()
        deaths, closes = summary["deaths"], summary["closes"]
        allowed = interval + pongTimeout if pongTimeout else timeout
        rows.append([
            name, f"{timeout:g}", f"{pongTimeout:g}" if pongTimeout else "-",
            f"{len(closes)}/{peers}",
            percentile(deaths, 0.5), percentile(deaths, 0.99),
            max(deaths, default=None),
            percentile(closes, 0.5), percentile(closes, 0.99),
            max(closes, default=None),
            ms(percentile(closes, 0.99) - allowed),
        ])
    return table(
        f"Detection time: {peers} peers that answer pings die at random "
        f"instants (interval {interval:g} s, the defaults / {scale:g}); "
        "seconds from death, and from the last data sent, to the close",
        ["rule", "timeout", "pong timeout", "closed", "death p50", "p99",
         "max", "last data p50", "p99", "max", "late ms"],
        rows,
    )


def reconnect(kinds: Sequence[str], clients: int, logdir: str) -> str:
    """
    The server is killed and restarted under its clients.  C{heartbeat}
    runs twice: with its own listen backlog and restarted with Twisted's
    default of 50 (C{backlog=50} in C{--port}), to show what the backlog
    saves.  Only the restart has the small backlog: a first start with it
    would leave some clients believing in connections whose handshake the
    full queue dropped, and so never coming back.
    """
    runs = [(kind, None) for kind in kinds]
    if "heartbeat" in kinds:
        runs.append(("heartbeat", TWISTED_BACKLOG))
    rows = []
    for kind, backlog in runs:
        server = Server(kind, free_port(), logdir=logdir)
        server.start()
        try:
            with loading(server.port, clients, "reconnect") as load:
                load.send("go")
                killed = time.monotonic()
                server.kill()
                overflows = listen_overflows()
                server.backlog = backlog
                ready = server.start()
                load.waitConnected()
                overflows = listen_overflows() - overflows
                summary = load.stop()
        finally:
            server.stop()
        connects = sorted(summary["connects"])
        rows.append([
            kind if backlog is None else f"{kind} backlog={backlog}",
            len(connects), ready - killed, connects[-1] - ready,
            _peak(connects, 0.1), summary["errors"], overflows,
        ])
    return table(
        f"Reconnect: {clients:,} clients (library backoff: first retry within "
        "1 s, doubling, full jitter), server killed and restarted",
        ["server", "back", "restart s", "all back after s",
         "peak accepts/s", "refused tries", "listen overflows"],
        rows,
    )


def listen_overflows() -> int:
    """
    How many times a listening socket's queue has overflowed on this
    machine (Linux's TcpExt ListenOverflows): connections the kernel
    turned away because the server had not accepted the earlier ones.
    """
    try:
        with open("/proc/net/netstat") as f:
            lines = [line.split() for line in f if line.startswith("TcpExt:")]
    except OSError:
        return 0
    names, values = lines[0], lines[1]
    return int(values[names.index("ListenOverflows")])


def workers(counts: Sequence[int], perWorker: int, seconds: float,
            logdir: str) -> str:
    """
    N workers hold N times what one holds: spread, memory, CPU, latency.
    """
    rows = []
    for count in counts:
        size = perWorker * count
        with serving("heartbeat", logdir, workers=count) as server:
            perConnection, cpu, spread, summary = _held(server, size, seconds)
        rows.append([
            count, f"{size:,}", summary["open"],
            " + ".join(f"{n:,}" for n in spread) or "-",
            perConnection, cpu * 1000,
            ms(percentile(summary["rtts"], 0.5)),
            ms(percentile(summary["rtts"], 0.99)), summary["errors"],
        ])
    return table(
        f"Workers: {perWorker:,} connections per worker, pinging every 25 s, "
        f"{seconds:g} s measured",
        ["workers", "conns", "open", "sockets per worker", "RSS B/conn",
         "CPU ms/s", "RTT p50 ms", "p99 ms", "errors"],
        rows,
    )


def _held(server: Server, size: int, seconds: float,
          pingInterval: float = 25.0):
    """
    Hold C{size} idle connections on C{server} for C{seconds}.

    @return: RSS per connection, CPU seconds per second, sockets per
        server process, and the generators' summary.
    """
    time.sleep(0.5)
    before = server.rss()
    with loading(server.port, size, "hold", ping_interval=pingInterval) as load:
        time.sleep(1.0)
        load.send("go")
        cpu = server.cpu()
        time.sleep(seconds)
        cpu = (server.cpu() - cpu) / seconds
        pids = server.pids()
        spread = [_sockets(pid) for pid in pids[1:] or pids]
        perConnection = (server.rss() - before) / size
        summary = load.stop()
    return perConnection, cpu, spread, summary


def _sockets(pid: int) -> int:
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    count = 0
    for name in names:
        try:
            count += os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:")
        except OSError:
            pass
    return count


def _peak(times: List[float], bucket: float) -> float:
    counts: dict = {}
    for t in times:
        key = int(t / bucket)
        counts[key] = counts.get(key, 0) + 1
    return max(counts.values()) / bucket if counts else 0.0


def _runs(kinds: Sequence[str], workers: Sequence[int]) -> List[Tuple[str, int]]:
    return [(kind, count) for kind in kinds
            for count in (workers if kind == "heartbeat" else (1,))]


def _label(kind: str, workers: int) -> str:
    return kind if workers == 1 else f"{kind} x{workers} workers"


def summary(figures: dict, size: int, kinds: Sequence[str]) -> str:
    """
    The servers side by side, from the scenarios of this run: memory and
    CPU holding C{size} connections that ping every 25 s and every 10 s,
    the round trip's tail at 10 s, CPU per ping under a ping flood and the
    lateness of detection, each as a ratio to the floor.
    """
    floor = figures.get("floor", {})

    def held(kind, ping, index):
        value = figures.get(kind, {}).get((size, ping))
        return None if value is None else value[index]

    def times(kind, value, base):
        return "-" if value is None or not base else f"{value / base:.2f}x"

    rows = []
    for kind in kinds:
        if kind not in figures:
            continue
        rss = held(kind, 10.0, 0)
        p99 = held(kind, 10.0, 2)
        pongs = figures[kind].get("throughput")
        late = figures[kind].get("late")
        rows.append([
            kind, rss, times(kind, rss, held("floor", 10.0, 0)),
            times(kind, held(kind, 25.0, 1), held("floor", 25.0, 1)),
            times(kind, held(kind, 10.0, 1), held("floor", 10.0, 1)),
            ms(p99), times(kind, p99, held("floor", 10.0, 2)),
            # CPU per ping is the inverse of pings per CPU-second.
            times(kind, floor.get("throughput"), pongs) if pongs else "-",
            f"{100 * late:.2f}%" if late is not None else "-",
        ])
    return table(
        f"Side by side: {size:,} connections held, ratios to the floor "
        "(median of this run's rounds)",
        ["server", "RSS B/conn", "x floor", "CPU, ping/25 s", "CPU, ping/10 s",
         "RTT p99 ms, ping/10 s", "x floor", "CPU per ping, flood",
         "detection p99/timeout"],
        rows,
    )
