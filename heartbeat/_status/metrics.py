"""
C{/metrics}: the server's counters in Prometheus's text format.

The numbers are read from the server when Prometheus asks, in the reactor's
thread, so nothing is counted twice and nothing needs a lock (which is why
C{prometheus_client}'s own Twisted resource, which answers from a thread
pool, is not used).

Several workers of one machine are summed, as C{prometheus_client}'s
multi-process mode does, so that a server's series are the same with one
process or many; what belongs to one node (its link to the cluster, the
lines it sent to and received from other nodes) carries a C{node} label.
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

from .monitor import RTT_BUCKETS
from .report import merge_reports

TRANSPORTS = ("line", "websocket")

# (name, help, key of the report's totals); Prometheus appends _total.
_COUNTERS = (
    ("heartbeat_connections_accepted", "Connections served.", "accepted"),
    ("heartbeat_connections_refused", "Connections refused: server full.", "refused"),
    ("heartbeat_timeouts", "Connections dropped: peer silent too long.", "timed_out"),
    ("heartbeat_reconnects", "Connections from an address that had just lost one.", "reconnects"),
    ("heartbeat_pings_sent", "Pings sent to silent peers.", "pings_sent"),
    ("heartbeat_pings_received", "Pings received from peers.", "pings_received"),
    ("heartbeat_sessions_resumed", "Connections that resumed a session.",
     "sessions_resumed"),
    ("heartbeat_sessions_lost", "Sessions a client asked to resume that were "
     "lost (expired, overflowed, unknown...).", "sessions_lost"),
)

# (name, help, key of a node's cluster report), per node.
_CLUSTER_COUNTERS = (
    ("heartbeat_cluster_messages_sent", "Lines handed to the other nodes.",
     "messages_sent"),
    ("heartbeat_cluster_messages_received", "Lines received from other nodes.",
     "messages_received"),
    ("heartbeat_cluster_messages_failed",
     "Lines that could not be handed to the other nodes.", "messages_failed"),
)


class ServerCollector:
    """
    A C{prometheus_client} collector for the reports of a server, or of a
    supervisor's workers (anything with C{reports(limit)}).
    """

    def __init__(self, server) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        reports = self.server.reports(0)
        merged = merge_reports(reports, 0)
        open_ = GaugeMetricFamily(
            "heartbeat_connections_open", "Connections open now.", labels=["transport"]
        )
        kinds = Counter(merged["transports"])
        for transport in sorted(set(TRANSPORTS) | set(kinds)):
            open_.add_metric([transport], kinds[transport])
        yield open_
        sessions = GaugeMetricFamily(
            "heartbeat_sessions", "Sessions alive now: carried by a connection, "
            "or waiting for their client.", labels=["state"]
        )
        waiting = merged["totals"]["sessions_waiting"]
        sessions.add_metric(["connected"], merged["totals"]["sessions"] - waiting)
        sessions.add_metric(["waiting"], waiting)
        yield sessions
        for name, documentation, key in _COUNTERS:
            yield CounterMetricFamily(name, documentation, merged["totals"][key])
        cumulative = list(accumulate(merged["rtt"]["counts"]))
        bounds = [floatToGoString(b) for b in RTT_BUCKETS] + ["+Inf"]
        yield HistogramMetricFamily(
            "heartbeat_rtt_seconds",
            "Round-trip time of answered pings.",
            buckets=list(zip(bounds, cumulative)),
            sum_value=merged["rtt"]["sum"],
        )
        up = GaugeMetricFamily(
            "heartbeat_cluster_up",
            "1 while the node reaches the rest of its cluster (always, without "
            "--redis).",
            labels=["node"],
        )
        for report in reports:
            up.add_metric([report["node"]], 1 if report["cluster"]["up"] else 0)
        yield up
        for name, documentation, key in _CLUSTER_COUNTERS:
            family = CounterMetricFamily(name, documentation, labels=["node"])
            for report in reports:
                family.add_metric([report["node"]], report["cluster"][key])
            yield family


class MetricsResource(Resource):
    """
    Serves one server's metrics, and only those.
    """

    isLeaf = True

    def __init__(self, server) -> None:
        super().__init__()
        self._registry = CollectorRegistry()
        self._registry.register(ServerCollector(server))

    def render_GET(self, request) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(self._registry)
