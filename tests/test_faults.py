"""
Faults over real loopback sockets: half-open paths through a fault proxy,
stopped processes, a blocked reactor, a crash under a thousand clients, and
a reconnect storm.  Short settings: interval 0.2 s, timeout 0.6 s.
"""

import signal
import subprocess
import sys
import time

import pytest

from .processes import (
    CLIENT,
    Controlled,
    FaultProxy,
    LoadClients,
    LoggedProcess,
    Peer,
    Server,
    wait_for,
)

INTERVAL, TIMEOUT = 0.2, 0.6
SHORT = ["--interval", str(INTERVAL), "--timeout", str(TIMEOUT)]
BACKOFF = ["--initial-delay", "0.2", "--max-delay", "0.5"]


def start_client(port, *extra):
    client = LoggedProcess(
        CLIENT + SHORT + BACKOFF + list(extra) + [f"127.0.0.1:{port}"],
        stdin=subprocess.PIPE,
    )
    return client


def echo(client, text, timeout=10.0):
    """
    Type a line into a heartbeat-client and wait for its echo.
    """
    client.process.stdin.write(text.encode() + b"\n")
    client.process.stdin.flush()
    wait_for(lambda: client.log().count(text + "\n") >= 1, timeout, what=text)


def wait_log(process, text, timeout=10.0, count=1):
    return wait_for(
        lambda: process.log().count(text) >= count, timeout, what=repr(text)
    )


@pytest.fixture
def server():
    server = Server(*SHORT)
    yield server
    server.stop()
    assert "Traceback" not in server.log(), server.log()


@pytest.fixture
def cleanup():
    """
    Stops every process a test registers, whatever happens.
    """
    processes = []
    yield processes.append
    for process in reversed(processes):
        if isinstance(process, LoggedProcess):
            process.signal(signal.SIGCONT)
        process.stop()


# Half-open paths through the proxy


def client_behind_proxy(server, cleanup, *commands):
    """
    A heartbeat-client reaching C{server} through a fault proxy that has
    already obeyed C{commands}; both are stopped at the end of the test.
    """
    proxy = FaultProxy(server.port)
    cleanup(proxy)
    for command in commands:
        proxy.command(command)
    client = start_client(proxy.port)
    cleanup(client)
    return proxy, client


def seconds_until_silent(proxy, watcher):
    """
    Freeze the path and time how long C{watcher} takes to log the silence.
    """
    frozen = time.monotonic()
    proxy.command("freeze")
    wait_log(watcher, "silent for", timeout=5)
    return time.monotonic() - frozen


def test_server_drops_a_client_behind_a_frozen_path(server, cleanup, figure):
    """A live client whose path freezes (no FIN, no RST) is closed by the
    server within the timeout."""
    proxy, client = client_behind_proxy(server, cleanup)
    echo(client, "hello")
    elapsed = seconds_until_silent(proxy, server)
    assert TIMEOUT - INTERVAL - 0.05 <= elapsed <= TIMEOUT + 0.5
    figure("server drops a frozen client, seconds after the freeze", elapsed, "s")


def test_client_detects_a_frozen_server_and_returns_after_thaw(
    server, cleanup, figure
):
    """The client notices a frozen server within the timeout, aborts, and is
    talking again soon after the path thaws."""
    proxy, client = client_behind_proxy(server, cleanup)
    echo(client, "before")
    detected = seconds_until_silent(proxy, client)
    assert detected <= TIMEOUT + 0.5
    time.sleep(1.0)
    thawed = time.monotonic()
    proxy.command("thaw")
    echo(client, "after", timeout=0.5 + TIMEOUT + 5)
    back = time.monotonic() - thawed
    figure("client detects a frozen server, seconds after the freeze", detected, "s")
    figure("client talking again, seconds after the thaw", back, "s")


def test_slow_but_live_link_is_never_dropped(server, cleanup):
    """0.15 s of latency each way (RTT 0.3 s, below the 0.6 s timeout):
    nobody is dropped over ten timeouts."""
    proxy, client = client_behind_proxy(server, cleanup, "delay 0.15")
    echo(client, "slow but alive")
    time.sleep(10 * TIMEOUT)
    echo(client, "still alive")
    assert "silent for" not in server.log() + client.log()
    assert client.log().count("connected to") == 1


def test_cut_path_is_redialled(server, cleanup):
    """When the path is cut (both sides closed) the client reconnects."""
    proxy, client = client_behind_proxy(server, cleanup)
    echo(client, "one")
    proxy.command("cut")
    wait_log(client, "connection lost")
    echo(client, "two")
    assert client.log().count("connected to") == 2


# Stopped processes


def test_stopped_client_is_dropped_then_returns(server, cleanup, figure):
    """SIGSTOP a client: the server drops it at the timeout; SIGCONT it: it
    reconnects by itself."""
    client = start_client(server.port)
    cleanup(client)
    echo(client, "hello")
    stopped = time.monotonic()
    client.signal(signal.SIGSTOP)
    wait_log(server, "silent for", timeout=5)
    elapsed = time.monotonic() - stopped
    assert elapsed <= TIMEOUT + 0.5
    client.signal(signal.SIGCONT)
    # A line typed before the client has seen the reset would be written into
    # the dead connection (and lost, as TCP gives no receipt): wait for it.
    wait_log(client, "connected to", count=2)
    echo(client, "back again")
    figure("server drops a SIGSTOPped client, seconds", elapsed, "s")


def test_stopped_server_recovers_cleanly(server, cleanup, figure):
    """SIGSTOP the server past the clients' timeout, then SIGCONT: every
    client is back, stale connections are cleaned up, no traceback."""
    clients = LoadClients(server.port, 20, "--interval", "0.2", "--timeout", "0.6",
                          "--initial-delay", "0.2", "--max-delay", "1")
    cleanup(clients)
    wait_for(lambda: all(c["healthyAt"] for c in clients.report()), what="clients")
    server.signal(signal.SIGSTOP)
    time.sleep(2 * TIMEOUT)
    resumed = time.time()
    server.signal(signal.SIGCONT)
    wait_for(
        lambda: all(c["healthyAt"][-1] > resumed for c in clients.report()),
        timeout=1.0 + 5,
        what="every client back",
    )
    back = max(c["healthyAt"][-1] for c in clients.report()) - resumed
    log = lambda: server.log()
    wait_for(
        lambda: log().count(" connected") - log().count("disconnected") == 20,
        what="the server to drop its stale connections",
    )
    figure("20 clients back after a 1.2 s SIGSTOP of the server, s", back, "s")


def test_blocked_reactor_is_not_a_dead_peer(cleanup):
    """The server's reactor blocks for twice the timeout while one peer
    keeps sending: that peer survives; a silent one is still dropped."""
    server = Controlled([sys.executable, "tests/blockingserver.py", "0.2", "0.6"])
    cleanup(server)
    port = int(server.readline().split()[-1])
    talker, silent = Peer(port), Peer(port)
    talker.send(b"ping 0\n")
    assert talker.readline() == b"pong 0"
    talker.send(b"block 1.2\n")
    for k in range(1, 13):
        time.sleep(0.1)
        talker.send(b"ping %d\n" % k)
    replies = [talker.readline() for _ in range(13)]
    assert replies[0] == b"block 1.2"
    assert [r for r in replies if r.startswith(b"pong")] == [
        b"pong %d" % k for k in range(1, 13)
    ]
    assert silent.closed_within(2.0)
    for k in range(13, 23):
        talker.send(b"ping %d\n" % k)
        while (line := talker.readline()).startswith(b"ping"):
            talker.send(b"pong" + line[4:] + b"\n")
        assert line == b"pong %d" % k
        time.sleep(0.1)


# Crash and storm


def wait_all(groups, predicate, timeout, what):
    return wait_for(
        lambda: all(predicate(c) for g in groups for c in g.report()),
        timeout=timeout,
        interval=0.1,
        what=what,
    )


def test_crash_under_a_thousand_clients(cleanup, figure):
    """SIGKILL the server under 1,000 clients in 4 processes and restart it:
    every client is back within the backoff cap plus a margin, and every
    line sent during the outage is delivered once, in order."""
    options = ["--interval", "0.5", "--timeout", "1.5"]
    server = Server(*options)
    port = server.port
    cleanup(server)
    groups = [
        LoadClients(port, 250, *options, "--initial-delay", "0.5", "--max-delay", "2")
        for _ in range(4)
    ]
    for group in groups:
        cleanup(group)
    wait_all(groups, lambda c: c["healthyAt"], 60, "1,000 clients connected")
    for group in groups:
        group.command("send before 2")
    wait_all(groups, lambda c: c["exact"] and c["received"] == 2, 30, "echoes")
    server.kill()
    time.sleep(0.5)
    for group in groups:
        group.command("send outage 3")
    restarted = time.time()
    server = Server(*options, port=port)
    cleanup(server)
    wait_all(groups, lambda c: c["received"] == 5, 2 + 10, "buffered lines")
    reports = [c for g in groups for c in g.report()]
    assert all(c["exact"] for c in reports)
    assert all(len(c["healthyAt"]) == 2 for c in reports)
    assert all(g.process.poll() is None for g in groups)
    back = max(c["healthyAt"][-1] for c in reports) - restarted
    assert back <= 2 + 3
    assert "Traceback" not in server.log()
    figure("1,000 clients all back after restart (cap 2 s), s", back, "s")


def peak_rate(times, start):
    """
    The highest count in any 100 ms window after C{start}, per second.
    """
    windows = {}
    for t in times:
        window = int((t - start) * 10)
        windows[window] = windows.get(window, 0) + 1
    return max(windows.values()) * 10


def storm(jitter: bool):
    """
    Cut 2,000 clients at once (server killed and restarted).

    @return: the peak rate of connection attempts the server faced, the
        peak rate of clients back and healthy, and the time until the last
        was back.
    """
    options = ["--interval", "1", "--timeout", "3"]
    server = Server(*options, "--max-connections", "5000")
    port = server.port
    backoff = ["--initial-delay", "1", "--max-delay", "2"]
    if not jitter:
        backoff.append("--no-jitter")
    groups = [LoadClients(port, 500, *options, *backoff) for _ in range(4)]
    try:
        wait_all(groups, lambda c: c["healthyAt"], 60, "2,000 clients connected")
        cut = time.time()
        server.kill()
        server = Server(*options, "--max-connections", "5000", port=port)
        wait_all(groups, lambda c: c["healthyAt"][-1] > cut, 30, "every return")
        reports = [c for g in groups for c in g.report()]
    finally:
        for group in groups:
            group.stop()
        server.stop()
    attempts = [t for c in reports for t in c["attemptedAt"] if t > cut]
    returns = [c["healthyAt"][-1] for c in reports]
    return peak_rate(attempts, cut), peak_rate(returns, cut), max(returns) - cut


def test_reconnect_storm_is_spread_by_jitter(figure):
    """2,000 clients cut at once: with full jitter the server faces a far
    lower peak of connection attempts than without."""
    for jitter in (True, False):
        attempts, returns, last = storm(jitter)
        mode = "with full jitter" if jitter else "without jitter"
        figure(f"storm of 2,000 {mode}: peak attempts/s", attempts, "/s")
        figure(f"storm of 2,000 {mode}: peak returns/s", returns, "/s")
        figure(f"storm of 2,000 {mode}: all back within", last, "s")
        if jitter:
            jittered = attempts
    assert jittered < attempts / 3
