"""
C{python -m bench}: run the scenarios and print their tables.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from . import api, cluster, scenarios, sessions
from .workerman import ENVIRONMENT, Workerman

SCENARIOS = ["hold", "throughput", "detection", "reconnect", "workers", "cluster",
             "api", "sessions"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Load the heartbeat server and a bare Twisted floor "
        "side by side, over 127.0.0.x, and print one table per scenario.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and short phases: under a minute")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS,
                        help="run only this scenario (repeatable)")
    parser.add_argument("--baselines", action="store_true",
                        help="also run the reset-per-message and sweep "
                        "timer baselines")
    parser.add_argument("--sizes", type=lambda s: [int(n) for n in s.split(",")],
                        help="connection counts for hold (default "
                        "1000,5000,15000; quick 1000); the first is also "
                        "the clients of reconnect (default 5000) and the "
                        "connections of cluster (default 15000)")
    parser.add_argument("--hold-seconds", type=float,
                        help="measured hold per run (default 30; quick 3)")
    parser.add_argument("--workers", type=lambda s: [int(n) for n in s.split(",")],
                        default=[1, 2],
                        help="worker counts for the heartbeat server in the "
                        "throughput and workers scenarios (default 1,2)")
    parser.add_argument("--ping-interval",
                        type=lambda s: [float(n) for n in s.split(",")],
                        default=[25.0, 10.0],
                        help="how often each held connection pings, one "
                        "hold table for each (default 25,10; the server's "
                        "interval is 25 s)")
    parser.add_argument("--workerman", metavar="DIR",
                        default=os.environ.get(ENVIRONMENT),
                        help="run Workerman's heartbeat example beside the "
                        "others, from DIR laid out as bench/README says "
                        f"(default: ${ENVIRONMENT}; skipped without it)")
    parser.add_argument("--rounds", type=int,
                        help="interleaved runs per server in hold and "
                        "throughput (default 3; quick 1)")
    parser.add_argument("--detection-scale", type=float,
                        help="the detection-time table runs the defaults' "
                        "timing divided by this (default 10; quick 25; 1 "
                        "for the defaults themselves, about 7 minutes)")
    parser.add_argument("--lean-loadgen", action="store_true",
                        help="plain asyncio in the load generator, to see "
                        "what uvloop saves")
    args = parser.parse_args(argv)
    quick = args.quick
    kinds = ["floor", "heartbeat"]
    if args.baselines:
        kinds[1:1] = ["reset", "sweep"]
    logdir = tempfile.mkdtemp(prefix="heartbeat-bench-")
    chosen = args.scenario or SCENARIOS
    started = time.monotonic()
    out = sys.stdout
    out.write(f"logs in {logdir}\n")
    # Workerman joins the scenarios that compare servers, when it can run.
    others = _workerman(args.workerman, out)
    out.write("\n")
    sizes = args.sizes or ([1000] if quick else [1000, 5000, 15000])
    figures: dict = {}
    if "hold" in chosen:
        for pingInterval in args.ping_interval:
            out.write(scenarios.hold(
                kinds + others, sizes,
                args.hold_seconds or (2.0 if quick else 30.0), logdir,
                pingInterval, args.rounds or (1 if quick else 3), figures,
            ) + "\n")
    if "throughput" in chosen:
        out.write(scenarios.throughput(
            kinds + others, 100 if quick else 200, 3.0 if quick else 10.0,
            logdir, args.workers, args.rounds or (1 if quick else 3),
            args.lean_loadgen, figures,
        ) + "\n")
    if "detection" in chosen:
        # The floor has no timer: it never closes a silent peer.
        out.write(scenarios.detection(
            (["sweep", "heartbeat"] if args.baselines else ["heartbeat"])
            + others,
            200, *((1.0, 2.5) if quick else (5.0, 11.0)), logdir, figures,
        ) + "\n")
        out.write(scenarios.detection_time(
            200, args.detection_scale or (25.0 if quick else 10.0), logdir,
        ) + "\n")
    if "reconnect" in chosen:
        out.write(scenarios.reconnect(
            kinds, (args.sizes or [1000 if quick else 5000])[0], logdir,
        ) + "\n")
    if "workers" in chosen:
        out.write(scenarios.workers(
            args.workers, 1000 if quick else 15000,
            2.0 if quick else 30.0, logdir,
        ) + "\n")
    if "cluster" in chosen:
        size = (args.sizes or [2000 if quick else 15000])[0]
        out.write(cluster.hold(
            size, args.hold_seconds or (3.0 if quick else 30.0),
            args.rounds or (1 if quick else 3), logdir,
        ) + "\n")
        out.write(cluster.latency(200 if quick else 2000, 200.0, logdir) + "\n")
        out.write(cluster.convergence(size, logdir) + "\n")
        out.write(cluster.storm(1000 if quick else 5000, logdir) + "\n")
    if "api" in chosen:
        out.write(api.latency(
            200 if quick else 2000, 200.0, 2.0 if quick else 10.0, 4, logdir,
        ) + "\n")
    if "sessions" in chosen:
        rounds = args.rounds or (1 if quick else 3)
        out.write(sessions.throughput(
            100 if quick else 200, 3.0 if quick else 10.0, rounds, logdir,
        ) + "\n")
        out.write(sessions.hold(
            (args.sizes or [1000 if quick else 15000])[0],
            args.hold_seconds or (2.0 if quick else 10.0), rounds, logdir,
        ) + "\n")
        out.write(sessions.replay(1000, 3 if quick else 11, logdir) + "\n")
    if figures:
        out.write(scenarios.summary(
            figures, max(sizes), ["floor", "heartbeat"] + others
        ) + "\n")
    out.write(f"finished in {time.monotonic() - started:.0f} s\n")


def _workerman(directory, out) -> list:
    """
    C{["workerman"]} when Workerman can run from C{directory}; else C{[]},
    with one line saying why.
    """
    if directory is None:
        out.write(f"workerman: skipped (no --workerman DIR, no ${ENVIRONMENT}; "
                  "see bench/README)\n")
        return []
    missing = Workerman(directory).missing()
    if missing is not None:
        out.write(f"workerman: skipped ({missing}; see bench/README)\n")
        return []
    # The servers find it there, as the load generators find the rest.
    os.environ[ENVIRONMENT] = directory
    return ["workerman"]


if __name__ == "__main__":
    main()
