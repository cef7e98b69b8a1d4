"""
What one node tells the operator's view, as JSON-ready data: its settings,
totals, round trips, cluster counters and its oldest connections.

A single process shows its own report; a supervisor of workers shows the
reports its workers send it every second (see
L{heartbeat._service.supervisor}), added together by L{merge_reports}.
"""

from __future__ import annotations

import heapq
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence

from .._core.protocol import peer_name
from .buckets import RTT_BUCKETS

Report = Dict[str, Any]

# The totals that add up across nodes.
TOTALS = ("open", "accepted", "timed_out", "refused", "reconnects",
          "pings_sent", "pings_received", "sessions", "sessions_waiting",
          "sessions_resumed", "sessions_lost")


def connection_row(protocol: Any, ident: int, since: float, now: float) -> dict:
    """
    One line of the connections table.
    """
    return {
        "id": ident,
        "transport": protocol.heartbeatFraming,
        "peer": peer_name(protocol),
        "name": protocol.heartbeatName,
        "verified": protocol.heartbeatVerified,
        "connected_since": since,
        "connected_for": now - since,
        "silent_for": max(0.0, now - protocol.heartbeatLastReceived),
        "rtt": protocol.heartbeatRtt,
        "smoothed_rtt": protocol.heartbeatSmoothedRtt,
        "peer_pings": protocol.heartbeatPeerPinged,
        "pong_deadline": protocol.heartbeatPongDeadline,
    }


def node_report(server: Any, limit: Optional[int] = None) -> Report:
    """
    The report of one L{heartbeat._status.monitor.MonitoredServerFactory}.

    @param limit: list at most this many connections, oldest first.
    """
    now = server.clock.seconds()
    info = server.connectionInfo.items()
    if limit is not None:
        info = heapq.nsmallest(limit, info, key=lambda item: item[1][0])
    else:
        info = sorted(info, key=lambda item: item[1][0])
    rtts = [
        rtt for rtt in (p.heartbeatSmoothedRtt for p in server.connections)
        if rtt is not None
    ]
    cluster = server.cluster
    node = cluster.nodeId
    rows = []
    for protocol, (ident, since) in info:
        row = connection_row(protocol, ident, since, now)
        row["node"] = node
        rows.append(row)
    return {
        "node": node,
        "time": now,
        "settings": {
            "interval": server.heartbeatInterval,
            "timeout": server.heartbeatTimeout,
            "pong_timeout": server.heartbeatPongTimeout,
            "max_connections": server.maxConnections,
        },
        "totals": {
            "open": len(server.connections),
            "accepted": server.accepted,
            "timed_out": server.timeouts,
            "refused": server.refused,
            "reconnects": server.reconnects,
            "pings_sent": server.pingsSent,
            "pings_received": server.pingsReceived,
            **session_totals(server.sessions),
        },
        "transports": dict(Counter(p.heartbeatFraming for p in server.connections)),
        "rtt": {
            "counts": list(server.rttCounts),
            "sum": server.rttSum,
            "mean": sum(rtts) / len(rtts) if rtts else None,
            "samples": len(rtts),
        },
        "cluster": {
            "up": cluster.up,
            "messages_sent": cluster.messagesSent,
            "messages_received": cluster.messagesReceived,
            "messages_failed": cluster.messagesFailed,
        },
        "connections": rows,
    }


def session_totals(sessions: Any) -> Dict[str, int]:
    """
    What a server's session store counts: live sessions, those waiting for
    their client, resumptions, and resumptions refused (the client told
    its session was lost).
    """
    if sessions is None:
        return dict.fromkeys(TOTALS[-4:], 0)
    return {
        "sessions": len(sessions.sessions),
        "sessions_waiting": sessions.detachedCount,
        "sessions_resumed": sessions.resumed,
        "sessions_lost": sum(sessions.refused.values()),
    }


def empty_report(node: str, settings: Dict[str, Any], time: float) -> Report:
    """
    The report of a node with nothing to report yet (workers starting).
    """
    return {
        "node": node,
        "time": time,
        "settings": settings,
        "totals": dict.fromkeys(TOTALS, 0),
        "transports": {},
        "rtt": {"counts": [0] * (len(RTT_BUCKETS) + 1), "sum": 0.0, "mean": None,
                "samples": 0},
        "cluster": {"up": False, "messages_sent": 0, "messages_received": 0,
                    "messages_failed": 0},
        "connections": [],
    }


def merge_reports(reports: Sequence[Report], limit: Optional[int] = None) -> Report:
    """
    Several nodes' reports as one: totals, transports and round-trip
    counts added, the mean round trip weighted by the connections behind
    it, the oldest connections of all, and a line per node.
    """
    if not reports:
        return {}
    first = reports[0]
    totals = {key: sum(r["totals"][key] for r in reports) for key in TOTALS}
    transports: Counter = Counter()
    for report in reports:
        transports.update(report["transports"])
    samples = sum(r["rtt"]["samples"] for r in reports)
    weighted = sum(r["rtt"]["mean"] * r["rtt"]["samples"] for r in reports
                   if r["rtt"]["mean"] is not None)
    rows: List[dict] = [row for r in reports for row in r["connections"]]
    rows.sort(key=lambda row: row["connected_since"])
    if limit is not None:
        rows = rows[:limit]
    return {
        "time": max(r["time"] for r in reports),
        "settings": first["settings"],
        "totals": totals,
        "transports": dict(transports),
        "rtt": {
            "counts": [sum(c) for c in zip(*(r["rtt"]["counts"] for r in reports))],
            "sum": sum(r["rtt"]["sum"] for r in reports),
            "mean": weighted / samples if samples else None,
            "samples": samples,
        },
        "connections": rows,
        "local_nodes": [
            {"node": r["node"], "open": r["totals"]["open"], **r["cluster"]}
            for r in reports
        ],
    }
