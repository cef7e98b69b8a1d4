"""
Real network faults for the integration tests: two network namespaces
joined by a veth pair, a path between two hosts that a test can cut
silently or shape.

Setting the link down drops every packet on it with no RST and no FIN, a
true half-open path, which no proxy in user space can imitate (a proxy
still holds both TCP connections open, and its kernel still answers).
C{tbf} shapes the rate (the kernel here has no C{netem}).  Everything lives
inside namespaces the test creates, on addresses of its own, and is
removed when it ends: the machine's own interfaces are never touched.

Both namespaces have their own loopback; a process started in one reaches
the other at the other's address.  Unix sockets are not namespaced, so a
test process outside both can still reach a server inside one through its
unix socket.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import textwrap
from typing import List, Optional, Sequence

import pytest

_numbers = itertools.count(1)

# An echo server on port 7000 of the address given, for one connection: run
# in one namespace, it shows what the path from the other does to data.
ECHO = textwrap.dedent("""
    import socket, sys
    listener = socket.create_server((sys.argv[1], 7000))
    print("listening", flush=True)
    connection, _ = listener.accept()
    while data := connection.recv(100):
        connection.sendall(data)
""")


def unavailable() -> Optional[str]:
    """
    Why namespaces cannot be made here, or C{None} when they can.
    """
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's ip command is missing"
    name = f"hbprobe{os.getpid()}"
    probe = subprocess.run(["ip", "netns", "add", name], capture_output=True)
    if probe.returncode != 0:
        return f"ip netns add failed: {probe.stderr.decode().strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def require_netns() -> None:
    """
    Skip the test where namespaces cannot be made; in CI (C{CI} set) that
    is a failure, not a skip.
    """
    why = unavailable()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"namespace tests cannot run: {why}")
        pytest.skip(why)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class Link:
    """
    Namespaces C{a} and C{b}, joined by a veth pair: C{a} at L{addressA},
    C{b} at L{addressB}, on a /30 of their own.

    @ivar a: the first namespace's name.
    @ivar b: the second's.
    """

    def __init__(self) -> None:
        number = next(_numbers)
        tag = f"hb{os.getpid() % 100000}x{number}"
        self.a = f"{tag}a"
        self.b = f"{tag}b"
        subnet = 4 * (number % 60)
        self.addressA = f"10.213.{os.getpid() % 250}.{subnet + 1}"
        self.addressB = f"10.213.{os.getpid() % 250}.{subnet + 2}"
        self._devices = (f"{tag}va", f"{tag}vb")
        self._made: List[str] = []
        try:
            for namespace in (self.a, self.b):
                _ip("netns", "add", namespace)
                self._made.append(namespace)
                _ip("-n", namespace, "link", "set", "lo", "up")
            deviceA, deviceB = self._devices
            _ip("link", "add", deviceA, "netns", self.a, "type", "veth",
                "peer", "name", deviceB, "netns", self.b)
            for namespace, device, address in (
                (self.a, deviceA, self.addressA),
                (self.b, deviceB, self.addressB),
            ):
                _ip("-n", namespace, "addr", "add", f"{address}/30", "dev", device)
                _ip("-n", namespace, "link", "set", device, "up")
        except BaseException:
            self.close()
            raise

    def command(self, namespace: str, argv: Sequence[str]) -> List[str]:
        """
        C{argv} run inside C{namespace} (L{a} or L{b}).
        """
        return ["ip", "netns", "exec", namespace, *argv]

    def device(self, namespace: str) -> str:
        """
        The name of the pair's end in C{namespace} (L{a} or L{b}).
        """
        return self._devices[(self.a, self.b).index(namespace)]

    def down(self) -> None:
        """
        Cut the path silently: packets vanish, nothing is reset.
        """
        for namespace, device in zip((self.a, self.b), self._devices):
            _ip("-n", namespace, "link", "set", device, "down")

    def up(self) -> None:
        """
        Mend the path; connections that outlived the cut carry on.
        """
        for namespace, device in zip((self.a, self.b), self._devices):
            _ip("-n", namespace, "link", "set", device, "up")

    def shape(self, rate: str, burst: str = "4kb", latency: str = "2s") -> None:
        """
        Limit both directions to C{rate} (a C{tc} rate such as C{64kbit}),
        queueing up to C{latency} of data before dropping.
        """
        for namespace, device in zip((self.a, self.b), self._devices):
            subprocess.run(
                ["ip", "netns", "exec", namespace, "tc", "qdisc", "replace",
                 "dev", device, "root", "tbf", "rate", rate, "burst", burst,
                 "latency", latency],
                check=True, capture_output=True,
            )

    def close(self) -> None:
        """
        Remove both namespaces, and with them the pair and every address.
        """
        for namespace in reversed(self._made):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        self._made.clear()


@pytest.fixture
def link():
    """
    A fresh pair of joined namespaces, removed after the test.
    """
    require_netns()
    made = Link()
    yield made
    made.close()
