"""
twistd heartbeat's --websocket-port and --status-port.
"""

import re
import socket
import sys
from pathlib import Path

import pytest
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.python import usage

from heartbeat import HeartbeatServerFactory
from heartbeat._server.websocket import BroadcastWebSocketServerProtocol
from heartbeat._service import options as shared_options
from heartbeat._service.tap import Options, makeService
from heartbeat._status.monitor import MonitoredServerFactory
from heartbeat._status.service import StatusService

from .processes import wait_for


def served(options):
    """What makeService serves: the one service inside the one that says
    when the server is up."""
    [service] = makeService(options)
    return service


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
    (["--port", "8080", "--status-port", "tcp:8080:interface=127.0.0.1"],
     "--status-port must differ from --port"),
    (["--port", "tcp:port=8080:interface=127.0.0.1", "--websocket-port",
      "tcp:8080:interface=127.0.0.1"], "--websocket-port must differ from --port"),
    (["--port", "tcp6:8080", "--websocket-port", "tcp:8080:interface=127.0.0.1"],
     "--websocket-port must differ from --port"),
    (["--port", "unix:/tmp/hb.sock", "--status-port", "unix:address=/tmp/hb.sock"],
     "--status-port must differ from --port"),
])
def test_one_port_cannot_serve_two_listeners(argv, message):
    """Two listeners on one port are refused up front, not at listen time,
    however the descriptions spell it."""
    with pytest.raises(usage.UsageError, match=f"^{message}$"):
        parse(*argv)


def test_one_port_on_two_interfaces_is_two_listeners():
    """The same port number on two distinct interfaces is allowed."""
    options = parse("--port", "tcp:8080:interface=127.0.0.1",
                    "--websocket-port", "tcp:8080:interface=127.0.0.2",
                    "--status-port", "tcp:0")
    assert options["websocket-port"] == "tcp:8080:interface=127.0.0.2"


@pytest.mark.parametrize("option", ["port", "websocket-port", "status-port"])
def test_a_port_that_cannot_listen_stops_the_server(option):
    """A port already taken stops twistd at once, exit status 1, with one
    line naming the option, not a traceback, a server without it, or a
    line that reads like success."""
    from .processes import TWISTD, LoggedProcess

    taken = socket.create_server(("127.0.0.1", 0))
    try:
        port = taken.getsockname()[1]
        ports = {"port": "tcp:0:interface=127.0.0.1"}
        ports[option] = f"tcp:{port}:interface=127.0.0.1"
        argv = TWISTD + ["-n", "--pidfile=", "--logfile=-", "heartbeat"]
        for name in ("websocket-port", "status-port"):
            ports.setdefault(name, "tcp:0:interface=127.0.0.1")
        for name, description in ports.items():
            argv += [f"--{name}", description]
        server = LoggedProcess(argv)
        try:
            assert server.process.wait(15) == 1
        finally:
            server.stop()
    finally:
        taken.close()
    log = server.log()
    assert (f"--{option} tcp:{port}:interface=127.0.0.1: cannot listen: "
            "Address already in use") in log
    assert "Traceback" not in log
    # Nothing said the server was up.
    assert " on tcp:" not in log


def test_the_start_is_reported_once_every_port_listens():
    """The lines that say the server is up come after every listener."""
    from .webserver import WebServer

    server = WebServer(ports=("port", "websocket-port", "status-port"))
    try:
        log = wait_for(lambda: "status page" in server.log() and server.log())
    finally:
        server.stop()
    lines = log.splitlines()
    listening = [n for n, line in enumerate(lines) if " starting on " in line]
    said = [n for n, line in enumerate(lines) if " on tcp:0:interface=" in line]
    assert len(listening) == 3 and len(said) == 3
    assert max(listening) < min(said)
    assert "heartbeat server on tcp:0:interface=127.0.0.1: interval 25.0" in lines[said[0]]


def test_allowed_origins_reach_the_websocket_factory():
    """--allowed-origins limits the pages that may connect; a value that is
    not an origin, or the option without a WebSocket port, is refused."""
    service = served(parse(
        "--port", "tcp:0", "--websocket-port", "tcp:0",
        "--allowed-origins", "https://app.example.com, http://localhost:3000"))
    line, websocket = list(service)
    wsFactory = websocket.factory.resource.children[b""]._websocket._factory
    assert wsFactory.allowedOrigins == ["https://app.example.com:443",
                                        "http://localhost:3000"]
    for argv, message in [
        (["--websocket-port", "0", "--allowed-origins", "app.example.com"],
         "^--allowed-origins: 'app.example.com' is not an origin"),
        (["--allowed-origins", "https://app.example.com"],
         "^--allowed-origins needs --websocket-port$"),
    ]:
        with pytest.raises(usage.UsageError, match=message):
            parse(*argv)


def test_missing_extra_says_what_to_install(monkeypatch):
    """Without Autobahn, --websocket-port says which extra it needs and the
    command that installs it into this environment."""
    real_find_spec = shared_options.find_spec
    monkeypatch.setattr(shared_options, "find_spec",
                        lambda name: None if name == "autobahn" else real_find_spec(name))
    with pytest.raises(usage.UsageError) as raised:
        parse("--websocket-port", "8080")
    assert str(raised.value) == (
        "--websocket-port needs autobahn (the websocket extra): "
        f"{sys.executable} -m pip install 'autobahn>=22.12'"
    )


def test_without_web_ports_the_server_is_unchanged():
    """No new option given: the same single line listener as before."""
    service = served(parse("--port", "tcp:0"))
    assert isinstance(service, StreamServerEndpointService)
    assert type(service.factory) is HeartbeatServerFactory


def test_web_ports_add_listeners_that_share_the_server():
    """Both options: WebSocket and status listeners beside the line one,
    all fed by one monitoring server (broadcast reaching both kinds)."""
    service = served(parse(
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
    commands = [c for c in re.findall(r"twistd -n --pidfile= heartbeat( [^\n]*)", readme)
                if "--status-port" in c or "--websocket-port" in c]
    assert commands
    for command in commands:
        options = parse(*command.split())
        assert options["port"] == "tcp:1237"
