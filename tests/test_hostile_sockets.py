"""
Hostile and careless peers against the real server over loopback: ping
floods, slowloris, slow readers (with the server's memory measured), a
connection flood, authentication and TLS end to end.
"""

import socket
import subprocess
import sys
import time
from pathlib import Path

from .certificates import make_certificate
from .processes import CLIENT, LoggedProcess, Peer, Server, wait_for
from .webserver import WebServer, raw_page


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_ping_flood_is_refused_honest_pinger_is_not():
    """A peer pinging in a loop hears 'error too many pings' after its
    burst of ten; one pinging every 0.25 s, then ten times at once, is
    untouched."""
    server = Server("--interval", "1", "--timeout", "3", "--min-ping-interval", "0.2")
    try:
        honest, flooder = server.connect(), server.connect()
        flooder.send(b"ping\n" * 1000)
        replies = [flooder.readline() for _ in range(11)]
        assert replies == [b"pong"] * 10 + [b"error too many pings"]
        assert flooder.closed_within(5)
        for k in range(6):
            honest.send(b"ping %d\n" % k)
            assert honest.readline() == b"pong %d" % k
            time.sleep(0.25)
        honest.send(b"".join(b"ping b%d\n" % k for k in range(10)))
        assert [honest.readline() for _ in range(10)] == [b"pong b%d" % k for k in range(10)]
        assert "pings more often" in server.log()
    finally:
        server.stop()
    assert "Traceback" not in server.log()


def test_slowloris_is_cut_by_line_timeout():
    """A byte every 0.3 s, never a newline: cut once the line is older than
    --line-timeout, long before the line-length limit."""
    server = Server("--interval", "1", "--timeout", "3", "--line-timeout", "1")
    try:
        peer = server.connect()
        started = time.monotonic()
        while time.monotonic() - started < 5:
            peer.send(b"x")
            if peer.closed_within(0.3):
                break
        assert peer._buffer == b"error line timeout\n"
        assert 1.0 <= time.monotonic() - started <= 1.0 + 0.6
    finally:
        server.stop()


# A masked pong frame, empty: what a page's browser sends now and then.
PONG = b"\x8a\x80\x00\x00\x00\x00"


def slow_reader_growth(cap: str, megabytes: int = 40, websocket: bool = False):
    """
    Broadcast C{megabytes} to a peer that never reads (a line peer, or a
    page that answers with a pong frame now and then); return the server's
    RSS growth in bytes and its log.
    """
    options = ["--broadcast", "--max-write-buffer", cap, "--interval", "5",
               "--timeout", "15", "--min-ping-interval", "0"]
    if websocket:
        server = WebServer(*options, ports=("port", "websocket-port"))
        port, slowPort = server.ports["port"], server.ports["websocket-port"]
    else:
        server = Server(*options)
        port = slowPort = server.port
    try:
        if websocket:
            slow = raw_page(slowPort, receiveBuffer=4096)
        else:
            slow = socket.socket()
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow.connect(("127.0.0.1", slowPort))
            # Its first line settles it, so that broadcasts are written to
            # it (rather than held for its handshake); then it reads no more.
            slow.sendall(b"ping settled\n")
            assert slow.recv(64) == b"pong settled\n"
        writer = Peer(port)
        writer.send(b"ping sync\n")
        assert writer.readline() == b"pong sync"
        before = rss_bytes(server.process.pid)
        line = b"b" * 1023 + b"\n"
        chunk = line * 1024
        for n in range(megabytes):
            writer.send(chunk)
            writer.send(b"ping %d\n" % n)
            assert writer.readline() == b"pong %d" % n
            if websocket:
                try:
                    slow.sendall(PONG)
                except OSError:
                    pass  # dropped already
        growth = rss_bytes(server.process.pid) - before
        slow.close()
        return growth, server.log()
    finally:
        server.stop()


def test_slow_reader_is_dropped_and_memory_stays_bounded(figure):
    """A peer that never reads is dropped past --max-write-buffer; the
    writer carries on and the server's memory stays bounded (without the cap
    it would grow with every byte broadcast)."""
    capped, log = slow_reader_growth("1048576")
    assert "reads too slowly" in log
    uncapped, _ = slow_reader_growth("0")
    figure("slow reader, 40 MB broadcast: RSS growth with 1 MiB cap", capped / 2**20, "MiB")
    figure("slow reader, 40 MB broadcast: RSS growth without a cap", uncapped / 2**20, "MiB")
    assert capped < 8 * 2**20
    assert uncapped > 30 * 2**20


def test_slow_page_is_dropped_and_memory_stays_bounded(figure):
    """A WebSocket page that never reads, though it sends a pong frame now
    and then, is dropped past --max-write-buffer like a line peer; the
    server's memory stays bounded."""
    capped, log = slow_reader_growth("1048576", 40, websocket=True)
    assert "reads too slowly" in log
    uncapped, _ = slow_reader_growth("0", 40, websocket=True)
    figure("slow page, 40 MB broadcast: RSS growth with 1 MiB cap", capped / 2**20, "MiB")
    figure("slow page, 40 MB broadcast: RSS growth without a cap", uncapped / 2**20, "MiB")
    assert capped < 8 * 2**20
    assert uncapped > 30 * 2**20
    assert "Traceback" not in log


FLOOD = """
import socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
refused = 0
started = time.monotonic()
for _ in range(count):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if s.recv(100) == b"error server full\\n":
        refused += 1
    s.close()
print(refused, time.monotonic() - started)
"""


def test_connection_flood_is_refused_cheaply(figure):
    """Thousands of connections beyond --max-connections are refused with
    'error server full' while established peers keep their round trips."""
    server = Server("--interval", "1", "--timeout", "3", "--min-ping-interval",
                    "0.01", "--max-connections", "10")
    floods = []
    try:
        peers = [server.connect() for _ in range(10)]
        for peer in peers:
            peer.send(b"ping 0\n")
            assert peer.readline() == b"pong 0"
        floods = [
            subprocess.Popen([sys.executable, "-c", FLOOD, str(server.port), "1000"],
                             stdout=subprocess.PIPE, text=True)
            for _ in range(3)
        ]
        rtts = []
        k = 0
        while any(f.poll() is None for f in floods):
            k += 1
            for peer in peers:
                sent = time.monotonic()
                peer.send(b"ping %d\n" % k)
                assert peer.readline() == b"pong %d" % k
                rtts.append(time.monotonic() - sent)
            time.sleep(0.02)
        results = [f.communicate()[0].split() for f in floods]
        refused = sum(int(r[0]) for r in results)
        rate = 3000 / max(float(r[1]) for r in results)
        assert refused == 3000
        rtts.sort()
        p99 = rtts[int(len(rtts) * 0.99)]
        figure("flood of 3,000 refused connections: refusals per second", rate, "/s")
        figure("established peers' RTT p50 during the flood", rtts[len(rtts) // 2] * 1000, "ms")
        figure("established peers' RTT p99 during the flood", p99 * 1000, "ms")
        assert p99 < 0.2
        for peer in peers:
            peer.send(b"ping last\n")
            assert peer.readline() == b"pong last"
    finally:
        for f in floods:
            f.kill()
        server.stop()
    log = server.log()
    assert "Traceback" not in log
    assert log.count("refused 127.0.0.1") <= 2


def test_authentication_end_to_end(tmp_path):
    """With --auth-token-file the client with the token gets its echo; a
    client with the wrong token is told 'unauthorized' and exits 1."""
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("s3cret\n")
    bad.write_text("guess\n")
    server = Server("--auth-token-file", str(good), "--auth-timeout", "1")
    try:
        client = LoggedProcess(
            CLIENT + ["--auth-token-file", str(good), f"127.0.0.1:{server.port}"],
            stdin=subprocess.PIPE,
        )
        client.process.stdin.write(b"let me in\n")
        client.process.stdin.flush()
        wait_for(lambda: "let me in\n" in client.log(), what="the echo")
        client.stop()
        intruder = LoggedProcess(
            CLIENT + ["--auth-token-file", str(bad), f"127.0.0.1:{server.port}"],
            stdin=subprocess.DEVNULL,
        )
        assert intruder.process.wait(10) == 1
        assert "unauthorized" in intruder.log()
        silent = server.connect()
        assert silent.readline() == b"error unauthorized"
    finally:
        server.stop()
    assert "Traceback" not in server.log()


def test_tls_end_to_end(tmp_path):
    """ssl: on the server and tls: on the client, certificate verified; a
    client that does not trust the certificate never gets through."""
    key, cert, trust = make_certificate(tmp_path)
    server = Server(
        "--interval", "0.2", "--timeout", "0.6",
        description=f"ssl:0:privateKey={key}:certKey={cert}:interface=127.0.0.1",
    )
    try:
        client = LoggedProcess(
            CLIENT + ["--interval", "0.2", "--timeout", "0.6",
                      f"tls:127.0.0.1:{server.port}:trustRoots={trust}"],
            stdin=subprocess.PIPE,
        )
        client.process.stdin.write(b"over tls\n")
        client.process.stdin.flush()
        wait_for(lambda: "over tls\n" in client.log(), what="the echo over TLS")
        time.sleep(1.5)  # several heartbeats over TLS: still connected
        assert client.log().count("connected to") == 1
        client.stop()
        untrusting = LoggedProcess(
            CLIENT + [f"tls:127.0.0.1:{server.port}"], stdin=subprocess.PIPE
        )
        untrusting.process.stdin.write(b"should not pass\n")
        untrusting.process.stdin.flush()
        wait_for(lambda: "certificate verify failed" in untrusting.log(),
                 what="the verification failure")
        assert "should not pass\n" not in untrusting.log()
        untrusting.stop()
    finally:
        server.stop()
    assert "Traceback" not in server.log()
