"""
C{twistd heartbeat --workers N}: processes sharing one port, supervised.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from twisted.application.internet import StreamServerEndpointService
from twisted.python import usage

from heartbeat._service.supervisor import WorkerPool
from heartbeat._service.tap import Options, makeService

TWISTD = "from twisted.scripts.twistd import run; run()"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return {int(child) for child in f.read().split()}
    except OSError:
        return set()


def wait_for(predicate, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not true after {seconds}s")


def ping(port, token):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as peer:
        peer.sendall(b"ping %s\n" % (token,))
        return peer.makefile("rb").readline()


@pytest.fixture
def pool(tmp_path):
    """
    A server with two workers on a free port: (process, port, log path).
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "twistd.log"
    process = subprocess.Popen(
        [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "-l", str(log),
         "heartbeat", "--port", f"tcp:{port}:interface=127.0.0.1",
         "--interval", "0.2", "--timeout", "0.6", "--workers", "2"],
        cwd=REPO,
    )
    try:
        wait_for(lambda: log.exists()
                 and log.read_text().count("HeartbeatServerFactory starting on") == 2)
        wait_for(lambda: ping(port, b"up") == b"pong up\n")
        yield process, port, log
    finally:
        for pid in children(process.pid):
            os.kill(pid, signal.SIGKILL)
        process.kill()
        process.wait()


def test_workers_answer_on_the_shared_port(pool):
    """Every connection to the one port is served by one of two workers
    (the log names the address they serve), and a silent peer is still
    closed at its timeout."""
    process, port, log = pool
    assert f"2 workers serving 127.0.0.1:{port}\n" in log.read_text()
    # Without Redis a client could come back to the other worker.
    assert "no sessions: --workers without --redis" in log.read_text()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as asking:
        asking.sendall(b"heartbeat/1 resume\n")
        assert b"session=" not in asking.makefile("rb").readline()
    assert [ping(port, b"%d" % n) for n in range(20)] == [
        b"pong %d\n" % n for n in range(20)
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as silent:
        start = time.monotonic()
        with pytest.raises(ConnectionResetError):
            while silent.recv(100):
                pass
        assert 0.6 <= time.monotonic() - start < 1.1


def test_a_dead_worker_is_logged_and_replaced(pool):
    """Killing a worker costs only its connections: the parent logs it,
    starts another, and the port keeps answering."""
    process, port, log = pool
    victim, survivor = sorted(children(process.pid))
    os.kill(victim, signal.SIGKILL)
    replaced = wait_for(lambda: children(process.pid) - {victim, survivor})
    assert len(replaced) == 1
    assert ping(port, b"again") == b"pong again\n"
    text = wait_for(lambda: "restarting" in log.read_text() and log.read_text())
    assert f"(pid {victim}) died" in text


def test_sigterm_stops_every_worker(pool):
    """SIGTERM to the parent stops the workers too and exits cleanly."""
    process, port, log = pool
    workers = children(process.pid)
    process.terminate()
    # twistd re-raises the signal it stopped on, as its exit status.
    assert process.wait(15) in (0, -signal.SIGTERM)
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}/task") or _is_zombie(pid)
    text = log.read_text()
    assert text.count("Main loop terminated") == 3
    assert "Server Shut Down" in text
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)


def _is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def served(options):
    """What makeService serves: the one service inside the one that says
    when the server is up."""
    [service] = makeService(options)
    return service


def parse(*arguments):
    options = Options()
    options.parseOptions(list(arguments))
    return options


def test_one_worker_is_the_plain_single_process_server():
    """Without --workers nothing changes: one process, no supervisor."""
    options = parse("--port", "tcp:0:interface=127.0.0.1")
    assert options["workers"] == 1
    assert isinstance(served(options), StreamServerEndpointService)
    assert isinstance(
        served(parse("--port", "tcp:0", "--workers", "3")), WorkerPool
    )


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--workers", "0"], "--workers must be a whole number >= 1"),
        (["--workers", "two"], "--workers must be a whole number >= 1"),
        (["--workers", "2", "--port", "ssl:1234:privateKey=k.pem"],
         "--workers above 1 needs a tcp:, tcp6: or unix: --port"),
        (["--workers", "2", "--status-port", "tcp:0"],
         "--status-port with --workers above 1 needs --redis"),
        (["--workers", "2", "--websocket-port", "tcp:0"],
         "--websocket-port with --workers above 1 needs --redis"),
    ],
)
def test_bad_workers_are_refused_in_one_line(arguments, message):
    """A bad --workers value is a one-line usage error naming it."""
    with pytest.raises(usage.UsageError, match=message):
        parse(*arguments)


def test_a_port_in_use_stops_the_workers_parent_in_one_line(pool):
    """Workers on a port already taken: one line naming it, no traceback."""
    process, port, log = pool
    taken = subprocess.run(
        [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "heartbeat",
         "--port", f"tcp:{port}:interface=127.0.0.1", "--workers", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=30,
    )
    assert taken.returncode != 0
    assert "cannot listen" in taken.stderr + taken.stdout
    assert "Traceback" not in taken.stderr + taken.stdout


def test_help_says_broadcast_stays_within_a_worker():
    """--help tells operators that a broadcast does not cross workers
    unless they share a Redis."""
    assert "without --redis, --broadcast reaches only the connections of the same worker" in (
        " ".join(str(Options()).split())
    )
