"""
One server process, a node: the line server's listener and, beside it,
the WebSocket and status listeners that the options ask for, and its
link to the rest of the cluster.
"""

from __future__ import annotations

from typing import Optional

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred
from twisted.python import usage

from .._cluster.interface import Cluster
from .._cluster.local import LocalCluster
from .._server.factory import HeartbeatServerFactory
from .._server.line import BroadcastServerProtocol, HeartbeatServerProtocol
from .listener import Listener


def _reactor():
    from twisted.internet import reactor

    return reactor


def server_factory_class(options: usage.Options) -> type:
    """
    The line server's factory: one that also keeps the status page's
    records when there is a status page.
    """
    if options["status-port"] is None:
        return HeartbeatServerFactory
    from .._status.monitor import MonitoredServerFactory

    return MonitoredServerFactory


def with_web_services(
    options: usage.Options, server: HeartbeatServerFactory, line: IService
) -> IService:
    """
    The line server's service, with the WebSocket and status listeners that
    the options ask for beside it.
    """
    ports = [options[name] for name in ("websocket-port", "status-port", "api-port")]
    if ports == [None, None, None]:
        return line
    services = MultiService()
    line.setServiceParent(services)
    websocketPort, statusPort, apiPort = ports
    if websocketPort is not None:
        site = websocket_site_for(options, server)
        Listener("websocket-port", websocketPort, site, _reactor()).setServiceParent(
            services
        )
    if statusPort is not None:
        from .._status.service import StatusService

        status = StatusService(server)
        status.setServiceParent(services)
        Listener("status-port", statusPort, status.site(), _reactor()).setServiceParent(
            services
        )
    if apiPort is not None:
        api_listener(options, server).setServiceParent(services)
    return services


def api_listener(options: usage.Options, server: HeartbeatServerFactory) -> Listener:
    """
    The push API's listener on C{--api-port}, driving C{server}.
    """
    from .._status.api import api_site

    site = api_site(server, options["api-token"], _reactor())
    return Listener("api-port", options["api-port"], site, _reactor())


def websocket_site_for(options: usage.Options, server: HeartbeatServerFactory):
    """
    The WebSocket port's site, serving connections of C{server}.
    """
    from .._server.websocket import (
        BroadcastWebSocketServerProtocol,
        HeartbeatWebSocketServerFactory,
        websocket_site,
    )

    factory = HeartbeatWebSocketServerFactory(server, options["allowed-origins"])
    if options["broadcast"]:
        factory.protocol = BroadcastWebSocketServerProtocol
    return websocket_site(factory)


def session_window(options: usage.Options) -> float:
    """
    How long sessions live: C{--resume-window}, but none for workers
    without Redis, where a client that comes back may reach a worker that
    does not hold its session.
    """
    if options["workers"] > 1 and options["redis"] is None:
        return 0.0
    return options["resume-window"]


def make_cluster(options: usage.Options) -> Cluster:
    """
    The cluster the options describe: on Redis with C{--redis}, else this
    process alone.
    """
    if options["redis"] is None:
        return LocalCluster(options["node-id"])
    from .._cluster.redis import RedisCluster

    return RedisCluster(options["redis"], options["node-id"], options["node-timeout"])


class ClusterService(Service):
    """
    Joins the cluster when the node starts, and leaves it at once when the
    node stops (C{SIGTERM}), before the listeners close.
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def startService(self) -> None:
        super().startService()
        self.cluster.start()

    def stopService(self) -> Deferred:
        super().stopService()
        return self.cluster.stop()


def server_factory(
    options: usage.Options, cluster: Optional[Cluster] = None
) -> HeartbeatServerFactory:
    """
    The line server's factory the options describe: one per worker.
    """
    window = session_window(options)
    sessions = None
    if window and options["redis"] is not None:
        from .._session.redis import RedisSessionStore

        sessions = RedisSessionStore(
            cluster, window, options["resume-buffer"], options["resume-buffer-bytes"]
        )
    factory = server_factory_class(options)(
        heartbeatInterval=options["interval"],
        heartbeatTimeout=options["timeout"],
        heartbeatPongTimeout=options["pong-timeout"],
        maxLineLength=options["max-line-length"],
        maxConnections=options["max-connections"],
        minPingInterval=options["min-ping-interval"],
        lineTimeout=options["line-timeout"],
        maxWriteBuffer=options["max-write-buffer"],
        authToken=options["auth-token"],
        authTimeout=options["auth-timeout"],
        jwtVerifier=options["jwt-verifier"],
        tcpKeepalive=options["tcp-keepalive"],
        cluster=cluster,
        resumeWindow=window,
        resumeBuffer=options["resume-buffer"],
        resumeBufferBytes=options["resume-buffer-bytes"],
        sessions=sessions,
    )
    factory.protocol = (
        BroadcastServerProtocol if options["broadcast"] else HeartbeatServerProtocol
    )
    return factory


def node_service(options: usage.Options) -> IService:
    """
    Everything one server process serves: the line server on C{--port},
    and the ports beside it.
    """
    cluster = make_cluster(options)
    factory = server_factory(options, cluster)
    service = Listener(
        "port",
        options["port"],
        factory,
        _reactor(),
        directWrites=not options["buffered-writes"],
    )
    service = with_web_services(options, factory, service)
    if options["redis"] is None:
        return service
    node = MultiService()
    # Stopped last (services stop in reverse): the node leaves the cluster
    # before its listeners close and its connections end one by one.
    service.setServiceParent(node)
    ClusterService(cluster).setServiceParent(node)
    return node
