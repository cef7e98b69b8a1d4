"""
twistd heartbeat's --websocket-port and --status-port.
"""

import re
from pathlib import Path

import pytest
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.python import usage

from heartbeat import HeartbeatServerFactory, _webtap
from heartbeat._monitor import MonitoredServerFactory
from heartbeat._status import StatusService
from heartbeat._tap import Options, makeService
from heartbeat._websocket import BroadcastWebSocketServerProtocol


def parse(*argv):
    options = Options()
    options.parseOptions(list(argv))
    return options


def test_bare_ports_become_tcp_endpoints():
    """--websocket-port 8080 means TCP on all interfaces, like --port."""
    options = parse("--websocket-port", "8080", "--status-port", "tcp:8081:interface=127.0.0.1")
    assert options["websocket-port"] == "tcp:8080"
    assert options["status-port"] == "tcp:8081:interface=127.0.0.1"


@pytest.mark.parametrize("name", ["websocket-port", "status-port"])
def test_bad_endpoint_is_one_line_naming_the_option(name):
    """An unparsable endpoint is refused up front, naming the option."""
    with pytest.raises(usage.UsageError, match=f"^--{name} 'nonsense:1' is not a server endpoint"):
        parse(f"--{name}", "nonsense:1")


@pytest.mark.parametrize("argv, message", [
    (["--port", "8080", "--websocket-port", "tcp:8080"], "--websocket-port must differ from --port"),
    (["--websocket-port", "8080", "--status-port", "8080"], "--status-port must differ from --websocket-port"),
])
def test_one_port_cannot_serve_two_listeners(argv, message):
    """Two listeners on one port are refused up front, not at listen time."""
    with pytest.raises(usage.UsageError, match=f"^{message}$"):
        parse(*argv)


def test_missing_extra_says_what_to_install(monkeypatch):
    """Without Autobahn, --websocket-port says which extra to install."""
    def missing(name):
        raise ImportError(name)

    monkeypatch.setattr(_webtap, "import_module", missing)
    with pytest.raises(usage.UsageError, match=r"heartbeat\[websocket\]"):
        parse("--websocket-port", "8080")


def test_without_web_ports_the_server_is_unchanged():
    """No new option given: the same single line listener as before."""
    service = makeService(parse("--port", "tcp:0"))
    assert isinstance(service, StreamServerEndpointService)
    assert type(service.factory) is HeartbeatServerFactory


def test_web_ports_add_listeners_that_share_the_server():
    """Both options: WebSocket and status listeners beside the line one,
    all fed by one monitoring server (broadcast reaching both kinds)."""
    service = makeService(parse(
        "--port", "tcp:0", "--websocket-port", "tcp:0", "--status-port", "tcp:0",
        "--broadcast"))
    assert isinstance(service, MultiService)
    line, websocket, status, statusListener = list(service)
    assert isinstance(line.factory, MonitoredServerFactory)
    wsFactory = websocket.factory.resource.children[b""]._websocket._factory
    assert wsFactory.heartbeatServer is line.factory
    assert wsFactory.protocol is BroadcastWebSocketServerProtocol
    assert isinstance(status, StatusService) and status.server is line.factory
    assert isinstance(statusListener, StreamServerEndpointService)


def test_readme_commands_parse():
    """The README's twistd commands with web ports are accepted as written."""
    readme = (Path(__file__).parents[1] / "README.rst").read_text()
    commands = [c for c in re.findall(r"twistd -n heartbeat( [^\n]*)", readme)
                if "--status-port" in c or "--websocket-port" in c]
    assert commands
    for command in commands:
        options = parse(*command.split())
        assert options["port"] == "tcp:1234"
