"""
Real processes on loopback for the integration tests: a twistd heartbeat
server, the heartbeat-client command, and plain sockets as peers.

Every wait polls against a deadline; every process started is killed at the
end of its test.
"""

from __future__ import annotations

import os
import re
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
CLIENT = [sys.executable, "-m", "heartbeat._client_main"]


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
    """

    def __init__(self, *options, port=0):
        super().__init__(
            TWISTD
            + ["-n", "--pidfile=", "--logfile=-", "heartbeat"]
            + ["--port", f"tcp:{port}:interface=127.0.0.1"]
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

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.process.wait()


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
