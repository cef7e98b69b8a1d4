"""
The real server and client over loopback sockets, at short settings
(interval 0.2 s, timeout 0.6 s).
"""

import subprocess
import time

import pytest

from .processes import CLIENT, LoggedProcess, Server, wait_for

INTERVAL, TIMEOUT = 0.2, 0.6
SHORT = ["--interval", str(INTERVAL), "--timeout", str(TIMEOUT)]


@pytest.fixture(scope="module")
def server():
    server = Server(*SHORT, "--max-line-length", "1000")
    yield server
    server.stop()
    assert "Traceback" not in server.log(), server.log()


def test_ping_is_answered(server):
    """A ping gets its pong, token and all, over a real socket."""
    peer = server.connect()
    peer.send(b"ping hello-42\r\nping\n")
    assert peer.readline() == b"pong hello-42"
    assert peer.readline() == b"pong"
    peer.close()


def test_silent_peer_is_pinged_then_closed_within_timeout(server):
    """A silent peer hears pings every interval and is dropped at timeout."""
    peer = server.connect()
    started = time.monotonic()
    assert peer.closed_within(TIMEOUT + 0.5)
    elapsed = time.monotonic() - started
    assert TIMEOUT - 0.05 <= elapsed <= TIMEOUT + 0.5
    assert peer._buffer.startswith(b"ping 1\nping 2\n")
    assert "silent for" in wait_for(
        lambda: "silent for" in server.log() and server.log(), what="timeout log"
    )


def test_answering_peer_stays_connected(server):
    """A peer that answers every ping is never dropped."""
    peer = server.connect()
    deadline = time.monotonic() + 5 * TIMEOUT
    answered = 0
    while time.monotonic() < deadline:
        line = peer.readline()
        assert line.startswith(b"ping"), line
        peer.send(b"pong" + line[4:] + b"\n")
        answered += 1
    assert answered >= 5 * TIMEOUT / INTERVAL - 2
    peer.send(b"ping still-here\n")
    assert peer.readline() == b"pong still-here"
    peer.close()


def test_echo_keeps_bytes_exact(server):
    """Application lines come back byte for byte: non-UTF-8, empty, odd pings."""
    peer = server.connect()
    lines = [b"hello", b"\xff\xfe\x80 not utf-8", b"", b"ping " + b"x" * 65, b"ping a b"]
    peer.send(b"".join(line + b"\n" for line in lines))
    assert [peer.readline() for _ in lines] == lines
    peer.close()


def test_over_long_line_gets_error_then_close(server):
    """A peer streaming a megabyte with no newline reads the error, then EOF."""
    peer = server.connect()
    try:
        peer.send(b"x" * 1_000_000)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert peer.readline() == b"error line too long"
    assert peer.closed_within(5)


def test_bad_peers_leave_others_untouched(server):
    """Half lines, resets and garbage on some connections: another peer's
    pings are still answered and the log has no traceback."""
    good = server.connect()
    for behaviour in range(20):
        bad = server.connect()
        bad.send(b"\x00\xff half a line")
        if behaviour % 2:
            bad.reset()
        else:
            bad.close()
    good.send(b"ping ok\n")
    assert good.readline() == b"pong ok"
    good.close()


def test_server_full_refuses_with_a_reason():
    """With --max-connections 2 the third peer hears 'error server full'
    and the first two are untouched."""
    server = Server("--max-connections", "2")
    try:
        first, second = server.connect(), server.connect()
        first.send(b"ping 1\n")
        assert first.readline() == b"pong 1"
        third = server.connect()
        assert third.readline() == b"error server full"
        assert third.closed_within(5)
        for peer in (first, second):
            peer.send(b"ping again\n")
            assert peer.readline() == b"pong again"
        assert "server full" in server.log()
    finally:
        server.stop()


def test_broadcast_relays_to_everyone_else():
    """With --broadcast a line reaches every other connection, not its sender."""
    server = Server("--broadcast")
    try:
        peers = [server.connect() for _ in range(3)]
        # Make sure all three are registered before broadcasting.
        for peer in peers:
            peer.send(b"ping sync\n")
            assert peer.readline() == b"pong sync"
        peers[0].send(b"news\n")
        assert peers[1].readline() == b"news"
        assert peers[2].readline() == b"news"
        peers[0].send(b"ping 2\n")
        assert peers[0].readline() == b"pong 2"
    finally:
        server.stop()


def test_bad_option_exits_nonzero_without_traceback():
    """twistd refuses a bad value with a message naming it, no traceback."""
    from .processes import ENV, TWISTD

    result = subprocess.run(
        TWISTD + ["-n", "--pidfile=", "heartbeat", "--interval", "10", "--timeout", "5"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "--timeout must be greater than --interval" in output
    assert "Traceback" not in output


def test_client_reconnects_and_delivers_buffered_lines():
    """heartbeat-client survives a server kill and restart: lines typed while
    the server was down are delivered, in order, once it is back."""
    server = Server(*SHORT)
    port = server.port
    client = LoggedProcess(
        CLIENT
        + SHORT
        + ["--initial-delay", "0.2", "--max-delay", "0.5", f"127.0.0.1:{port}"],
        stdin=subprocess.PIPE,
    )
    try:
        client.process.stdin.write(b"before\n")
        client.process.stdin.flush()
        wait_for(lambda: "before\n" in client.log(), what="the echo of 'before'")
        server.kill()
        wait_for(lambda: "connection lost" in client.log(), what="loss detected")
        for line in (b"during 1\n", b"during 2\n", b"during 3\n"):
            client.process.stdin.write(line)
        client.process.stdin.flush()
        time.sleep(0.3)
        server = Server(*SHORT, port=port)
        wait_for(lambda: "during 3\n" in client.log(), timeout=5, what="flush")
        output = client.log()
        assert output.index("during 1\n") < output.index("during 2\n") < output.index(
            "during 3\n"
        )
        assert output.count("during 2\n") == 1
        assert client.process.poll() is None
    finally:
        server.stop()
        # One SIGTERM: a second one could land after the reactor has put the
        # default handlers back, and kill the exiting client.
        status = client.stop()
    assert status == 0
    assert "Traceback" not in client.log() + server.log()


def test_client_exits_when_server_refuses_for_good():
    """A client told 'error unauthorized' stops retrying and exits non-zero."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def refuse():
        conn, _ = listener.accept()
        conn.sendall(b"error unauthorized\n")
        conn.shutdown(socket.SHUT_WR)
        conn.recv(100)
        conn.close()

    thread = threading.Thread(target=refuse, daemon=True)
    thread.start()
    client = LoggedProcess(CLIENT + [f"127.0.0.1:{port}"], stdin=subprocess.DEVNULL)
    try:
        assert client.process.wait(10) == 1
        assert "unauthorized" in client.log()
        assert "Traceback" not in client.log()
    finally:
        client.stop()
        listener.close()
