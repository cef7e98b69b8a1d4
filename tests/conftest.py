import pytest
from twisted.internet.task import Clock


@pytest.fixture
def clock():
    return Clock()
