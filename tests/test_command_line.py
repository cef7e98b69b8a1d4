"""
The installed commands, run as a user runs them: exactly what they print on
standard output and standard error, and their exit status.
"""

import os
import platform
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import twisted

from heartbeat import __version__

from .processes import ENV, Server

BIN = Path(sys.executable).parent
TWISTD = [str(BIN / "twistd"), "-n", "--pidfile=", "heartbeat"]
CLIENT = [str(BIN / "heartbeat-client")]


def run(argv, timeout=60, **kwargs):
    return subprocess.run(
        argv, env=ENV, capture_output=True, text=True, timeout=timeout, **kwargs
    )


@pytest.mark.parametrize(
    "argv, error",
    [
        (
            ["--interval", "10", "--timeout", "5"],
            "--timeout must be greater than --interval (5 <= 10): a peer must "
            "get a ping before it is declared dead",
        ),
        (["--max-connections", "0"], "--max-connections must be a whole number >= 1, not '0'"),
        (["--port", "nonsense:1"], "--port 'nonsense:1' is not a server endpoint: "
         "Unknown endpoint type: 'nonsense'"),
        (["--bogus"], "option --bogus not recognized"),
    ],
)
def test_a_bad_server_value_is_one_line(argv, error):
    """A bad value prints one line naming the option, on standard error,
    without the usage, and twistd exits with status 1."""
    result = run(TWISTD + argv)
    assert (result.returncode, result.stdout, result.stderr) == (
        1, "", f"heartbeat: {error}\n"
    )


def test_server_help_is_the_whole_usage():
    """--help still prints every option, on standard output."""
    result = run(TWISTD + ["--help"])
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("Usage: twistd [options] heartbeat [options]\n")
    for option in ("--port=", "--interval=", "--websocket-port=", "--workers=",
                   "--version"):
        assert option in result.stdout


def test_server_version_names_heartbeat():
    """--version says heartbeat's version, and Twisted's and Python's."""
    result = run(TWISTD + ["--version"])
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        f"heartbeat {__version__} (Twisted {twisted.__version__}, "
        f"Python {platform.python_version()})\n"
    )


@pytest.mark.parametrize(
    "argv, error",
    [
        ([], "no ENDPOINT: give the server's, such as 127.0.0.1:1234"),
        (["127.0.0.1:1", "127.0.0.1:2"], "one ENDPOINT expected, not 2: "
         "127.0.0.1:1 127.0.0.1:2"),
        # An option after the endpoint is read as an option.
        (["127.0.0.1:1", "--buffer-size", "0"],
         "--buffer-size must be a whole number >= 1, not '0'"),
        (["127.0.0.1:1", "--max-delay=0.5"],
         "--max-delay must be at least --initial-delay"),
    ],
)
def test_a_bad_client_command_says_what_is_wrong(argv, error):
    """heartbeat-client names what is missing or wrong, exit status 2."""
    result = run(CLIENT + argv)
    assert (result.returncode, result.stdout, result.stderr) == (
        2, "", f"heartbeat-client: {error}\nTry 'heartbeat-client --help'.\n"
    )


def test_client_help_gives_units():
    """Every delay in the client's --help says its unit."""
    result = run(CLIENT + ["--help"])
    assert result.returncode == 0
    assert "Longest wait between reconnection attempts, seconds." in " ".join(
        result.stdout.split()
    )


class _Client:
    """
    heartbeat-client with its three streams as pipes, stdin kept open.
    """

    def __init__(self, *argv):
        self.process = subprocess.Popen(
            CLIENT + list(argv), env=ENV, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self._buffers = {}

    def type(self, line: bytes) -> None:
        self.process.stdin.write(line + b"\n")
        self.process.stdin.flush()

    def readline(self, stream) -> bytes:
        """The stream's next line, read without a buffer that select cannot
        see into."""
        fd = stream.fileno()
        buffered = self._buffers.get(fd, b"")
        deadline = time.monotonic() + 10
        while b"\n" not in buffered:
            left = deadline - time.monotonic()
            assert left > 0 and select.select([fd], [], [], left)[0], "no line"
            chunk = os.read(fd, 65536)
            assert chunk, f"end of stream; so far: {buffered!r}"
            buffered += chunk
        line, self._buffers[fd] = buffered.split(b"\n", 1)
        return line + b"\n"

    def finish(self):
        """Exit status, stdout and stderr once the client has exited."""
        status = self.process.wait(15)
        streams = self.process.stdout, self.process.stderr
        return (status, *(
            (self._buffers.get(stream.fileno(), b"") + stream.read()).decode()
            for stream in streams
        ))

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def test_a_typed_ping_shows_its_round_trip(tmp_path):
    """Typing ping shows the round trip on stderr and nothing on stdout;
    options may follow the endpoint; SIGTERM with stdin still open exits
    0 without claiming that stdin ended or that the connection was lost."""
    server = Server()
    client = _Client(f"127.0.0.1:{server.port}", "--interval", "5", "--timeout", "15")
    try:
        client.type(b"hello")
        assert client.readline(client.process.stdout) == b"hello\n"
        client.type(b"ping")
        pong = re.compile(rb".* pong from 127\.0\.0\.1:%d: round trip \d+\.\d\d ms\n"
                          % (server.port,))
        while not pong.fullmatch(line := client.readline(client.process.stderr)):
            assert b"ping" not in line
        client.type(b"bye")
        assert client.readline(client.process.stdout) == b"bye\n"
        client.process.send_signal(signal.SIGTERM)
        status, stdout, stderr = client.finish()
    finally:
        client.kill()
        server.stop()
    assert (status, stdout) == (0, "")
    assert "stdin" not in stderr and "Traceback" not in stderr
    assert "connection closed: the client stopped\n" in stderr
    assert "connection lost" not in stderr


def test_the_end_of_stdin_is_said_when_it_ends():
    """Closing stdin is reported, and the client keeps running."""
    server = Server()
    client = _Client(f"127.0.0.1:{server.port}")
    try:
        client.process.stdin.close()
        while b"end of stdin" not in client.readline(client.process.stderr):
            pass
        time.sleep(0.2)
        assert client.process.poll() is None
        client.process.send_signal(signal.SIGTERM)
        assert client.finish()[0] == 0
    finally:
        client.kill()
        server.stop()
