import pytest
from twisted.internet.task import Clock

from .redisserver import RedisServer, require_redis


@pytest.fixture
def clock():
    return Clock()


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
