"""
Detection over real sockets: a peer that answered pings and vanished is
dropped at the interval plus the pong deadline; peers that never answer
keep the timeout rule; a long round trip on a slow link is measured with
one ping outstanding; a thousand healthy connections behind real latency
are never dropped.

The silent path and the slow link are real: two network namespaces joined
by veth (L{tests.netns}), the link set down or shaped.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from .netns import ECHO, link  # noqa: F401  (a fixture)
from .processes import (
    CLIENT,
    ROOT,
    FaultProxy,
    LoadClients,
    LoggedProcess,
    Server,
    wait_for,
)

PEER = [sys.executable, str(ROOT / "tests" / "linepeer.py")]
# Seconds a drop may come after its rule says, on a machine others share.
LATENESS = 0.5


def events(process):
    """
    A linepeer's reports so far: C{(event, token or None, time)}.
    """
    found = []
    for line in process.log().splitlines():
        words = line.split()
        if words and words[0] in ("connected", "ping", "pong", "line", "closed"):
            token = words[1] if len(words) == 3 else None
            found.append((words[0], token, float(words[-1])))
    return found


def times(process, event):
    return [at for name, _, at in events(process) if name == event]


@pytest.fixture
def status_socket():
    """
    A path for a status port's unix socket, which a test process outside
    the server's namespace can reach.
    """
    with tempfile.TemporaryDirectory(prefix="hb-") as directory:
        yield os.path.join(directory, "status")


def http_get(path, unixSocket):
    """
    The body of C{GET path} from the status port on C{unixSocket}.
    """
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(unixSocket)
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: status\r\n\r\n".encode())
        response = b""
        while chunk := sock.recv(1 << 16):
            response += chunk
    return response.split(b"\r\n\r\n", 1)[1]


def metrics(unixSocket):
    values = {}
    for line in http_get("/metrics", unixSocket).decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_the_target_holds_and_peers_that_never_answer_are_kept(figure):
    """The defaults scaled down tenfold (interval 2.5 s, timeout 9 s, pong
    timeout 0.5 s): a peer that answered pings and fell silent is dropped
    within interval + pong timeout (+ lateness) of its last data, while a
    client that sends a line every 5.5 s, as Workerman's documentation
    advises (every 55 s), and one that sends a line every timeout - 1
    seconds, neither ever answering a ping, are never dropped; and
    heartbeat-client takes that timing from the server."""
    interval, timeout, pongTimeout = 2.5, 9.0, 0.5
    server = Server(
        "--interval", str(interval), "--timeout", str(timeout),
        "--pong-timeout", str(pongTimeout),
    )
    processes = [server]
    try:
        port = str(server.port)
        vanishing = LoggedProcess(PEER + ["127.0.0.1", port, "--answer", "2"])
        workerman = LoggedProcess(
            PEER + ["127.0.0.1", port, "--answer", "0", "--every", "5.5"])
        patient = LoggedProcess(
            PEER + ["127.0.0.1", port, "--answer", "0", "--every", str(timeout - 1)])
        client = LoggedProcess(
            CLIENT + [f"127.0.0.1:{port}"], stdin=subprocess.PIPE)
        processes += [vanishing, workerman, patient, client]
        wait_for(lambda: times(vanishing, "closed"), timeout=4 * interval + 5,
                 what="the silent peer's drop")
        [closed] = times(vanishing, "closed")
        lastData = times(vanishing, "pong")[-1]
        detected = closed - lastData
        assert interval + pongTimeout - 0.05 <= detected
        assert detected <= interval + pongTimeout + LATENESS
        # Three of the Workerman client's periods, two of the other's.
        time.sleep(max(0.0, 3 * 5.5 + 1 - (time.monotonic() - times(workerman, "connected")[0])))
        for kept in (workerman, patient):
            assert times(kept, "closed") == []
            assert times(kept, "ping"), "never pinged"
        assert len(times(workerman, "line")) >= 3
        assert len(times(patient, "line")) >= 2
        log = server.log()
        assert log.count("past the pong deadline") == 1
        assert "(timeout" not in log
        assert ("following the server's settings: interval 2.5, timeout 9, "
                "pong-timeout 0.5") in client.log()
        figure("silent peer dropped after its last data (interval 2.5 s + "
               "pong timeout 0.5 s)", detected, "s")
    finally:
        for process in reversed(processes):
            process.stop()
    assert "Traceback" not in server.log()


def test_a_vanished_peer_is_dropped_at_interval_plus_pong_deadline(link, figure):  # noqa: F811
    """Across a link set down (no FIN, no RST: the peer is simply gone), a
    peer that has answered a ping is dropped one interval plus the pong
    deadline after its last pong, long before the timeout."""
    interval, timeout, pongTimeout = 1.0, 8.0, 0.5
    server = Server(
        "--interval", str(interval), "--timeout", str(timeout),
        "--pong-timeout", str(pongTimeout),
        description=f"tcp:0:interface={link.addressA}",
        prefix=link.command(link.a, []),
    )
    peer = LoggedProcess(
        link.command(link.b, PEER + [link.addressA, str(server.port)]))
    try:
        wait_for(lambda: times(peer, "pong"), timeout=interval + 5, what="a pong")
        link.down()
        [lastPong] = times(peer, "pong")
        wait_for(lambda: "past the pong deadline" in server.log(),
                 timeout=timeout + 5, what="the drop")
        detected = time.monotonic() - lastPong
        assert interval + pongTimeout - 0.05 <= detected
        assert detected <= interval + pongTimeout + LATENESS
        assert times(peer, "closed") == []  # it never heard: the path is gone
        figure("vanished peer (link down) dropped after its last pong "
               "(interval 1 s + pong timeout 0.5 s)", detected, "s")
    finally:
        peer.stop()
        server.stop()
    assert "Traceback" not in server.log()


# Takes the queue's datagrams in namespace a, so that no ICMP error comes
# back for each one, queueing on the other direction.
DISCARD = textwrap.dedent("""
    import socket, sys, time
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).bind((sys.argv[1], 9))
    print("bound", flush=True)
    time.sleep(3600)
""")

# Keeps a standing queue of BYTES on the shaped link out of namespace b
# (device DEVICE), topping it up with datagrams as tc shows it drain: every
# packet that leaves b waits behind it, about BYTES / rate seconds.
QUEUE = textwrap.dedent("""
    import json, socket, subprocess, sys, time
    destination, device, target = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    while True:
        shown = subprocess.run(["tc", "-s", "-j", "qdisc", "show", "dev", device],
                               capture_output=True, text=True).stdout
        backlog = json.loads(shown)[0]["backlog"]
        while backlog < target:
            sender.sendto(b"x" * 500, (destination, 9))
            backlog += 542
        time.sleep(0.02)
""")

# The link's round trip, measured beside the server: a probe in namespace
# b that sends a line to the echo in a, waits for it, and rests 0.5 s.
PROBE = textwrap.dedent("""
    import socket, sys, time
    echo = socket.create_connection((sys.argv[1], 7000), timeout=60)
    while True:
        sent = time.monotonic()
        echo.sendall(b"probe\\n")
        echo.recv(100)
        print("rtt", time.monotonic() - sent, flush=True)
        time.sleep(0.5)
""")


def test_a_long_round_trip_is_measured_with_one_ping_outstanding(
    link, status_socket, figure  # noqa: F811
):
    """On a link shaped to 64 kbit/s with 1.2 s of traffic queued on the
    way back (a round trip of about 1.2 s, more than the 1 s interval),
    every ping the server sends is answered before the next goes out and
    gives a sample, the measured round trip is the link's, and the peer is
    never dropped."""
    link.shape("64kbit")
    server = Server(
        "--interval", "1", "--timeout", "30", "--status-port", f"unix:{status_socket}",
        description=f"tcp:0:interface={link.addressA}",
        prefix=link.command(link.a, []),
    )
    port = str(server.port)
    processes = [server]
    try:
        discard, echo = (
            LoggedProcess(link.command(link.a, [sys.executable, "-c", script, link.addressA]))
            for script in (DISCARD, ECHO)
        )
        processes += [discard, echo]
        wait_for(lambda: "bound" in discard.log() and "listening" in echo.log(),
                 what="the discard socket and the echo")
        processes.append(LoggedProcess(link.command(link.b, [
            sys.executable, "-c", QUEUE, link.addressA, link.device(link.b), "9600"])))
        peer = LoggedProcess(link.command(link.b, PEER + [link.addressA, port]))
        probe = LoggedProcess(
            link.command(link.b, [sys.executable, "-c", PROBE, link.addressA]))
        processes += [peer, probe]
        time.sleep(25)
        counts = metrics(status_socket)
        assert times(peer, "closed") == []
        pings = len(times(peer, "ping"))
        assert counts["heartbeat_pings_sent_total"] == pings
        samples = counts["heartbeat_rtt_seconds_count"]
        measured = counts["heartbeat_rtt_seconds_sum"] / samples
        probed = sorted(float(line.split()[1]) for line in probe.log().splitlines()
                        if line.startswith("rtt "))
        real = probed[len(probed) // 2]
        assert real > 1.0, f"the link's round trip is only {real:.2f} s"
        assert pings >= 5
        assert pings - 1 <= samples <= pings
        assert 0.8 * real <= measured <= 1.2 * real
        figure("64 kbit/s link: round trip probed (median)", real, "s")
        figure("64 kbit/s link: round trip the server measured (mean)", measured, "s")
        figure("64 kbit/s link: server pings, samples", f"{pings}, {samples:.0f}")
    finally:
        for process in reversed(processes):
            process.stop()
    assert "Traceback" not in server.log()
    assert "silent for" not in server.log()


def test_healthy_connections_behind_real_latency_are_never_dropped(status_socket, figure):
    """A thousand library clients behind a proxy that delays each direction
    by 200 +/- 150 ms (round trips of 0.1 to 0.7 s, jittered), with the
    timing scaled down (interval 1 s, timeout 3.6 s, pong timeout 1.5 s),
    are never dropped, by the server or by themselves, while the pong
    deadline watches every one of them on both sides.  Set
    HEARTBEAT_FALSE_DROP_SECONDS to hold them longer than the 30 s of the
    suite (600 for the README's figure)."""
    seconds = float(os.environ.get("HEARTBEAT_FALSE_DROP_SECONDS", "30"))
    server = Server(
        "--interval", "1", "--timeout", "3.6", "--pong-timeout", "1.5",
        "--status-port", f"unix:{status_socket}",
    )
    processes = [server]
    try:
        proxy = FaultProxy(server.port)
        processes.append(proxy)
        proxy.command("delay 0.2 0.15")
        groups = [LoadClients(proxy.port, 250, "--max-delay", "2") for _ in range(4)]
        processes += groups

        def reports():
            return [c for g in groups for c in g.report()]

        wait_for(lambda: all(c["healthyAt"] for c in reports()), timeout=120,
                 interval=0.5, what="1,000 clients connected")
        started = time.monotonic()
        time.sleep(seconds)
        held = time.monotonic() - started
        clients = reports()
        status = json.loads(http_get("/status.json", status_socket))
        assert [len(c["healthyAt"]) for c in clients] == [1] * 1000
        assert [len(c["attemptedAt"]) for c in clients] == [1] * 1000
        assert status["totals"]["open"] == 1000
        assert status["totals"]["timed_out"] == 0
        # The rule was on: every connection measured on both sides, the
        # clients following the server's interval.
        assert all(c["pongDeadline"] and c["interval"] == 1.0 for c in clients)
        rtts = sorted(row["smoothed_rtt"] for row in status["connections"]
                      if row["smoothed_rtt"] is not None)
        assert len(rtts) == 1000
        assert 0.2 < rtts[500] < 0.7
        figure(f"1,000 connections, 200 +/- 150 ms each way, held {held:.0f} s: "
               "drops", 0)
        figure("1,000 connections behind latency: server's smoothed RTT "
               "median, max", f"{rtts[500]:.3f} s, {rtts[-1]:.3f} s")
    finally:
        for process in reversed(processes):
            process.stop()
    log = server.log()
    assert "silent for" not in log and "Traceback" not in log
