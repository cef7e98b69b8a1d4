"""
The twistd plugin's browser and operator options: C{--websocket-port} and
C{--status-port}, each a listener beside the line server's C{--port}.
"""

from __future__ import annotations

import re
from importlib import import_module
from twisted.application.service import IService, MultiService
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python import usage

from ._listener import Listener
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
            "allowed-origins",
            None,
            None,
            "Origins whose pages may open a WebSocket, comma-separated, as "
            "browsers send them: https://app.example.com,http://localhost:3000 "
            "(* in a host matches anything). Programs, which send no Origin, "
            "are not affected. [default: pages from anywhere]",
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
        if self["allowed-origins"] is not None:
            self["allowed-origins"] = _origins(self)


def _origins(options: usage.Options) -> list:
    if options["websocket-port"] is None:
        raise usage.UsageError("--allowed-origins needs --websocket-port")
    from ._websocket import origin_pattern

    origins = [o.strip() for o in options["allowed-origins"].split(",") if o.strip()]
    try:
        for origin in origins:
            origin_pattern(origin)
    except ValueError as e:
        raise usage.UsageError(f"--allowed-origins: {e}")
    if not origins:
        raise usage.UsageError("--allowed-origins must name at least one origin")
    return origins


def _same_port(description: str, other: str) -> bool:
    """
    Whether two server endpoint descriptions would listen on one port: the
    same port (not 0, which asks for any free one) on interfaces that meet,
    as C{tcp:8080} and C{tcp:8080:interface=127.0.0.1} do.
    """
    from ._tap import server_description

    kind, port, interface = _address(description)
    otherKind, otherPort, otherInterface = _address(server_description(other))
    if kind != otherKind or port != otherPort or port == "0":
        return False
    if kind != "tcp":
        return True
    return (
        interface == otherInterface
        or "::" in (interface, otherInterface)
        or interface == "0.0.0.0" and ":" not in otherInterface
        or otherInterface == "0.0.0.0" and ":" not in interface
    )


# Each endpoint type that listens on a TCP port, with its default interface.
_TCP_KINDS = {"tcp": "0.0.0.0", "ssl": "0.0.0.0", "tcp6": "::"}


def _address(description: str) -> tuple:
    """
    C{(kind, port or path, interface)} of a server endpoint description:
    C{kind} is C{"tcp"} for every type that listens on a TCP port; a type
    this does not know is its whole description, which only equals itself.
    """
    kind, *fields = [
        field.replace("\\:", ":") for field in re.split(r"(?<!\\):", description)
    ]
    positional = [field for field in fields if "=" not in field]
    named = dict(field.split("=", 1) for field in fields if "=" in field)
    first = positional[0] if positional else None
    if kind == "unix":
        return kind, named.get("address", first), ""
    if kind not in _TCP_KINDS:
        return description, None, ""
    # Only tcp: takes its interface as a second positional field.
    second = positional[1] if kind == "tcp" and len(positional) > 1 else None
    interface = named.get("interface", second) or _TCP_KINDS[kind]
    return "tcp", named.get("port", first), interface


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
        site = _websocket_site(options, server)
        Listener("websocket-port", websocketPort, site, _reactor()).setServiceParent(
            services
        )
        log.info("WebSocket and /heartbeat.js on {port}", port=websocketPort)
    if statusPort is not None:
        from ._status import StatusService

        status = StatusService(server)
        status.setServiceParent(services)
        Listener("status-port", statusPort, status.site(), _reactor()).setServiceParent(
            services
        )
        log.info("status page, /status.json and /metrics on {port}", port=statusPort)
    return services


def _websocket_site(options: usage.Options, server: HeartbeatServerFactory):
    from ._websocket import (
        BroadcastWebSocketServerProtocol,
        HeartbeatWebSocketServerFactory,
        websocket_site,
    )

    factory = HeartbeatWebSocketServerFactory(server, options["allowed-origins"])
    if options["broadcast"]:
        factory.protocol = BroadcastWebSocketServerProtocol
    return websocket_site(factory)

