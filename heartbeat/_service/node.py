"""
One server process, a node: the line server's listener and, beside it,
the WebSocket and status listeners that the options ask for.
"""

from __future__ import annotations

from twisted.application.service import IService, MultiService
from twisted.logger import Logger
from twisted.python import usage

from .._server.factory import HeartbeatServerFactory
from .._server.line import BroadcastServerProtocol, HeartbeatServerProtocol
from .listener import Listener

log = Logger()


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
    ports = [options[name] for name in ("websocket-port", "status-port")]
    if ports == [None, None]:
        return line
    services = MultiService()
    line.setServiceParent(services)
    websocketPort, statusPort = ports
    if websocketPort is not None:
        site = _websocket_site(options, server)
        Listener("websocket-port", websocketPort, site, _reactor()).setServiceParent(
            services
        )
        log.info("WebSocket and /heartbeat.js on {port}", port=websocketPort)
    if statusPort is not None:
        from .._status.service import StatusService

        status = StatusService(server)
        status.setServiceParent(services)
        Listener("status-port", statusPort, status.site(), _reactor()).setServiceParent(
            services
        )
        log.info("status page, /status.json and /metrics on {port}", port=statusPort)
    return services


def _websocket_site(options: usage.Options, server: HeartbeatServerFactory):
    from .._server.websocket import (
        BroadcastWebSocketServerProtocol,
        HeartbeatWebSocketServerFactory,
        websocket_site,
    )

    factory = HeartbeatWebSocketServerFactory(server, options["allowed-origins"])
    if options["broadcast"]:
        factory.protocol = BroadcastWebSocketServerProtocol
    return websocket_site(factory)


def server_factory(options: usage.Options) -> HeartbeatServerFactory:
    """
    The line server's factory the options describe: one per worker.
    """
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
        tcpKeepalive=options["tcp-keepalive"],
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
    factory = server_factory(options)
    service = Listener("port", options["port"], factory, _reactor())
    return with_web_services(options, factory, service)
