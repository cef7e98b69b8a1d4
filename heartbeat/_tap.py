"""
C{twistd heartbeat}: the ready line server as a twistd plugin.
"""

from __future__ import annotations

import sys

from twisted.application.service import IService
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python import usage

from ._listener import Listener
from ._options import (
    HeartbeatOptions,
    positive_float,
    positive_int,
    seconds_or_none,
)
from ._server import (
    BroadcastServerProtocol,
    HeartbeatServerFactory,
    HeartbeatServerProtocol,
)
from ._webtap import WebOptions, server_factory_class, with_web_services
from ._workers import WorkerPool

log = Logger()

# Endpoint types whose listening socket a worker can adopt as it is.
_SHAREABLE = ("tcp", "tcp6", "unix")


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
        [
            "tcp-keepalive",
            None,
            "Also turn on kernel TCP keepalive (probes after --interval of "
            "idleness) and, on Linux, TCP_USER_TIMEOUT (--timeout), so "
            "writes to a vanished peer fail in bounded time.",
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
        [
            "min-ping-interval",
            None,
            None,
            "Pings from a peer closer together than this many seconds earn "
            "strikes; more than 2 get 'error too many pings' and a close "
            "(0: any rate). [default: 1, or half of --interval if smaller]",
        ],
        [
            "line-timeout",
            None,
            "30",
            "Close a connection whose line is still unfinished this many "
            "seconds after its first byte (0: no limit but the length).",
        ],
        [
            "max-write-buffer",
            None,
            "1048576",
            "Bytes that may wait unsent to a peer that does not read; past "
            "that it is dropped (0: no cap).",
        ],
        [
            "auth-timeout",
            None,
            "5",
            "Seconds a connection has to send its auth line when "
            "--auth-token-file is given.",
        ],
        [
            "workers",
            None,
            "1",
            "Worker processes sharing the listening socket (tcp, tcp6 or "
            "unix ports), supervised by this one: a dead worker is "
            "restarted.  Each worker has its own connections and "
            "--max-connections; --broadcast reaches only the connections "
            "of the same worker.",
        ],
    ]

    def parseOptions(self, options=None) -> None:
        # Kept so that each worker can parse exactly what twistd was given.
        self.arguments = list(sys.argv[1:] if options is None else options)
        super().parseOptions(options)

    def postOptions(self) -> None:
        super().postOptions()
        self["max-connections"] = positive_int(self, "max-connections")
        self["workers"] = positive_int(self, "workers")
        interval = self["interval"]
        if self["min-ping-interval"] is None:
            self["min-ping-interval"] = min(1.0, interval / 2) if interval else 1.0
        else:
            self["min-ping-interval"] = seconds_or_none(self, "min-ping-interval")
            if interval and (self["min-ping-interval"] or 0) >= interval:
                raise usage.UsageError(
                    "--min-ping-interval must be less than --interval: clients "
                    "pinging at the configured interval would be refused"
                )
        self["line-timeout"] = seconds_or_none(self, "line-timeout")
        self["max-write-buffer"] = (
            None
            if self["max-write-buffer"] == "0"
            else positive_int(self, "max-write-buffer")
        )
        self["auth-timeout"] = positive_float(self, "auth-timeout")
        if self["workers"] > 1:
            for name in ("websocket-port", "status-port"):
                if self[name] is not None:
                    raise usage.UsageError(
                        f"--{name} needs --workers 1: each worker would "
                        "listen on it"
                    )
        self["port"] = description = server_description(self["port"])
        if self["workers"] > 1 and description.split(":")[0] not in _SHAREABLE:
            raise usage.UsageError(
                f"--workers above 1 needs a tcp:, tcp6: or unix: --port, "
                f"not {description!r}"
            )
        from twisted.internet import reactor

        try:
            serverFromString(reactor, description)
        except Exception as e:
            raise usage.UsageError(
                f"--port {description!r} is not a server endpoint: {e}"
            )


def server_factory(options: Options) -> HeartbeatServerFactory:
    """
    The line server's factory the options describe: one per worker.
    """
    factory = server_factory_class(options)(
        heartbeatInterval=options["interval"],
        heartbeatTimeout=options["timeout"],
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


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    log.info(
        "heartbeat server on {port}: interval {interval}, timeout {timeout}, "
        "max {maxConnections} connections, {mode}, {auth}",
        auth="auth required" if options["auth-token"] else "open (no auth)",
        port=options["port"],
        interval=options["interval"],
        timeout=options["timeout"],
        maxConnections=options["max-connections"],
        mode="broadcast" if options["broadcast"] else "echo",
    )
    if options["workers"] > 1:
        return WorkerPool(options["port"], options["workers"], options.arguments)
    factory = server_factory(options)
    service = Listener("port", options["port"], factory, reactor)
    return with_web_services(options, factory, service)
