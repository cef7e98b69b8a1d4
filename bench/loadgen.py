"""
The load generator: thousands of line connections from one process.

It runs on asyncio, with uvloop when installed, so that it costs less CPU
per ping than the server it loads (each scenario prints both).  Every
connection answers the server's pings and, in C{hold} mode, pings on its
own every C{--ping-interval} seconds; in C{throughput} mode it keeps
C{--depth} pings in flight; in C{reconnect} mode a lost connection comes
back after the library's own jittered backoff.  Source addresses are
spread over C{--sources} (127.0.0.2, 127.0.0.3, ...), each good for about
28,000 connections to one server port.

It is driven through stdin, one command a line: C{go} starts the measured
phase (counters start from zero), C{silent [SPREAD]} makes every
connection send a last ping and then say nothing more (each at a random
instant within SPREAD seconds), C{die [SPREAD]} makes every connection
fall silent without a last word (each at a random instant within SPREAD
seconds: a peer that answered pings until then), C{stop} prints the
summary and exits.
Events and the summary are JSON lines on stdout.

    python -m bench.loadgen --port 1234 --connections 5000 --mode hold
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import sys
import time
from collections import deque
from typing import List, Optional

from heartbeat import backoff_delay

# Linux: pick the source port at connect(), per destination, not at bind().
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
CONNECTING_AT_ONCE = 256
RTT_SAMPLES = 20000


class Client(asyncio.Protocol):
    __slots__ = ("gen", "number", "transport", "buffer", "sent", "silent",
                 "lastSent", "diedAt")

    def __init__(self, gen: "Generator", number: int) -> None:
        self.gen = gen
        self.number = number
        self.transport: Optional[asyncio.Transport] = None
        self.buffer = b""
        self.sent: deque = deque()
        self.silent = False
        self.lastSent = 0.0
        self.diedAt = 0.0

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.gen.connectionMade(self)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        if b"\n" not in buffer:
            self.buffer = buffer
            return
        *lines, self.buffer = buffer.split(b"\n")
        gen = self.gen
        for line in lines:
            kind = line[:4]
            if kind == b"ping":
                if not self.silent:
                    self.transport.write(b"pong" + line[4:] + b"\n")
                    self.lastSent = time.monotonic()
                    gen.answered += 1
            elif kind == b"pong" and self.sent:
                gen.rtts.append(time.monotonic() - self.sent.popleft())
                gen.pongs += 1
                if gen.flooding and not self.silent:
                    self.ping()

    def ping(self, token: bytes = b"") -> None:
        self.lastSent = now = time.monotonic()
        self.sent.append(now)
        self.transport.write(b"ping" + token + b"\n")
        self.gen.pings += 1

    def fallSilent(self, lastWord: bool = True) -> None:
        """
        Send a last ping (if C{lastWord}), then neither answer nor ping
        again.
        """
        if self.transport is not None and not self.transport.is_closing():
            if lastWord:
                self.ping(b" last")
            self.silent = True
            self.diedAt = time.monotonic()

    def connection_lost(self, exc) -> None:
        self.gen.connectionLost(self)


class Generator:
    """
    Opens, holds and (in reconnect mode) reopens the connections.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.loop = asyncio.get_running_loop()
        self.sources = args.sources.split(",")
        self.clients: set = set()
        self.flooding = False
        self.everConnected = False
        self.done = asyncio.Event()
        self.startPhase()

    def startPhase(self) -> None:
        self.pings = self.pongs = self.answered = self.errors = 0
        self.rtts: List[float] = []
        self.connects: List[float] = []
        self.closes: List[float] = []
        self.deaths: List[float] = []
        self.cpu = time.process_time()

    def emit(self, **event) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    async def connect(self, number: int, attempt: int = 0) -> None:
        args = self.args
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((self.sources[number % len(self.sources)], 0))
        sock.setblocking(False)
        try:
            await self.loop.sock_connect(sock, (args.host, args.port))
            await self.loop.create_connection(
                lambda: Client(self, number), sock=sock
            )
        except OSError:
            sock.close()
            self.errors += 1
            self.retry(number, attempt + 1)

    def retry(self, number: int, attempt: int) -> None:
        if self.args.mode == "reconnect":
            delay = backoff_delay(attempt)
        else:
            delay = 0.1
        self.loop.call_later(
            delay, lambda: self.loop.create_task(self.connect(number, attempt))
        )

    async def connectAll(self) -> None:
        gate = asyncio.Semaphore(CONNECTING_AT_ONCE)

        async def one(number: int) -> None:
            async with gate:
                await self.connect(number)

        await asyncio.gather(*(one(n) for n in range(self.args.connections)))

    def connectionMade(self, client: Client) -> None:
        self.clients.add(client)
        self.connects.append(time.monotonic())
        args = self.args
        if args.mode == "hold" and args.ping_interval:
            self.loop.call_later(
                random.uniform(0, args.ping_interval), self.keepPinging, client
            )
        elif self.flooding:
            for _ in range(args.depth):
                client.ping()
        if len(self.clients) == args.connections:
            self.emit(event="connected", open=len(self.clients),
                      t=time.monotonic())

    def keepPinging(self, client: Client) -> None:
        if client in self.clients and not client.silent:
            client.ping()
            self.loop.call_later(
                self.args.ping_interval, self.keepPinging, client
            )

    def connectionLost(self, client: Client) -> None:
        if client not in self.clients:
            return
        self.clients.discard(client)
        if client.silent:
            now = time.monotonic()
            self.closes.append(now - client.lastSent)
            self.deaths.append(now - client.diedAt)
        if self.args.mode == "reconnect":
            self.retry(client.number, 0)

    def command(self, line: str) -> None:
        if line == "go":
            self.startPhase()
            if self.args.mode == "throughput":
                self.flooding = True
                for client in self.clients:
                    for _ in range(self.args.depth):
                        client.ping()
        elif line.startswith(("silent", "die")):
            # "silent SPREAD": each connection falls silent at its own
            # instant, uniform over SPREAD seconds (default: all at once),
            # after a last ping; "die SPREAD" without one.
            spread = float(line.split()[1]) if " " in line else 0.0
            lastWord = line.startswith("silent")
            for client in self.clients:
                self.loop.call_later(
                    random.uniform(0, spread), client.fallSilent, lastWord
                )
        elif line == "stop":
            self.report()
            self.done.set()

    def report(self) -> None:
        rtts = self.rtts
        if len(rtts) > RTT_SAMPLES:
            rtts = random.sample(rtts, RTT_SAMPLES)
        self.emit(
            event="summary",
            open=len(self.clients),
            pings=self.pings,
            pongs=self.pongs,
            answered=self.answered,
            errors=self.errors,
            cpu=time.process_time() - self.cpu,
            rtts=rtts,
            connects=self.connects,
            closes=self.closes,
            deaths=self.deaths,
        )


async def run(args: argparse.Namespace) -> None:
    gen = Generator(args)
    loop = gen.loop
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )

    async def commands() -> None:
        while not gen.done.is_set():
            line = await reader.readline()
            if not line:
                gen.command("stop")
                break
            gen.command(line.decode().strip())

    loop.create_task(gen.connectAll())
    await asyncio.wait_for(commands(), args.limit)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--sources", default="127.0.0.2")
    parser.add_argument(
        "--mode", choices=["hold", "throughput", "reconnect"], default="hold"
    )
    parser.add_argument("--ping-interval", type=float, default=25.0)
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--limit", type=float, default=900.0,
                        help="exit after this many seconds whatever happens")
    parser.add_argument("--lean", action="store_true",
                        help="plain asyncio even when uvloop is installed")
    args = parser.parse_args(argv)
    run_fast(run(args), lean=args.lean)


def run_fast(coroutine, lean: bool = False) -> None:
    """
    Run C{coroutine} on uvloop when it is installed (a generator must cost
    less per message than the server it loads), unless C{lean}; else on
    plain asyncio.
    """
    if not lean:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(coroutine)


if __name__ == "__main__":
    main()
