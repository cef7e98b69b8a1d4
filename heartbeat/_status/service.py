"""
The operator's view on C{--status-port}: a live page, C{/status.json} with
the same data, an event stream that keeps the page current, and
C{/metrics} for Prometheus.
"""

from __future__ import annotations

import heapq
import json
from collections import deque
from typing import Any, Deque, Dict, Optional, Set, Tuple

from twisted.application.service import Service
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface import implementer

from .._core.protocol import peer_name
from .._server.assets import Asset
from .metrics import MetricsResource
from .monitor import MonitoredServerFactory


def connection_row(protocol: Any, ident: int, since: float, now: float) -> dict:
    """
    One line of the connections table.
    """
    return {
        "id": ident,
        "transport": protocol.heartbeatFraming,
        "peer": peer_name(protocol),
        "connected_since": since,
        "connected_for": now - since,
        "silent_for": max(0.0, now - protocol.heartbeatLastReceived),
        "rtt": protocol.heartbeatRtt,
        "smoothed_rtt": protocol.heartbeatSmoothedRtt,
        "pong_deadline": protocol.heartbeatPongDeadline,
    }


def mean_rtt(server: MonitoredServerFactory) -> Optional[float]:
    """
    The mean smoothed round trip of the connections that have one.
    """
    rtts = [
        rtt for rtt in (p.heartbeatSmoothedRtt for p in server.connections)
        if rtt is not None
    ]
    return sum(rtts) / len(rtts) if rtts else None


class StatusService(Service):
    """
    Samples the server every L{sampleInterval} seconds for the chart and
    pushes a snapshot to every page watching.

    @ivar history: the last L{historyLength} samples: time, open
        connections, mean round trip.
    @ivar maxRows: the most connections a page is sent (oldest first);
        C{/status.json} lists them all.
    @ivar maxWatchers: the most pages watching at once.
    @ivar idleTimeout: seconds the status port keeps a connection on which
        no request is under way (a watching page's stream is one).
    """

    log = Logger()
    sampleInterval = 1.0
    historyLength = 300
    maxRows = 200
    maxWatchers = 100
    idleTimeout = 60.0

    def __init__(self, server: MonitoredServerFactory) -> None:
        self.server = server
        self.history: Deque[Dict[str, Any]] = deque(maxlen=self.historyLength)
        self.watchers: Set[_Watcher] = set()
        self._loop: Optional[LoopingCall] = None
        self._full: Optional[Tuple[float, bytes]] = None

    def snapshot(self, limit: Optional[int] = None) -> Dict[str, Any]:
        """
        Everything the page shows, as JSON-ready data.

        @param limit: list at most this many connections, oldest first.
        """
        server = self.server
        now = server.clock.seconds()
        info = server.connectionInfo.items()
        if limit is not None:
            info = heapq.nsmallest(limit, info, key=lambda item: item[1][0])
        else:
            info = sorted(info, key=lambda item: item[1][0])
        return {
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
            },
            "connections": [
                connection_row(protocol, ident, since, now)
                for protocol, (ident, since) in info
            ],
            "history": list(self.history),
        }

    def fullSnapshot(self) -> bytes:
        """
        C{/status.json}'s body, every connection included, built at most
        once per L{sampleInterval}: with 10,000 connections it takes tens
        of milliseconds, which a client asking in a loop must not make the
        server spend at its own pace.
        """
        now = self.server.clock.seconds()
        full = self._full
        if full is None or now - full[0] >= self.sampleInterval:
            full = self._full = (now, json.dumps(self.snapshot()).encode())
        return full[1]

    def sample(self) -> None:
        """
        Add a point to the chart's history and update every watching page.
        """
        server = self.server
        self.history.append(
            {
                "time": server.clock.seconds(),
                "open": len(server.connections),
                "rtt": mean_rtt(server),
            }
        )
        if self.watchers:
            event = _event(self.snapshot(self.maxRows))
            for watcher in list(self.watchers):
                watcher.send(event)

    def startService(self) -> None:
        super().startService()
        self.sample()
        self._loop = LoopingCall(self.sample)
        self._loop.clock = self.server.clock
        self._loop.start(self.sampleInterval, now=False).addErrback(
            lambda failure: self.log.failure("status sampling stopped", failure)
        )

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        for watcher in list(self.watchers):
            watcher.request.unregisterProducer()
            watcher.request.finish()

    def resource(self) -> Resource:
        """
        The status port's pages: C{/}, C{/status.js}, C{/status.json},
        C{/events} and C{/metrics}.
        """
        root = Resource()
        root.putChild(b"", Asset("status.html"))
        root.putChild(b"status.js", Asset("status.js"))
        root.putChild(b"status.json", _Json(self))
        root.putChild(b"events", _Events(self))
        root.putChild(b"metrics", MetricsResource(self.server))
        return root

    def site(self) -> Site:
        site = Site(
            self.resource(), timeout=self.idleTimeout, reactor=self.server.clock
        )
        site.noisy = False
        return site


def _event(snapshot: Dict[str, Any]) -> bytes:
    return b"event: snapshot\ndata: " + json.dumps(snapshot).encode() + b"\n\n"


class _Json(Resource):
    isLeaf = True

    def __init__(self, status: StatusService) -> None:
        super().__init__()
        self._status = status

    def render_GET(self, request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-cache")
        return self._status.fullSnapshot()


class _Events(Resource):
    """
    Server-sent events: a snapshot at once, then one per sample.
    """

    isLeaf = True

    def __init__(self, status: StatusService) -> None:
        super().__init__()
        self._status = status

    def render_GET(self, request):
        status = self._status
        if len(status.watchers) >= status.maxWatchers:
            request.setResponseCode(503)
            return b"too many pages watching\n"
        request.setHeader(b"content-type", b"text/event-stream")
        request.setHeader(b"cache-control", b"no-cache")
        watcher = _Watcher(request)
        status.watchers.add(watcher)
        request.registerProducer(watcher, True)
        request.notifyFinish().addBoth(lambda _: status.watchers.discard(watcher))
        watcher.send(_event(status.snapshot(status.maxRows)))
        return NOT_DONE_YET


@implementer(IPushProducer)
class _Watcher:
    """
    One page's event stream.  While its connection cannot keep up, updates
    are skipped rather than queued: the next snapshot replaces them all.
    """

    def __init__(self, request) -> None:
        self.request = request
        self.paused = False

    def send(self, event: bytes) -> None:
        if not self.paused:
            self.request.write(event)

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.paused = True
