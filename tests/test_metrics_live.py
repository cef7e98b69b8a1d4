"""
/metrics and /status.json of a real server on loopback, as a test's own
peers come, ping, fall silent and are refused.
"""

import json
from urllib.request import urlopen

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .processes import wait_for
from .webserver import AnsweringPeer, WebServer, raw_page


@pytest.fixture
def server():
    server = WebServer(
        "--interval", "0.3", "--timeout", "1.0", "--max-connections", "1",
        ports=("port", "status-port"),
    )
    yield server
    server.stop()


def metrics(server):
    text = urlopen(server.url("status-port", "/metrics"), timeout=5).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(server, name, **labels):
    return metrics(server)[name, tuple(sorted(labels.items()))]


def test_counters_move_as_peers_act(server):
    """Each thing a peer does shows in /metrics and /status.json."""
    port = server.ports["port"]
    assert value(server, "heartbeat_connections_open", transport="line") == 0

    peer = AnsweringPeer(port, answering=False)
    peer.send(b"ping a")
    wait_for(lambda: value(server, "heartbeat_pings_received_total") == 1, 5, what="ping counted")
    assert value(server, "heartbeat_connections_open", transport="line") == 1
    assert value(server, "heartbeat_connections_accepted_total") == 1

    refused = AnsweringPeer(port)
    wait_for(lambda: refused.closed, 5, what="second connection refused")
    assert refused.lines == [b"error server full"]
    assert value(server, "heartbeat_connections_refused_total") == 1

    # Silent: pinged after the interval, dropped after the timeout.
    wait_for(lambda: value(server, "heartbeat_pings_sent_total") >= 1, 5, what="server pings")
    wait_for(lambda: peer.closed, 5, what="silent peer dropped")
    assert value(server, "heartbeat_timeouts_total") == 1
    assert value(server, "heartbeat_connections_open", transport="line") == 0

    # Back at once from the same address, answering pings this time.
    again = AnsweringPeer(port)
    wait_for(lambda: value(server, "heartbeat_rtt_seconds_count") >= 1, 5, what="a round trip")
    assert value(server, "heartbeat_reconnects_total") == 1
    assert value(server, "heartbeat_rtt_seconds_bucket", le="+Inf") >= 1

    status = json.load(urlopen(server.url("status-port", "/status.json"), timeout=5))
    [row] = status["connections"]
    assert row["transport"] == "line"
    assert row["peer"] == "127.0.0.1:%d" % again.sock.getsockname()[1]
    assert status["totals"]["timed_out"] == 1
    again.close()


def test_open_pages_show_in_the_websocket_gauge():
    """heartbeat_connections_open{transport="websocket"} follows the pages
    that come and go, apart from the line connections."""
    # Pages that never answer a ping: a timeout long past the test.
    server = WebServer("--interval", "5", "--timeout", "15",
                       ports=("port", "websocket-port", "status-port"))
    try:
        assert value(server, "heartbeat_connections_open", transport="websocket") == 0
        pages = [raw_page(server.ports["websocket-port"]) for _ in range(2)]
        wait_for(lambda: value(server, "heartbeat_connections_open",
                               transport="websocket") == 2, 5, what="two pages counted")
        assert value(server, "heartbeat_connections_open", transport="line") == 0
        pages.pop().close()
        wait_for(lambda: value(server, "heartbeat_connections_open",
                               transport="websocket") == 1, 5, what="one page gone")
        pages.pop().close()
        wait_for(lambda: value(server, "heartbeat_connections_open",
                               transport="websocket") == 0, 5, what="both pages gone")
    finally:
        server.stop()


def test_sessions_show_in_metrics_and_status(server):
    """A session counts as connected, then as waiting once its connection
    is lost; a resumption and a session lost are counted."""
    port = server.ports["port"]
    peer = AnsweringPeer(port)
    peer.send(b"heartbeat/1 resume")
    wait_for(lambda: value(server, "heartbeat_sessions", state="connected") == 1, 5,
             what="a session")
    wait_for(lambda: peer.lines, 5, what="the answer")
    sid = peer.lines[0].split(b"session=")[1].split()[0]
    peer.close()
    wait_for(lambda: value(server, "heartbeat_sessions", state="waiting") == 1, 5,
             what="the session waiting")
    back = AnsweringPeer(port)
    back.send(b"heartbeat/1 resume=%s received=0" % sid)
    wait_for(lambda: value(server, "heartbeat_sessions_resumed_total") == 1, 5,
             what="the resumption")
    assert value(server, "heartbeat_sessions", state="waiting") == 0
    back.close()
    # One connection at a time on this server.
    wait_for(lambda: value(server, "heartbeat_connections_open", transport="line") == 0, 5,
             what="the last one gone")
    stranger = AnsweringPeer(port)
    stranger.send(b"heartbeat/1 resume=AAAAAAAAAAAAAAAAAAAAAA received=0")
    wait_for(lambda: value(server, "heartbeat_sessions_lost_total") == 1, 5,
             what="a session lost")
    totals = json.load(urlopen(server.url("status-port", "/status.json"), timeout=5))["totals"]
    # The one resumed, waiting again, and the stranger's new one.
    assert (totals["sessions"], totals["sessions_resumed"], totals["sessions_lost"]) == (2, 1, 1)
    stranger.close()
