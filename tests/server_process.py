"""
A real C{twistd -n heartbeat} on loopback for integration tests: free
ports, bounded waits, and only the process the test started is signalled.
"""

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
TWISTD = Path(sys.executable).parent / "twistd"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout, what, step=0.02):
    """
    Poll C{predicate} until it returns something true; fail after
    C{timeout} seconds.  Returns the value and the seconds it took.
    """
    start = time.monotonic()
    while True:
        value = predicate()
        if value:
            return value, time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(step)


class HeartbeatServer:
    """
    C{twistd -n heartbeat} with the given options, every port on 127.0.0.1.

    @ivar ports: option name (C{port}, C{websocket-port}, C{status-port})
        to the port number it listens on.
    """

    def __init__(self, log_path, *options, ports=("port",)):
        self.log_path = log_path
        self.options = list(options)
        self.ports = {name: free_port() for name in ports}
        self.process = None

    def start(self):
        argv = [str(TWISTD), "-n", "--pidfile=", "heartbeat", *self.options]
        for name, port in self.ports.items():
            argv += [f"--{name}", f"tcp:{port}:interface=127.0.0.1"]
        log = open(self.log_path, "ab")
        offset = log.tell()
        self.process = subprocess.Popen(
            argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        # Ready once twistd says so for every port: probing a port with a
        # connection would count in the very numbers under test.
        started = [f"starting on {port}\n" for port in self.ports.values()]
        wait_for(
            lambda: all(s in self.log()[offset:] for s in started) or self._died(),
            15,
            "twistd listening",
        )
        return self

    def _died(self):
        if self.process.poll() is not None:
            raise AssertionError(f"twistd exited: {self.log()}")

    def pause(self):
        """Freeze the server: its connections stay open but fall silent."""
        self.process.send_signal(signal.SIGSTOP)

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self):
        return Path(self.log_path).read_text(errors="replace")

    def url(self, name, path="/", scheme="http"):
        return f"{scheme}://127.0.0.1:{self.ports[name]}{path}"


class LineClient:
    """
    A raw line peer that answers the server's pings from its own thread
    when C{answering}, and keeps every application line it receives.
    """

    def __init__(self, port, answering=True):
        import threading

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.answering = answering
        self.lines = []
        self.closed = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buffer = b""
        try:
            while True:
                data = self.sock.recv(4096)
                if not data:
                    break
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.startswith(b"ping") and self.answering:
                        self.sock.sendall(b"pong" + line[4:] + b"\n")
                    else:
                        self.lines.append(line)
        except OSError:
            pass
        self.closed = True

    def send(self, line):
        self.sock.sendall(line + b"\n")

    def close(self):
        self.sock.close()
