"""
Command-line options of the server plugin and the client command.
"""

import pytest
from twisted.python import usage

from heartbeat import BroadcastServerProtocol, HeartbeatServerProtocol
from heartbeat._service.client_main import Options as ClientOptions
from heartbeat._service.client_main import client_description
from heartbeat._service.tap import Options as ServerOptions
from heartbeat._service.tap import makeService


def served(options):
    """What makeService serves: the one service inside the one that says
    when the server is up."""
    [service] = makeService(options)
    return service


def parse(options_class, *argv):
    options = options_class()
    options.parseOptions(list(argv))
    return options


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--interval", "-1"], "--interval must be a number >= 0"),
        (["--interval", "abc"], "--interval must be a number >= 0"),
        (["--interval", "nan"], "--interval must be a number >= 0"),
        (["--timeout", "-5"], "--timeout must be a number >= 0"),
        (["--pong-timeout", "-1"], "--pong-timeout must be a number >= 0"),
        (["--pong-timeout", "soon"], "--pong-timeout must be a number >= 0"),
        (["--interval", "10", "--timeout", "10"], "--timeout must be greater"),
        (["--interval", "30", "--timeout", "20"], "--timeout must be greater"),
        (["--max-line-length", "0"], "--max-line-length must be a whole number"),
        (["--max-line-length", "1.5"], "--max-line-length must be a whole number"),
        (["--max-connections", "-3"], "--max-connections must be a whole number"),
        (["--port", "nonsense:1"], "--port 'nonsense:1' is not a server endpoint"),
        (["--port", "tcp:notaport"], "--port 'tcp:notaport' is not a server"),
    ],
)
def test_bad_server_values_name_the_option(argv, message):
    """Each bad value is refused with a one-line message naming its option."""
    with pytest.raises(usage.UsageError) as raised:
        parse(ServerOptions, *argv)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_server_defaults():
    """Defaults: port 1234 on all interfaces, 25 s / 90 s / 5 s, 64 KiB,
    10,000."""
    options = parse(ServerOptions)
    assert options["port"] == "tcp:1234"
    assert (options["interval"], options["timeout"]) == (25.0, 90.0)
    assert options["pong-timeout"] == 5.0
    assert options["max-line-length"] == 65536
    assert options["max-connections"] == 10000
    assert not options["broadcast"]


def test_bare_port_number_means_tcp():
    """--port 4321 listens on TCP port 4321; descriptions pass through."""
    assert parse(ServerOptions, "--port", "4321")["port"] == "tcp:4321"
    assert (
        parse(ServerOptions, "--port", "tcp:4321:interface=127.0.0.1")["port"]
        == "tcp:4321:interface=127.0.0.1"
    )
    assert parse(ServerOptions, "--port", "unix:/tmp/x.sock")["port"] == (
        "unix:/tmp/x.sock"
    )


def test_zero_disables_pings_and_deadline():
    """--interval 0, --timeout 0 and --pong-timeout 0 turn each rule off."""
    options = parse(
        ServerOptions, "--interval", "0", "--timeout", "0", "--pong-timeout", "0"
    )
    assert options["interval"] is None and options["timeout"] is None
    assert options["pong-timeout"] is None
    options = parse(ServerOptions, "--interval", "0", "--timeout", "5")
    assert options["interval"] is None and options["timeout"] == 5.0


def test_service_carries_the_options():
    """makeService builds a listening service whose factory has the values."""
    service = served(
        parse(
            ServerOptions,
            "--port", "tcp:0:interface=127.0.0.1",
            "--interval", "2", "--timeout", "5", "--pong-timeout", "0.5",
            "--max-line-length", "100", "--max-connections", "7",
        )
    )
    factory = service.factory
    assert factory.heartbeatInterval == 2.0 and factory.heartbeatTimeout == 5.0
    assert factory.heartbeatPongTimeout == 0.5
    assert factory.maxLineLength == 100 and factory.maxConnections == 7
    assert factory.protocol is HeartbeatServerProtocol
    broadcast = served(parse(ServerOptions, "--broadcast"))
    assert broadcast.factory.protocol is BroadcastServerProtocol


def test_client_target_shorthand():
    """HOST:PORT means TCP; full descriptions pass through unchanged."""
    assert client_description("127.0.0.1:1234") == "tcp:127.0.0.1:1234"
    assert client_description("localhost:80") == "tcp:localhost:80"
    assert client_description("tcp:h:1") == "tcp:h:1"
    assert client_description("unix:/tmp/s") == "unix:/tmp/s"


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "no ENDPOINT: give the server's"),
        (["bogus:x:y"], "is not a client endpoint"),
        (["--max-delay", "0", "h:1"], "--max-delay must be greater than 0"),
        (["--initial-delay", "5", "--max-delay", "2", "h:1"], "--max-delay must be at least"),
        (["--buffer-size", "0", "h:1"], "--buffer-size must be a whole number"),
        (["--interval", "9", "--timeout", "3", "h:1"], "--timeout must be greater"),
    ],
)
def test_bad_client_values_name_the_option(argv, message):
    """The client refuses bad values as clearly as the server does."""
    with pytest.raises(usage.UsageError) as raised:
        parse(ClientOptions, *argv)
    assert message in str(raised.value)


def test_client_options_say_which_were_given():
    """The client tells the timing it was given from the defaults it will
    take from the server instead."""
    assert parse(ClientOptions, "h:1").given == set()
    options = parse(ClientOptions, "--timeout", "90", "--pong-timeout", "0", "h:1")
    assert options.given == {"timeout", "pong-timeout"}
    assert options["timeout"] == 90.0 and options["pong-timeout"] is None


def test_client_defaults_mirror_the_server():
    """The client pings and times out like the server, backs off to 30 s."""
    options = parse(ClientOptions, "127.0.0.1:1234")
    assert options["endpoint"] == "tcp:127.0.0.1:1234"
    assert (options["interval"], options["timeout"]) == (25.0, 90.0)
    assert options["pong-timeout"] == 5.0
    assert (options["initial-delay"], options["max-delay"]) == (1.0, 30.0)
    assert options["buffer-size"] == 1000


def test_hardening_defaults():
    """Ping flood, slowloris and slow-reader limits are on by default; the
    server is open (no auth) unless a token file is given."""
    options = parse(ServerOptions)
    assert options["min-ping-interval"] == 1.0
    assert options["line-timeout"] == 30.0
    assert options["max-write-buffer"] == 1 << 20
    assert options["auth-token"] is None and options["auth-timeout"] == 5.0
    assert not options["tcp-keepalive"]


def test_min_ping_interval_follows_a_short_interval():
    """With --interval 0.2 the default ping floor drops to 0.1 s so honest
    clients at that interval are not refused; an explicit floor at or above
    the interval is an error."""
    options = parse(ServerOptions, "--interval", "0.2", "--timeout", "0.6")
    assert options["min-ping-interval"] == 0.1
    with pytest.raises(usage.UsageError, match="--min-ping-interval must be less"):
        parse(ServerOptions, "--interval", "2", "--min-ping-interval", "2")
    assert parse(ServerOptions, "--min-ping-interval", "0")["min-ping-interval"] is None


def test_auth_token_file_is_read_and_stripped(tmp_path):
    """The token is the file's content without surrounding whitespace."""
    path = tmp_path / "token"
    path.write_bytes(b"  s3cret-token \n\n")
    for options_class, extra in ((ServerOptions, []), (ClientOptions, ["h:1"])):
        options = parse(options_class, "--auth-token-file", str(path), *extra)
        assert options["auth-token"] == b"s3cret-token"
    service = served(parse(ServerOptions, "--auth-token-file", str(path)))
    assert service.factory.authToken == b"s3cret-token"


@pytest.mark.parametrize("content", [b"", b"  \n", b"two\nlines"])
def test_bad_token_file_is_refused(tmp_path, content):
    """An empty or multi-line token file is refused up front."""
    path = tmp_path / "token"
    path.write_bytes(content)
    with pytest.raises(usage.UsageError, match="--auth-token-file"):
        parse(ServerOptions, "--auth-token-file", str(path))


def test_missing_token_file_is_refused(tmp_path):
    """A token file that cannot be read names the option and the problem."""
    with pytest.raises(usage.UsageError, match="cannot read"):
        parse(ServerOptions, "--auth-token-file", str(tmp_path / "nope"))


def test_hardening_options_reach_the_factory():
    """Each limit given on the command line governs the server."""
    factory = served(
        parse(
            ServerOptions,
            "--min-ping-interval", "0.5", "--line-timeout", "7",
            "--max-write-buffer", "4096", "--auth-timeout", "2", "--tcp-keepalive",
        )
    ).factory
    assert factory.minPingInterval == 0.5 and factory.lineTimeout == 7.0
    assert factory.maxWriteBuffer == 4096 and factory.authTimeout == 2.0
    assert factory.tcpKeepalive
    unlimited = served(
        parse(ServerOptions, "--line-timeout", "0", "--max-write-buffer", "0")
    ).factory
    assert unlimited.lineTimeout is None and unlimited.maxWriteBuffer is None


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--resume-window", "-1"], "--resume-window must be a number >= 0"),
        (["--resume-buffer", "0"], "--resume-buffer must be a whole number >= 1"),
        (["--resume-buffer-bytes", "x"], "--resume-buffer-bytes must be a whole number"),
        (["--resume-buffer-bytes", "1000"], "--resume-buffer-bytes must be at least "
         "--max-line-length (1000 < 65536)"),
    ],
)
def test_bad_session_values_name_the_option(argv, message):
    """A bad session bound is refused in one line naming its option."""
    with pytest.raises(usage.UsageError) as raised:
        parse(ServerOptions, *argv)
    assert message in str(raised.value)


def test_session_options_reach_the_sessions():
    """The window and bounds given govern the server's sessions; a window
    of 0 offers none, and so do workers without Redis."""
    sessions = served(parse(
        ServerOptions, "--resume-window", "30", "--resume-buffer", "50",
        "--resume-buffer-bytes", "70000",
    )).factory.sessions
    assert (sessions.window, sessions.maxLines, sessions.maxBytes) == (30.0, 50, 70000)
    defaults = served(parse(ServerOptions)).factory.sessions
    assert (defaults.window, defaults.maxLines, defaults.maxBytes) == (120.0, 10000, 1 << 20)
    assert served(parse(ServerOptions, "--resume-window", "0")).factory.sessions is None
    from heartbeat._service.node import server_factory

    assert server_factory(parse(ServerOptions, "--workers", "2")).sessions is None
