"""
C{/metrics}: the server's counters in Prometheus's text format.

The numbers are read from the server when Prometheus asks, in the reactor's
thread, so nothing is counted twice and nothing needs a lock (which is why
C{prometheus_client}'s own Twisted resource, which answers from a thread
pool, is not used).
"""

from __future__ import annotations

from collections import Counter
from itertools import accumulate
from typing import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.utils import floatToGoString
from twisted.web.resource import Resource

from .monitor import RTT_BUCKETS, MonitoredServerFactory

TRANSPORTS = ("line", "websocket")

# (name, help, attribute of the server); Prometheus appends _total.
_COUNTERS = (
    ("heartbeat_connections_accepted", "Connections served.", "accepted"),
    ("heartbeat_connections_refused", "Connections refused: server full.", "refused"),
    ("heartbeat_timeouts", "Connections dropped: peer silent too long.", "timeouts"),
    ("heartbeat_reconnects", "Connections from an address that had just lost one.", "reconnects"),
    ("heartbeat_pings_sent", "Pings sent to silent peers.", "pingsSent"),
    ("heartbeat_pings_received", "Pings received from peers.", "pingsReceived"),
)


class ServerCollector:
    """
    A C{prometheus_client} collector for one L{MonitoredServerFactory}.
    """

    def __init__(self, server: MonitoredServerFactory) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        server = self.server
        open_ = GaugeMetricFamily(
            "heartbeat_connections_open", "Connections open now.", labels=["transport"]
        )
        kinds = Counter(p.heartbeatFraming for p in server.connections)
        for transport in sorted(set(TRANSPORTS) | set(kinds)):
            open_.add_metric([transport], kinds[transport])
        yield open_
        for name, documentation, attribute in _COUNTERS:
            yield CounterMetricFamily(name, documentation, getattr(server, attribute))
        cumulative = list(accumulate(server.rttCounts))
        bounds = [floatToGoString(b) for b in RTT_BUCKETS] + ["+Inf"]
        yield HistogramMetricFamily(
            "heartbeat_rtt_seconds",
            "Round-trip time of answered pings.",
            buckets=list(zip(bounds, cumulative)),
            sum_value=server.rttSum,
        )


class MetricsResource(Resource):
    """
    Serves one server's metrics, and only those.
    """

    isLeaf = True

    def __init__(self, server: MonitoredServerFactory) -> None:
        super().__init__()
        self._registry = CollectorRegistry()
        self._registry.register(ServerCollector(server))

    def render_GET(self, request) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(self._registry)
