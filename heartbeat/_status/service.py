"""
The operator's view on C{--status-port}: a live page, C{/status.json} with
the same data, an event stream that keeps the page current,
C{/presence.json} for the cluster, and C{/metrics} for Prometheus.

It shows a source of node reports (see L{heartbeat._status.report}): a
server of its own process, or the workers of a supervisor.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Set, Tuple

from twisted.application.service import Service
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface import implementer

from .._server.assets import Asset
from .metrics import MetricsResource
from .presence import PresenceResource, node_row
from .report import merge_reports


class StatusService(Service):
    """
    Samples the server every L{sampleInterval} seconds for the chart and
    pushes a snapshot to every page watching.

    @ivar server: what it shows: anything with a C{clock}, a C{cluster}
        and C{reports(limit)} (a L{heartbeat._status.monitor.MonitoredServerFactory},
        or a supervisor's L{heartbeat._service.supervisor.WorkerReports}).
    @ivar nodes: the cluster's nodes as last asked, for the nodes panel.
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

    def __init__(self, server: Any) -> None:
        self.server = server
        self.history: Deque[Dict[str, Any]] = deque(maxlen=self.historyLength)
        self.watchers: Set[_Watcher] = set()
        self.nodes: List[Dict[str, Any]] = []
        self._asking = False
        self._loop: Optional[LoopingCall] = None
        self._full: Optional[Tuple[float, bytes]] = None

    def snapshot(self, limit: Optional[int] = None) -> Dict[str, Any]:
        """
        Everything the page shows, as JSON-ready data.

        @param limit: list at most this many connections, oldest first.
        """
        snapshot = merge_reports(self.server.reports(limit), limit)
        snapshot["history"] = list(self.history)
        snapshot["nodes"] = self.nodes
        return snapshot

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
        now = merge_reports(self.server.reports(0), 0)
        self.history.append(
            {"time": now["time"], "open": now["totals"]["open"], "rtt": now["rtt"]["mean"]}
        )
        if self.watchers:
            self.askNodes()
            event = _event(self.snapshot(self.maxRows))
            for watcher in list(self.watchers):
                watcher.send(event)

    def askNodes(self) -> None:
        """
        Ask the cluster for its nodes, for the next snapshot's panel; one
        question at a time.
        """
        if self._asking:
            return
        self._asking = True

        def answered(nodes) -> None:
            self.nodes = [node_row(node) for node in nodes]

        def failed(failure) -> None:
            self.nodes = []

        def done(_) -> None:
            self._asking = False

        self.server.cluster.nodes().addCallbacks(answered, failed).addBoth(done)

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
        C{/presence.json}, C{/events} and C{/metrics}.
        """
        root = Resource()
        root.putChild(b"", Asset("status.html"))
        root.putChild(b"status.js", Asset("status.js"))
        root.putChild(b"status.json", _Json(self))
        root.putChild(b"presence.json", PresenceResource(self.server.cluster))
        root.putChild(b"events", _Events(self))
        root.putChild(b"metrics", MetricsResource(self.server))
        return root

    def site(self) -> Site:
        site = _UnloggedSite(
            self.resource(), timeout=self.idleTimeout, reactor=self.server.clock
        )
        site.noisy = False
        return site


class _UnloggedSite(Site):
    """
    The status port writes no access log: a Prometheus scrape every 15 s,
    or a page's requests, would fill the server's own log.
    """

    def log(self, request) -> None:
        pass


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
