"""
The sessions' load generator: line connections that ask for a session
(C{--resume}) or not, from one process, on asyncio (uvloop when
installed), so that the two can be loaded side by side.

A session connection answers as the library's clients do: it counts the
application lines it receives, tells its count after 64 of them or 0.2 s
after the first (C{ack N}) and on its pongs (C{pong T N}), and ignores
the server's counts (it keeps nothing to send again).  In C{lines} mode
each connection keeps C{--depth} application lines in flight (a new one
for each echo); in C{hold} mode it sends one line (at a random instant
within C{--spread} seconds), reads its echo and stays idle, answering
pings.  Driven through stdin like
L{bench.loadgen}: C{go} starts the measured phase, C{stop} prints the
summary (JSON, with C{lines}: echoes received in the phase) and exits.

    python -m bench.sessionload --port 1234 --connections 200 --mode lines --resume
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import sys
import time
from typing import List, Optional

from .loadgen import IP_BIND_ADDRESS_NO_PORT, run_fast

ACK_EVERY = 64
ACK_DELAY = 0.2
# An application line that no control line begins like.
LINE = b"m" + b"0123456789abcdef" * 2


class Client(asyncio.Protocol):
    __slots__ = ("gen", "transport", "buffer", "answered", "received", "owed")

    def __init__(self, gen: "Generator") -> None:
        self.gen = gen
        self.transport: Optional[asyncio.Transport] = None
        self.buffer = b""
        self.answered = False
        self.received = 0
        self.owed = 0

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(b"heartbeat/1 resume\n" if self.gen.resume else b"heartbeat/1\n")

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        if b"\n" not in buffer:
            self.buffer = buffer
            return
        *lines, self.buffer = buffer.split(b"\n")
        gen = self.gen
        resume = gen.resume
        for line in lines:
            if not self.answered:
                self.answered = True
                gen.ready(self)
                continue
            kind = line[:4]
            if kind == b"ping":
                token = line[5:].split(b" ")[0]
                count = b" %d" % self.received if resume and token else b""
                self.transport.write(b"pong " + token + count + b"\n" if token else b"pong\n")
            elif kind == b"pong" or line[:4] == b"ack ":
                continue
            else:
                self.lineReceived()

    def lineReceived(self) -> None:
        gen = self.gen
        gen.lines += 1
        if gen.resume:
            self.received += 1
            self.owed += 1
            if self.owed >= ACK_EVERY:
                self.tell()
            elif self.owed == 1:
                gen.owing.append(self)
        if gen.flooding:
            self.transport.write(LINE + b"\n")

    def tell(self) -> None:
        if self.owed and not self.transport.is_closing():
            self.transport.write(b"ack %d\n" % self.received)
            self.owed = 0

    def connection_lost(self, exc) -> None:
        self.gen.lost(self)


class Generator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.resume = args.resume
        self.loop = asyncio.get_running_loop()
        self.sources = args.sources.split(",")
        self.clients: set = set()
        self.owing: List[Client] = []
        self.flooding = False
        self.errors = 0
        self.done = asyncio.Event()
        self.startPhase()
        self.loop.call_later(ACK_DELAY, self.tellCounts)

    def startPhase(self) -> None:
        self.lines = 0
        self.cpu = time.process_time()

    def emit(self, **event) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    def tellCounts(self) -> None:
        owing, self.owing = self.owing, []
        for client in owing:
            client.tell()
        self.loop.call_later(ACK_DELAY, self.tellCounts)

    async def connectAll(self) -> None:
        gate = asyncio.Semaphore(256)
        args = self.args

        async def one(number: int) -> None:
            async with gate:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((self.sources[number % len(self.sources)], 0))
                sock.setblocking(False)
                try:
                    await self.loop.sock_connect(sock, (args.host, args.port))
                    await self.loop.create_connection(lambda: Client(self), sock=sock)
                except OSError:
                    sock.close()
                    self.errors += 1

        await asyncio.gather(*(one(n) for n in range(args.connections)))

    def ready(self, client: Client) -> None:
        self.clients.add(client)
        # Every connection exchanges one line, each way, at its own instant
        # within --spread seconds, as idle clients would.
        self.loop.call_later(random.uniform(0, self.args.spread), self.first, client)
        if len(self.clients) == self.args.connections:
            self.emit(event="connected", open=len(self.clients), t=time.monotonic())

    def first(self, client: Client) -> None:
        if not client.transport.is_closing():
            client.transport.write(LINE + b"\n")

    def lost(self, client: Client) -> None:
        self.clients.discard(client)

    def command(self, line: str) -> None:
        if line == "go":
            self.startPhase()
            if self.args.mode == "lines":
                self.flooding = True
                for client in self.clients:
                    for _ in range(self.args.depth):
                        client.transport.write(LINE + b"\n")
        elif line == "stop":
            self.emit(event="summary", open=len(self.clients), lines=self.lines,
                      errors=self.errors, cpu=time.process_time() - self.cpu)
            self.done.set()


async def run(args: argparse.Namespace) -> None:
    gen = Generator(args)
    reader = asyncio.StreamReader()
    await gen.loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    gen.loop.create_task(gen.connectAll())
    while not gen.done.is_set():
        line = await reader.readline()
        gen.command(line.decode().strip() if line else "stop")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sessionload")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--sources", default="127.0.0.2")
    parser.add_argument("--mode", choices=["lines", "hold"], default="lines")
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--spread", type=float, default=0.0,
                        help="seconds over which the connections send their "
                        "first line, each at a random instant")
    args = parser.parse_args(argv)
    run_fast(run(args))


if __name__ == "__main__":
    main()
