"""
A line peer for the detection tests, in a process of its own (so that it
can run inside a network namespace):

    python tests/linepeer.py HOST PORT [--answer N] [--every S]

It connects, answers the server's first N pings (all of them by default;
0 for none, as a client that never answers pings) and then stays silent,
and with C{--every S} sends the line C{hello} every S seconds, as a client
that keeps its connection alive with its own messages.  It reports each
event on stdout, with the time of C{time.monotonic()} (the same clock in
every process of the machine):

    connected T | ping TOKEN T | pong TOKEN T | line T | closed T

and exits once the server closes the connection.
"""

from __future__ import annotations

import argparse
import select
import socket
import sys
import time


def report(*words: object) -> None:
    print(*words, f"{time.monotonic():.6f}", flush=True)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--answer", type=int, default=-1)
    parser.add_argument("--every", type=float, default=0.0)
    args = parser.parse_args(argv)
    peer = socket.create_connection((args.host, args.port), timeout=10)
    peer.setblocking(False)
    report("connected")
    answered = 0
    buffer = b""
    nextLine = time.monotonic() + args.every if args.every else None
    while True:
        wait = None if nextLine is None else max(0.0, nextLine - time.monotonic())
        readable, _, _ = select.select([peer], [], [], wait)
        if nextLine is not None and time.monotonic() >= nextLine:
            peer.sendall(b"hello\n")
            report("line")
            nextLine += args.every
        if not readable:
            continue
        try:
            data = peer.recv(65536)
        except ConnectionError:
            data = b""
        if not data:
            report("closed")
            return
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.startswith(b"ping "):
                token = line[5:].decode()
                report("ping", token)
                if args.answer < 0 or answered < args.answer:
                    peer.sendall(b"pong " + line[5:] + b"\n")
                    answered += 1
                    report("pong", token)


if __name__ == "__main__":
    main(sys.argv[1:])
