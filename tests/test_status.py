"""
The operator's view: the monitoring factory, the status snapshot and its
event stream, and /metrics, with a fake clock and fake requests.
"""

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from heartbeat._status.monitor import RTT_BUCKETS, MonitoredServerFactory
from heartbeat._status.service import StatusService

from .helpers import connect, lose
from .test_websocket import HeartbeatWebSocketServerFactory, open_browser


def make_server(clock, **kwargs):
    kwargs.setdefault("heartbeatInterval", 1.0)
    kwargs.setdefault("heartbeatTimeout", 3.0)
    return MonitoredServerFactory(clock=clock, **kwargs)


def connect_from(server, host, port=40000):
    return connect(server, StringTransport(peerAddress=IPv4Address("TCP", host, port)))


class StreamRequest(DummyRequest):
    """A request that keeps its push producer, and like a real one refuses
    to finish with it still registered."""

    producer = None

    def registerProducer(self, producer, streaming):
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None

    def finish(self):
        assert self.producer is None, "producer was not unregistered"
        super().finish()


def get(resource, path=b""):
    request = StreamRequest([path])
    result = resource.getChildWithDefault(path, request).render(request)
    return request, result


def test_connections_get_ids_and_start_times(clock):
    """Each connection is numbered once, for good, and stamped when it came."""
    server = make_server(clock)
    a, _ = connect(server)
    clock.advance(5)
    b, _ = connect(server)
    lose(a)
    c, _ = connect(server)
    assert server.connectionInfo == {b: (2, 5.0), c: (3, 5.0)}


def test_a_quick_return_from_the_same_address_is_a_reconnect(clock):
    """An address back within the window counts; later, or another, not."""
    server = make_server(clock)
    server.reconnectWindow = 10.0
    a, _ = connect_from(server, "10.0.0.1")
    lose(a)
    clock.advance(9)
    b, _ = connect_from(server, "10.0.0.1", 40001)
    other, _ = connect_from(server, "10.0.0.2")
    assert server.reconnects == 1
    lose(b)
    clock.advance(11)
    connect_from(server, "10.0.0.1", 40002)
    assert server.reconnects == 1


def test_remembered_addresses_are_bounded(clock):
    """A crowd of one-off visitors cannot grow the server's memory."""
    server = make_server(clock)
    server.maxRemembered = 3
    for n in range(10):
        protocol, _ = connect_from(server, "10.0.0.%d" % n)
        lose(protocol)
    assert len(server._ended) == 3
    connect_from(server, "10.0.0.9")
    connect_from(server, "10.0.0.0")
    assert server.reconnects == 1


def test_round_trips_fill_the_histogram(clock):
    """Each sample lands in the first bucket at or above it."""
    server = make_server(clock)
    protocol, _ = connect(server)
    for rtt in (0.0004, 0.001, 0.003, 99.0):
        server.roundTripMeasured(protocol, rtt)
    counts = dict(zip(RTT_BUCKETS + ("inf",), server.rttCounts))
    assert counts[0.0005] == counts[0.001] == counts[0.005] == counts["inf"] == 1
    assert sum(server.rttCounts) == 4
    assert server.rttSum == pytest.approx(99.0044)


def test_snapshot_lists_both_kinds_of_connection(clock):
    """The table shows line and WebSocket peers with their silence and RTT."""
    server = make_server(clock)
    line, transport = connect_from(server, "10.0.0.7", 5555)
    page, browser, pump = open_browser(clock, HeartbeatWebSocketServerFactory(server))
    clock.advance(1.0)
    pump.flush()
    line.dataReceived(b"pong 1\n")
    clock.advance(0.5)
    status = StatusService(server)
    snapshot = status.snapshot()
    rows = snapshot["connections"]
    assert [(r["id"], r["transport"]) for r in rows] == [(1, "line"), (2, "websocket")]
    assert rows[0]["peer"] == "10.0.0.7:5555"
    assert rows[0]["silent_for"] == pytest.approx(0.5)
    assert rows[0]["connected_for"] == pytest.approx(1.5)
    assert rows[0]["rtt"] == pytest.approx(0.0) and rows[1]["rtt"] is not None
    assert snapshot["totals"]["open"] == 2
    assert snapshot["totals"]["pings_sent"] == 2
    assert snapshot["settings"] == {
        "interval": 1.0, "timeout": 3.0, "pong_timeout": 5.0, "max_connections": 10000}
    assert rows[0]["pong_deadline"] == 5.0 and rows[1]["pong_deadline"] == 5.0
    assert len(status.snapshot(limit=1)["connections"]) == 1


def test_a_peer_that_pings_is_marked_in_its_row(clock):
    """A peer that pings the server, and so is never pinged, is marked as
    such in the table, where the round trip would be; others are not."""
    server = make_server(clock)
    pinging, _ = connect_from(server, "10.0.0.7", 5555)
    quiet, _ = connect_from(server, "10.0.0.8", 5555)
    for _ in range(3):
        clock.advance(0.5)
        pinging.dataReceived(b"ping mine\n")
    rows = StatusService(server).snapshot()["connections"]
    assert [(r["peer_pings"], r["rtt"]) for r in rows] == [(True, None), (False, None)]
    assert pinging.heartbeatPingsSent == 0 and quiet.heartbeatPingsSent == 1


def test_history_samples_every_second_and_forgets_the_oldest(clock):
    """The chart's data: one point a second, the last few minutes only."""
    server = make_server(clock)
    status = StatusService(server)
    status.history = type(status.history)(maxlen=5)
    status.startService()
    connect(server)
    clock.advance(1.0)
    assert [p["open"] for p in status.history] == [0, 1]
    clock.pump([1.0] * 10)
    assert len(status.history) == 5
    status.stopService()
    assert status.history[-1]["time"] == 11.0
    assert clock.getDelayedCalls() == []


def test_status_json_has_every_connection(clock):
    """/status.json is the same data as the page, not capped."""
    server = make_server(clock)
    for _ in range(3):
        connect(server)
    status = StatusService(server)
    status.maxRows = 1
    request, body = get(status.resource(), b"status.json")
    data = json.loads(body)
    assert len(data["connections"]) == 3
    assert request.responseHeaders.getRawHeaders(b"content-type") == [b"application/json"]


def test_status_json_is_built_once_per_sample_interval(clock):
    """Asking /status.json in a loop costs one build per sample interval:
    within it the same answer comes back, after it a fresh one."""
    server = make_server(clock)
    status = StatusService(server)
    builds = []
    snapshot = status.snapshot
    status.snapshot = lambda *args: builds.append(args) or snapshot(*args)
    connect(server)
    first = [get(status.resource(), b"status.json")[1] for _ in range(50)]
    connect(server)
    clock.advance(0.9)
    again = get(status.resource(), b"status.json")[1]
    assert set(first) == {again} and len(builds) == 1
    clock.advance(0.1)
    fresh = json.loads(get(status.resource(), b"status.json")[1])
    assert fresh["totals"]["open"] == 2 and len(builds) == 2


def test_an_idle_status_connection_is_closed(clock):
    """A connection to the status port with no request under way is closed
    after the idle timeout, so idle sockets cannot pile up."""
    status = StatusService(make_server(clock))
    channel, transport = connect(status.site())
    clock.advance(status.idleTimeout - 1)
    assert not transport.disconnecting
    clock.advance(2)
    assert transport.disconnecting


def test_event_stream_pushes_each_sample(clock):
    """A page watching gets a snapshot at once and one per sample; a page
    that cannot keep up is skipped, not buffered for."""
    server = make_server(clock)
    status = StatusService(server)
    request, result = get(status.resource(), b"events")
    assert result is NOT_DONE_YET
    assert request.responseHeaders.getRawHeaders(b"content-type") == [b"text/event-stream"]
    assert request.written[0].startswith(b"event: snapshot\ndata: {")
    connect(server)
    status.sample()
    assert json.loads(request.written[1].split(b"data: ")[1])["totals"]["open"] == 1
    request.producer.pauseProducing()
    status.sample()
    assert len(request.written) == 2
    request.producer.resumeProducing()
    status.sample()
    assert len(request.written) == 3
    request.processingFailed(Failure(ConnectionDone()))  # the page left
    assert status.watchers == set()


def test_stopping_ends_every_stream_cleanly(clock):
    """On shutdown each watching page's stream is finished, without errors."""
    status = StatusService(make_server(clock))
    status.startService()
    request, _ = get(status.resource(), b"events")
    status.stopService()
    assert request.finished == 1 and status.watchers == set()
    assert clock.getDelayedCalls() == []


def test_watchers_are_capped(clock):
    """Past maxWatchers a page is turned away instead of costing memory."""
    status = StatusService(make_server(clock))
    status.maxWatchers = 1
    get(status.resource(), b"events")
    request, body = get(status.resource(), b"events")
    assert request.responseCode == 503


def test_metrics_parse_and_follow_the_server(clock):
    """/metrics parses with prometheus_client's own parser, with
    conventional names, and its numbers are the server's."""
    server = make_server(clock, maxConnections=1)
    protocol, _ = connect(server)
    connect(server)
    clock.advance(1.0)
    protocol.dataReceived(b"ping\n")
    server.roundTripMeasured(protocol, 0.002)
    request, body = get(StatusService(server).resource(), b"metrics")
    assert request.responseHeaders.getRawHeaders(b"content-type")[0].startswith(
        b"text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    assert families["heartbeat_connections_open"].type == "gauge"
    assert samples["heartbeat_connections_open", (("transport", "line"),)] == 1
    assert samples["heartbeat_connections_open", (("transport", "websocket"),)] == 0
    assert families["heartbeat_pings_sent"].type == "counter"
    assert samples["heartbeat_pings_sent_total", ()] == 1
    assert samples["heartbeat_pings_received_total", ()] == 1
    assert samples["heartbeat_connections_refused_total", ()] == 1
    assert samples["heartbeat_connections_accepted_total", ()] == 1
    assert samples["heartbeat_timeouts_total", ()] == 0
    assert families["heartbeat_rtt_seconds"].type == "histogram"
    assert samples["heartbeat_rtt_seconds_bucket", (("le", "0.001"),)] == 0
    assert samples["heartbeat_rtt_seconds_bucket", (("le", "0.0025"),)] == 1
    assert samples["heartbeat_rtt_seconds_bucket", (("le", "+Inf"),)] == 1
    assert samples["heartbeat_rtt_seconds_count", ()] == 1
    assert samples["heartbeat_rtt_seconds_sum", ()] == pytest.approx(0.002)


def test_pages_are_served_from_the_package(clock):
    """The page and its script come from the server itself, no CDN."""
    resource = StatusService(make_server(clock)).resource()
    request, page = get(resource, b"")
    assert b'<script type="module" src="status.js">' in page
    assert b"http" not in page.replace(b"http://www.w3.org", b"")
    request, script = get(resource, b"status.js")
    assert b'new EventSource("events")' in script
