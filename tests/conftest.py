import os
import shutil
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from .redisserver import RedisServer, require_redis

# Where .ci/run installs Node 22 and the ws package (npm ci), for the tests
# of heartbeat.js in Node.
NODE = Path(__file__).parent / "node"
NODE_MODULES = NODE / "node_modules"


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def epoch_clock():
    """
    A fake clock at a plausible now (see L{tests.tokens.EPOCH}), so that the
    tokens minted on it look like a backend's.
    """
    from .tokens import EPOCH

    clock = Clock()
    clock.advance(EPOCH)
    return clock


@pytest.fixture
def stopping():
    """Stops every process a test registers, whatever happens."""
    processes = []
    yield processes.append
    for process in reversed(processes):
        if hasattr(process, "stop"):
            process.stop()
        elif process.poll() is None:
            process.terminate()
            process.wait(10)


@pytest.fixture
def redis():
    """
    A fresh, empty redis-server, killed after the test.
    """
    require_redis()
    server = RedisServer()
    yield server
    server.close()


FIGURES = {}


@pytest.fixture
def figure():
    """
    Record a measured figure; all are printed at the end of the run, for
    the README's reliability table.
    """

    def record(name, value, unit=""):
        FIGURES[name] = f"{value:.3f} {unit}".strip() if isinstance(
            value, float
        ) else f"{value} {unit}".strip()

    return record


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("measured figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


def _node_unavailable(why):
    if os.environ.get("CI"):
        pytest.fail(f"Node tests cannot run: {why}")
    pytest.skip(why)


@pytest.fixture(params=["global WebSocket", "ws package"])
def runtime(request):
    """
    A Node to run heartbeat.js in: C{(argv, major)}, Node 22 with its own
    WebSocket (C{major} 22), or the machine's Node with the ws package's
    (C{major} C{None}).  Skipped where missing, except in CI.
    """
    if request.param == "global WebSocket":
        binary = NODE_MODULES / ".bin" / "node"
        if not binary.exists():
            _node_unavailable("no Node 22 in tests/node (npm ci --prefix tests/node)")
        return [str(binary)], 22
    binary = shutil.which("node")
    if binary is None or not (NODE_MODULES / "ws").is_dir():
        _node_unavailable("no node, or no ws package in tests/node")
    return [binary], None
