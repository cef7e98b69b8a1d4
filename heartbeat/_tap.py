"""
C{twistd heartbeat}: the ready line server as a twistd plugin.
"""

from __future__ import annotations

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python import usage

from ._options import HeartbeatOptions, positive_int
from ._server import BroadcastServerProtocol, HeartbeatServerProtocol
from ._webtap import WebOptions, server_factory_class, with_web_services

log = Logger()


def server_description(port: str) -> str:
    """
    A bare port number means TCP on all interfaces; anything else is a
    Twisted server endpoint description (C{ssl:…}, C{unix:…}).
    """
    port = port.strip()
    return f"tcp:{port}" if port.isdigit() else port


class Options(WebOptions, HeartbeatOptions):
    synopsis = "[options]"
    longdesc = (
        "Serve newline-delimited heartbeat lines: each 'ping [token]' is "
        "answered with 'pong [token]', a connection silent for --interval "
        "seconds is pinged and one silent for --timeout seconds is closed. "
        "Any other line is echoed back, or with --broadcast relayed to "
        "every other connection."
    )
    optFlags = [
        [
            "broadcast",
            None,
            "Relay each application line to every other connection "
            "instead of echoing it back.",
        ],
    ]
    optParameters = [
        [
            "port",
            "p",
            "tcp:1234",
            "Where to listen: a port number (all interfaces) or a server "
            "endpoint description, e.g. tcp:1234:interface=127.0.0.1, "
            "ssl:1234:privateKey=key.pem:certKey=cert.pem, unix:/run/hb.sock.",
        ],
        [
            "max-connections",
            None,
            "10000",
            "Serve at most this many connections; the next is told "
            "'error server full' and closed.",
        ],
    ]

    def postOptions(self) -> None:
        super().postOptions()
        self["max-connections"] = positive_int(self, "max-connections")
        self["port"] = description = server_description(self["port"])
        from twisted.internet import reactor

        try:
            serverFromString(reactor, description)
        except Exception as e:
            raise usage.UsageError(
                f"--port {description!r} is not a server endpoint: {e}"
            )


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    factory = server_factory_class(options)(
        heartbeatInterval=options["interval"],
        heartbeatTimeout=options["timeout"],
        maxLineLength=options["max-line-length"],
        maxConnections=options["max-connections"],
    )
    factory.protocol = (
        BroadcastServerProtocol if options["broadcast"] else HeartbeatServerProtocol
    )
    log.info(
        "heartbeat server on {port}: interval {interval}, timeout {timeout}, "
        "max {maxConnections} connections, {mode}",
        port=options["port"],
        interval=options["interval"],
        timeout=options["timeout"],
        maxConnections=options["max-connections"],
        mode="broadcast" if options["broadcast"] else "echo",
    )
    service = StreamServerEndpointService(
        serverFromString(reactor, options["port"]), factory
    )
    return with_web_services(options, factory, service)
