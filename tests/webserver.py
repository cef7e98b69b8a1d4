"""
C{twistd -n heartbeat} with its WebSocket and status ports, on 127.0.0.1,
for the tests of the browser and operator side; built on L{processes}.
"""

import re
import signal
import socket
import threading

from .processes import TWISTD, LoggedProcess, wait_for

# The order in which the plugin starts its listeners.
PORTS = ("port", "websocket-port", "status-port")

# A page's opening handshake, as its browser sends it.
HANDSHAKE = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
             b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             b"Sec-WebSocket-Version: 13\r\n\r\n")


class WebServer(LoggedProcess):
    """
    The server on port 0 for each of C{ports}, or on given port numbers (to
    restart in the same place).

    @ivar ports: option name to the port number it listens on.
    """

    def __init__(self, *options, ports=("port",)):
        self.options = options
        if isinstance(ports, dict):
            self.ports = ports
        else:
            self.ports = dict.fromkeys(ports, 0)
        argv = TWISTD + ["-n", "--pidfile=", "--logfile=-", "heartbeat", *options]
        for name, port in self.ports.items():
            argv += [f"--{name}", f"tcp:{port}:interface=127.0.0.1"]
        super().__init__(argv)
        listening = wait_for(
            lambda: self.process.poll() is not None
            or len(re.findall(r"starting on (\d+)", self.log())) == len(self.ports)
            and re.findall(r"starting on (\d+)", self.log()),
            what="the server to listen on every port",
        )
        if self.process.poll() is not None:
            raise AssertionError(f"server exited early:\n{self.log()}")
        names = [name for name in PORTS if name in self.ports]
        self.ports = dict(zip(names, map(int, listening)))

    def restart(self):
        """The same server, killed, then started again on the same ports."""
        self.kill()
        self.stop()
        return WebServer(*self.options, ports=self.ports)

    def pause(self):
        """Freeze the server: its connections stay open but fall silent."""
        self.signal(signal.SIGSTOP)

    def kill(self):
        self.signal(signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout=10.0):
        self.signal(signal.SIGCONT)
        return super().stop(timeout)

    def url(self, name, path="/"):
        return f"http://127.0.0.1:{self.ports[name]}{path}"


class AnsweringPeer:
    """
    A raw line peer that answers the server's pings from its own thread
    (unless C{answering} is false) and keeps every other line it receives.
    """

    def __init__(self, port, answering=True):
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
                *lines, buffer = (buffer + data).split(b"\n")
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


def raw_page(port, receiveBuffer=None):
    """
    A socket that has opened a WebSocket to C{port} and does nothing else,
    with the kernel's receive buffer set to C{receiveBuffer} if given.
    """
    sock = socket.socket()
    if receiveBuffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receiveBuffer)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    sock.sendall(HANDSHAKE)
    assert sock.recv(4096).startswith(b"HTTP/1.1 101")
    return sock
