"""
The cluster's pure pieces: the --redis URL, presence events, the reports
the operator's view adds up, and the cluster's options.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.python import usage

from heartbeat._cluster.address import parse_redis_url
from heartbeat._cluster.scripts import REASON_CODES, parse_events
from heartbeat._service.tap import Options
from heartbeat._status.report import empty_report, merge_reports


def test_redis_urls_name_where_and_how():
    """Each form of --redis is read as the address, database and
    credentials it means; the password never shows in the display form."""
    tcp = parse_redis_url("redis://user:p%40ss@10.0.0.5:7000/3")
    assert (tcp.host, tcp.port, tcp.db, tcp.username, tcp.password, tcp.tls) == (
        "10.0.0.5", 7000, 3, "user", "p@ss", False)
    assert "p@ss" not in tcp.display and tcp.display == "redis://10.0.0.5:7000/3"
    assert parse_redis_url("redis://:secret@h").password == "secret"
    tls = parse_redis_url("rediss://h?ca=/etc/ca.pem")
    assert (tls.tls, tls.port, tls.db, tls.ca) == (True, 6379, 0, "/etc/ca.pem")
    unix = parse_redis_url("unix:///run/redis.sock?db=2")
    assert (unix.path, unix.db, unix.host) == ("/run/redis.sock", 2, None)
    assert parse_redis_url("redis://[::1]:6380").display == "redis://[::1]:6380/0"


@pytest.mark.parametrize("url, why", [
    ("http://h", "is not a redis://, rediss:// or unix:// URL"),
    ("redis://h/x", "the database must be a number"),
    ("redis://h:99999", "bad port"),
    ("redis://h?db=1", "takes its database as the path"),
    ("redis://user@h", "a user name without a password"),
    ("redis:///0", "names no host"),
    ("unix://host/x.sock", "must name a socket"),
    ("redis://h?ca=/x", "ca= is for rediss:// only"),
    ("redis://h?x=1", "unknown parameter 'x'"),
    ("redis://u:secret@h/bad", "u:***@h"),
])
def test_bad_redis_urls_say_why(url, why):
    """A URL that cannot be used is refused with the reason, its password
    masked."""
    with pytest.raises(ValueError, match=why.replace("?", r"\?").replace("*", r"\*")) as e:
        parse_redis_url(url)
    assert "secret" not in str(e.value)


@given(st.text(max_size=80))
def test_any_text_is_an_address_or_a_clear_error(text):
    """Whatever --redis is given, the parser answers or raises ValueError."""
    try:
        parse_redis_url(text)
    except ValueError:
        pass


def test_presence_events_read_back():
    """Joins and leaves, one per line, read back with their reasons; lines
    of another kind are skipped."""
    message = b"J n1 alice\nL n2 t bob\nX what\nL n3 d n3#abc.7\nL n1 z nobody"
    assert list(parse_events(message)) == [
        ("n1", "alice", None), ("n2", "bob", "timeout"), ("n3", "n3#abc.7", "node died")]
    assert set(REASON_CODES) == {"closed", "timeout", "node died", "expired"}


def test_names_beyond_ascii_read_back_as_themselves():
    """Events about José and Josè are about two names, not one Jos?."""
    message = "J n1 José\nL n1 c Josè".encode()
    assert list(parse_events(message)) == [("n1", "José", None), ("n1", "Josè", "closed")]


def test_reports_add_up_across_workers():
    """Totals, transports and round trips of several nodes add up; the mean
    round trip is weighted by the connections behind it; the oldest
    connections of all come first."""
    settings = {"interval": 25, "timeout": 55, "max_connections": 10}
    one, two = empty_report("m/1", settings, 10.0), empty_report("m/2", settings, 11.0)
    one["totals"]["open"], two["totals"]["open"] = 3, 1
    one["transports"], two["transports"] = {"line": 3}, {"line": 0, "websocket": 1}
    one["rtt"].update(mean=0.010, samples=3, sum=1.0)
    two["rtt"].update(mean=0.050, samples=1, sum=2.0)
    one["rtt"]["counts"][0] = 2
    two["rtt"]["counts"][0] = 5
    one["connections"] = [{"connected_since": 5.0, "id": 1}]
    two["connections"] = [{"connected_since": 1.0, "id": 9}]
    merged = merge_reports([one, two], limit=1)
    assert merged["totals"]["open"] == 4
    assert merged["transports"] == {"line": 3, "websocket": 1}
    assert merged["rtt"]["mean"] == pytest.approx(0.020)
    assert merged["rtt"]["counts"][0] == 7 and merged["rtt"]["sum"] == 3.0
    assert merged["connections"] == [{"connected_since": 1.0, "id": 9}]
    assert [n["node"] for n in merged["local_nodes"]] == ["m/1", "m/2"]
    assert merged["time"] == 11.0


def parse(*arguments):
    options = Options()
    options.parseOptions(list(arguments))
    return options


@pytest.mark.parametrize("arguments, message", [
    (["--redis", "http://x"], "--redis: 'http://x' is not a redis://"),
    (["--redis", "rediss://h?ca=/no/such/file.pem"], "--redis: cannot read ca="),
    (["--node-id", "a b"], "--node-id: a node id is 1 to 128 printable ASCII"),
    (["--node-timeout", "0"], "--node-timeout must be greater than 0"),
    (["--node-id", "x" * 127, "--workers", "12"],
     "--node-id: with --workers 12, the workers' ids are ID/1 to ID/12: a node id "
     "is 1 to 128"),
])
def test_bad_cluster_options_are_one_line(arguments, message):
    """A bad cluster option is refused before anything starts, in one line
    that names it."""
    with pytest.raises(usage.UsageError, match=message.replace("?", r"\?")):
        parse(*arguments)


def test_with_redis_workers_may_serve_web_and_status_ports():
    """--redis lifts the refusal of --websocket-port and --status-port with
    --workers, and the defaults need no Redis at all."""
    options = parse("--workers", "2", "--redis", "redis://127.0.0.1:6379/0",
                    "--websocket-port", "tcp:0", "--status-port", "tcp:0")
    assert options["redis"].host == "127.0.0.1"
    assert parse()["redis"] is None and parse()["node-timeout"] == 5.0


def test_a_node_id_is_checked_wherever_a_cluster_is_made():
    """A node id that could not work is refused when the cluster is made
    in Python, not later in Redis or in a worker."""
    from twisted.internet.testing import MemoryReactorClock

    from heartbeat._cluster.local import LocalCluster
    from heartbeat._cluster.redis import RedisCluster

    for bad in ["a b", "a#b", "x" * 129]:
        with pytest.raises(ValueError, match="node id"):
            LocalCluster(bad)
        with pytest.raises(ValueError, match="node id"):
            RedisCluster("redis://127.0.0.1", bad, reactor=MemoryReactorClock())
    assert LocalCluster("x" * 128).nodeId == "x" * 128
    assert parse("--node-id", "x" * 126, "--workers", "9")["node-id"] == "x" * 126
