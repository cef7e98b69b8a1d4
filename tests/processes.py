"""
Real processes on loopback for the integration tests: a twistd heartbeat
server, the heartbeat-client command, and plain sockets as peers.

Every wait polls against a deadline; every process started is killed at the
end of its test.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
CLIENT = [sys.executable, "-m", "heartbeat._service.client_main"]


def free_port() -> int:
    """
    A TCP port on 127.0.0.1 that nothing listens on right now.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def accepting(port: int) -> bool:
    """
    Whether something accepts connections on 127.0.0.1:C{port} now.
    """
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def wait_for(predicate, timeout=10.0, interval=0.01, what="condition"):
    """
    Poll C{predicate} until it returns something true, or fail.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class LoggedProcess:
    """
    A child process whose combined output goes to a file we can re-read.
    """

    def __init__(self, argv, stdin=None):
        self._dir = tempfile.TemporaryDirectory(prefix="heartbeat-test-")
        self.logPath = Path(self._dir.name) / "output.log"
        self._logFile = open(self.logPath, "wb")
        self.process = subprocess.Popen(
            argv,
            cwd=self._dir.name,
            env=ENV,
            stdin=stdin,
            stdout=self._logFile,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.logPath.read_text(errors="replace")

    def signal(self, number) -> None:
        if self.process.poll() is None:
            self.process.send_signal(number)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout=10.0) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._logFile.close()
        return self.process.returncode


class Server(LoggedProcess):
    """
    C{twistd -n heartbeat} on 127.0.0.1, on port 0 (the port it got is read
    from its log) or on a given port (to restart in the same place).

    @param prefix: the command to run it under, such as C{ip netns exec}.
    """

    def __init__(self, *options, port=0, description=None, prefix=()):
        description = description or f"tcp:{port}:interface=127.0.0.1"
        super().__init__(
            list(prefix)
            + TWISTD
            + ["-n", "--pidfile=", "--logfile=-", "heartbeat"]
            + ["--port", description]
            + list(options)
        )
        found = wait_for(
            lambda: self.process.poll() is not None
            or re.search(r"starting on (\d+)", self.log()),
            what="the server to listen",
        )
        if self.process.poll() is not None:
            raise AssertionError(f"server exited early:\n{self.log()}")
        self.port = int(found.group(1))

    def connect(self, timeout=5.0) -> "Peer":
        return Peer(self.port, timeout)


class Peer:
    """
    A raw TCP peer: lines in, lines out, with bounded waits.
    """

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.settimeout(timeout)
        self._buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def readline(self) -> bytes:
        """
        The next line without its terminator; b"" at end of stream.
        """
        while b"\n" not in self._buffer:
            chunk = self._recv()
            if not chunk:
                return b""
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except ConnectionResetError:
            return b""

    def closed_within(self, seconds: float) -> bool:
        """
        Whether the server closes the connection within C{seconds}, reading
        (and keeping) whatever it sends until then.
        """
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                chunk = self._recv()
            except socket.timeout:
                return False
            if not chunk:
                return True
            self._buffer += chunk
        return False

    def reset(self) -> None:
        """
        Close with a TCP reset instead of a FIN.
        """
        self.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
        )
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


class Controlled:
    """
    A helper process driven by command lines on its stdin, answering on its
    stdout (the fault proxy, the load clients).
    """

    def __init__(self, argv, stderr=None):
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=stderr,
        )
        self._buffer = b""

    def readline(self, timeout=30.0) -> str:
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError(f"no answer from {self.process.args[1]}")
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise AssertionError(f"{self.process.args[1]} exited")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def command(self, line: str, timeout=30.0) -> str:
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()
        return self.readline(timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class FaultProxy(Controlled):
    """
    tests/faultproxy.py in front of C{target}: freeze, thaw, cut, delay.
    """

    def __init__(self, target: int):
        super().__init__([sys.executable, "tests/faultproxy.py", str(target)])
        self.port = int(self.readline().split()[-1])

    def command(self, line: str, timeout=30.0) -> str:
        answer = super().command(line, timeout)
        assert answer == "ok", answer
        return answer

    def accepted(self) -> int:
        """
        How many connections the proxy has accepted so far.
        """
        return int(Controlled.command(self, "count"))


class LoadClients(Controlled):
    """
    tests/loadclient.py: COUNT library clients on 127.0.0.1:PORT.
    """

    def __init__(self, port: int, count: int, *options: str):
        super().__init__(
            [sys.executable, "tests/loadclient.py", str(port), str(count)]
            + list(options)
        )
        assert self.readline() == "ready"

    def report(self) -> list:
        return json.loads(self.command("report"))
