"""
What verified names cost the server: the memory of a connection admitted
with a token against one admitted with a shared token and one on an open
server, and the CPU of checking one token by each kind of key.

    python -m bench.token_cost [--connections N] [--repeat N]

Everything runs in this process on a fake clock and in-memory transports
that drop what is written: what is measured is the server's own work.  The
README's figures come from this.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
from typing import Callable, List, Optional

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from twisted.internet.task import Clock

from heartbeat import HeartbeatServerFactory
from heartbeat._server.tokens import TokenVerifier

from .status_cost import Sink

SECRET = b"a shared secret of at least 32 bytes, for HS256"
NOW = 1_700_000_000.0


def _token(key, algorithm: str, name: str = "alice") -> bytes:
    return jwt.encode({"sub": name, "exp": NOW + 3600}, key, algorithm=algorithm).encode()


def _bytes_per_connection(count: int, factory: HeartbeatServerFactory,
                          first: Callable[[int], Optional[bytes]], named: bool) -> float:
    """
    Bytes allocated per connection for C{count} connections, each sent
    C{first(n)} (unless C{None}) and its handshake, naming itself
    C{user<n>} when C{named}.
    """
    tokens = [first(n) for n in range(count)]
    hellos = [b"heartbeat/1 name=user%d\n" % n if named else b"heartbeat/1\n"
              for n in range(count)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    connections = []
    for token, hello in zip(tokens, hellos):
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(Sink())
        if token is not None:
            protocol.dataReceived(b"auth " + token + b"\n")
        protocol.dataReceived(hello)
        connections.append(protocol)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / count


def memory(count: int) -> List[tuple]:
    rows = []
    # The token's name is the connection's: JWT is set against connections
    # that name themselves, whose names presence indexes alike.
    for what, kwargs, first, named in [
        ("open, unnamed", {}, lambda n: None, False),
        ("open, named", {}, lambda n: None, True),
        ("shared token", {"authToken": SECRET}, lambda n: SECRET, True),
        ("JWT (HS256)", {"jwtVerifier": TokenVerifier(SECRET, ["HS256"])},
         lambda n: _token(SECRET, "HS256", f"user{n}"), False),
    ]:
        clock = Clock()
        clock.advance(NOW)
        factory = HeartbeatServerFactory(clock=clock, maxConnections=None, **kwargs)
        rows.append((what, _bytes_per_connection(count, factory, first, named)))
    return rows


def verification(repeat: int) -> List[tuple]:
    rows = []
    rsaKey = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ecKey = ec.generate_private_key(ec.SECP256R1())
    for algorithm, private, public in [
        ("HS256", SECRET, SECRET),
        ("RS256", rsaKey, rsaKey.public_key()),
        ("ES256", ecKey, ecKey.public_key()),
    ]:
        verifier = TokenVerifier(public, [algorithm])
        token = _token(private, algorithm)
        times = []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(repeat):
                verifier.verify(token, NOW)
            times.append((time.perf_counter() - started) / repeat)
        rows.append((algorithm, statistics.median(times)))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.token_cost")
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=1000)
    args = parser.parse_args(argv)
    print(f"Memory per line connection, {args.connections:,} admitted (tracemalloc):")
    for what, size in memory(args.connections):
        print(f"  {what:14} {size:8.0f} B")
    print("CPU to check one token (median of 5 runs of "
          f"{args.repeat:,}, time.perf_counter):")
    for algorithm, seconds in verification(args.repeat):
        print(f"  {algorithm:6} {seconds * 1e6:8.1f} us")


if __name__ == "__main__":
    main()
