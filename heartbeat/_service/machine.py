"""
A machine of workers (C{--workers N}): the supervisor, and beside it the
status port that shows all of the machine's workers and the push API
that reaches all of them.

Each worker sends its report (see L{heartbeat._status.report}) up its
standard output once a second, as a line C{report JSON} among its log
lines; the supervisor keeps the latest of each and shows them added up.
For C{/presence.json} and the nodes panel it looks at the cluster through
Redis, as an observer: no node, no connections.  The push API is served
here too, not by each worker: an API call is the cluster's, not one
worker's, and goes through Redis to the workers that hold the name (as a
call to any one worker would for the names the others hold), so one port
serves it whatever worker dies, with no socket to share.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple

from twisted.application.service import IService, MultiService
from twisted.python import usage

from .._cluster.identity import default_node_id
from .listener import Listener
from .supervisor import WorkerPool

# A worker not heard from for this long is left out of the totals.
STALE_REPORT = 5.0


class WorkerReports:
    """
    The latest report of each worker: the status service's source on a
    supervisor.

    @ivar cluster: an observer of the workers' cluster.
    """

    def __init__(self, nodeId: str, settings: Dict[str, Any], cluster, clock) -> None:
        self.nodeId = nodeId
        self.settings = settings
        self.cluster = cluster
        self.clock = clock
        self._latest: Dict[int, Tuple[float, Dict[str, Any]]] = {}

    def reportReceived(self, worker: int, text: str) -> None:
        try:
            report = json.loads(text)
        except ValueError:
            return
        if isinstance(report, dict) and "totals" in report:
            self._latest[worker] = (self.clock.seconds(), report)

    def reports(self, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        from .._status.report import empty_report

        now = self.clock.seconds()
        fresh = [
            report for number, (at, report) in sorted(self._latest.items())
            if now - at < STALE_REPORT
        ]
        if not fresh:
            return [empty_report(self.nodeId, self.settings, now)]
        if limit is not None:
            fresh = [dict(report, connections=report["connections"][:limit])
                     for report in fresh]
        return fresh


def machine_service(options: usage.Options, reactor) -> IService:
    """
    The supervisor of C{--workers} workers, and the status port for them
    all when C{--status-port} is given.
    """
    nodeId = options["node-id"] or default_node_id()
    listeners = [("port", options["port"])]
    if options["websocket-port"] is not None:
        listeners.append(("websocket-port", options["websocket-port"]))
    pool = WorkerPool(listeners, options["workers"], options.arguments, nodeId, reactor)
    if options["status-port"] is None and options["api-port"] is None:
        return pool
    from .._cluster.redis import RedisCluster
    from .node import ClusterService

    cluster = RedisCluster(options["redis"], nodeId, options["node-timeout"],
                           reactor, observer=True)
    machine = MultiService()
    pool.setServiceParent(machine)
    ClusterService(cluster).setServiceParent(machine)
    if options["status-port"] is not None:
        from .._status.service import StatusService

        reports = WorkerReports(
            nodeId,
            {"interval": options["interval"], "timeout": options["timeout"],
             "pong_timeout": options["pong-timeout"],
             "max_connections": options["max-connections"]},
            cluster,
            reactor,
        )
        pool.reportReceived = reports.reportReceived
        status = StatusService(reports)
        status.setServiceParent(machine)
        Listener("status-port", options["status-port"], status.site(),
                 reactor).setServiceParent(machine)
    if options["api-port"] is not None:
        from .._server.factory import HeartbeatServerFactory
        from .node import api_listener

        # The cluster's entry point for backends: a server factory of no
        # connections of its own, whose sends go through Redis to the
        # workers that hold the names.
        api_listener(options, HeartbeatServerFactory(
            maxLineLength=options["max-line-length"], clock=reactor, cluster=cluster,
        )).setServiceParent(machine)
    return machine
