"""
A real C{redis-server} for the cluster's tests: started on a free loopback
port (and a unix socket) in a temporary directory, with nothing saved to
disk, and killed when the test ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Sequence

import pytest

from .processes import free_port

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")


def require_redis() -> None:
    """
    Skip where redis-server is missing; in CI (C{CI} set) that is a
    failure, not a skip.
    """
    if REDIS_SERVER is None or REDIS_CLI is None:
        why = "redis-server and redis-cli are not installed"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


class RedisServer:
    """
    One redis-server, started empty; L{restart} starts it again, empty, at
    the same address.

    @ivar url: its C{redis://} URL (database 0).
    @ivar socketUrl: its C{unix://} URL.
    """

    def __init__(self, *arguments: str, password: Optional[str] = None,
                 bind: str = "127.0.0.1", wrapper: Sequence[str] = ()) -> None:
        """
        @param bind: the address it listens on.
        @param wrapper: what runs it (C{ip netns exec NAME}, to start it
            inside a network namespace).
        """
        self._dir = tempfile.TemporaryDirectory(prefix="heartbeat-redis-")
        self.directory = Path(self._dir.name)
        self.bind = bind
        self.wrapper = list(wrapper)
        self.port = free_port()
        self.socket = str(self.directory / "redis.sock")
        self.password = password
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}{bind}:{self.port}/0"
        self.socketUrl = f"unix://{auth}{self.socket}?db=0"
        self.arguments = list(arguments)
        self.process: Optional[subprocess.Popen] = None
        self.start()

    def start(self) -> None:
        argv = self.wrapper + [
            REDIS_SERVER, "--port", str(self.port), "--bind", self.bind,
            "--unixsocket", self.socket, "--unixsocketperm", "777",
            "--save", "", "--appendonly", "no", "--dir", str(self.directory),
            *self.arguments,
        ]
        if self.password:
            argv += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.cli("PING") == "PONG":
                    return
            except subprocess.CalledProcessError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("redis-server did not start")
            time.sleep(0.02)

    def cli(self, *command: str) -> str:
        """
        One command through redis-cli, over the unix socket (which works
        from any network namespace).
        """
        argv = [REDIS_CLI, "-s", self.socket]
        if self.password:
            argv += ["--no-auth-warning", "-a", self.password]
        return subprocess.run(
            argv + list(command), capture_output=True, text=True, check=True,
            timeout=10,
        ).stdout.strip()

    def lines(self, *command: str) -> List[str]:
        output = self.cli(*command)
        return output.splitlines() if output else []

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        """
        Kill it and start it again, empty, at the same address.
        """
        self.kill()
        self.start()

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.kill()
        self._dir.cleanup()

