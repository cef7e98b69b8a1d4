"""
The twistd plugin's browser and operator options: C{--websocket-port} and
C{--status-port}, each a listener beside the line server's C{--port}.
"""

from __future__ import annotations

from importlib import import_module
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python import usage

from ._server import HeartbeatServerFactory

log = Logger()

# option, what it needs, the extra that installs it
_NEEDS = {
    "websocket-port": ("autobahn", "websocket"),
    "status-port": ("prometheus_client", "status"),
}


class WebOptions(usage.Options):
    """
    Mixed into the plugin's options, before L{HeartbeatOptions}.
    """

    optParameters = [
        [
            "websocket-port",
            None,
            None,
            "Also serve WebSocket here (and the browser client at "
            "/heartbeat.js): a port number or a server endpoint description. "
            "Needs heartbeat[websocket].",
        ],
        [
            "status-port",
            None,
            None,
            "Serve the live status page, /status.json and /metrics here. "
            "Needs heartbeat[status].",
        ],
    ]

    def postOptions(self) -> None:
        super().postOptions()
        from ._tap import server_description

        for name, (module, extra) in _NEEDS.items():
            if self[name] is None:
                continue
            try:
                import_module(module)
            except ImportError:
                raise usage.UsageError(
                    f"--{name} needs {module}: pip install 'heartbeat[{extra}]'"
                )
            self[name] = description = server_description(self[name])
            try:
                serverFromString(_reactor(), description)
            except Exception as e:
                raise usage.UsageError(
                    f"--{name} {description!r} is not a server endpoint: {e}"
                )
            for other in ("port", "websocket-port"):
                if other != name and self[other] and _same_port(description, self[other]):
                    raise usage.UsageError(f"--{name} must differ from --{other}")


def _same_port(description: str, other: str) -> bool:
    # Port 0 asks for any free port: those never clash.
    from ._tap import server_description

    return description == server_description(other) and description.split(":")[1:2] != ["0"]


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
    from ._monitor import MonitoredServerFactory

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
        _listen(services, websocketPort, _websocket_site(options, server))
        log.info("WebSocket and /heartbeat.js on {port}", port=websocketPort)
    if statusPort is not None:
        from ._status import StatusService

        status = StatusService(server)
        status.setServiceParent(services)
        _listen(services, statusPort, status.site())
        log.info("status page, /status.json and /metrics on {port}", port=statusPort)
    return services


def _listen(parent: MultiService, description: str, factory) -> None:
    StreamServerEndpointService(
        serverFromString(_reactor(), description), factory
    ).setServiceParent(parent)


def _websocket_site(options: usage.Options, server: HeartbeatServerFactory):
    from ._websocket import (
        BroadcastWebSocketServerProtocol,
        HeartbeatWebSocketServerFactory,
        websocket_site,
    )

    factory = HeartbeatWebSocketServerFactory(server)
    if options["broadcast"]:
        factory.protocol = BroadcastWebSocketServerProtocol
    return websocket_site(factory)

