"""
C{twistd heartbeat}'s options: the line server's, the browser and operator
ports beside it, and the workers; validated up front, so that a bad value
is one line naming the option.
"""

from __future__ import annotations

import re
import sys

from twisted.internet.endpoints import serverFromString
from twisted.python import usage

from .._cluster.identity import check_node_id
from .cluster_options import ClusterOptions
from .jwt_options import JwtOptions
from .session_options import SessionOptions
from .options import (
    HeartbeatOptions,
    positive_float,
    positive_int,
    read_token,
    require_extra,
    seconds_or_none,
    server_description,
    version_line,
)

# option, what it needs, the extra that installs it
_NEEDS = {
    "websocket-port": ("autobahn", "websocket"),
    "status-port": ("prometheus_client", "status"),
    "api-port": (None, None),
}
# The ports that must differ, each checked against those before it.
_PORTS = ("port", *_NEEDS)

# The shortest bearer token the push API takes.
MIN_API_TOKEN = 16

# Endpoint types whose listening socket a worker can adopt as it is.
_SHAREABLE = ("tcp", "tcp6", "unix")


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
        for name, (module, extra) in _NEEDS.items():
            if self[name] is None:
                continue
            if module is not None:
                require_extra(name, module, extra)
            self[name] = description = server_description(self[name])
            try:
                serverFromString(_reactor(), description)
            except Exception as e:
                raise usage.UsageError(
                    f"--{name} {description!r} is not a server endpoint: {e}"
                )
            for other in _PORTS[: _PORTS.index(name)]:
                if other != name and self[other] and _same_port(description, self[other]):
                    raise usage.UsageError(f"--{name} must differ from --{other}")
        if self["allowed-origins"] is not None:
            self["allowed-origins"] = _origins(self)


class ApiOptions(usage.Options):
    """
    The push API's port, mixed into the plugin's options before
    L{WebOptions}.  After parsing, C{api-token} holds the bearer token.
    """

    optParameters = [
        [
            "api-port",
            None,
            None,
            "Serve the push API for backends here (send to a name, "
            "broadcast, presence, disconnect; its description at "
            "/openapi.json): a port number or a server endpoint "
            "description. Keep it private, or behind TLS. Needs "
            "--api-token-file.",
        ],
        [
            "api-token-file",
            None,
            None,
            "File holding the API's bearer token (at least 16 characters, "
            "surrounding whitespace stripped): every request must carry "
            "'Authorization: Bearer <token>'.",
        ],
    ]

    def postOptions(self) -> None:
        super().postOptions()
        self["api-token"] = read_token(self, "api-token-file")
        if self["api-port"] is None:
            if self["api-token"] is not None:
                raise usage.UsageError("--api-token-file needs --api-port")
            return
        if self["api-token"] is None:
            raise usage.UsageError(
                "--api-port needs --api-token-file: the API must not be open "
                "to anyone who can reach it"
            )
        if len(self["api-token"]) < MIN_API_TOKEN:
            raise usage.UsageError(
                f"--api-token-file: the token must be at least {MIN_API_TOKEN} "
                "characters (openssl rand -hex 32 makes a good one)"
            )


def _origins(options: usage.Options) -> list:
    if options["websocket-port"] is None:
        raise usage.UsageError("--allowed-origins needs --websocket-port")
    from .._server.websocket import origin_pattern

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


class ServerOptions(
    SessionOptions, ClusterOptions, JwtOptions, ApiOptions, WebOptions, HeartbeatOptions
):
    synopsis = "[options]"
    longdesc = (
        "Serve newline-delimited heartbeat lines: each 'ping [token]' is "
        "answered with 'pong [token]', a connection silent for --interval "
        "seconds is pinged and one silent for --timeout seconds is closed, "
        "as is one that has answered a ping and leaves a later one "
        "unanswered past its pong deadline (--pong-timeout). "
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
        [
            "buffered-writes",
            None,
            "Queue every write to a line connection for the reactor's next "
            "write event, as Twisted does, rather than send it at once when "
            "nothing is waiting (which saves each reply a reactor event and "
            "two system calls).",
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
            "After a burst of 10 pings, a peer may ping once per this many "
            "seconds; one over that budget gets 'error too many pings' and "
            "a close (0: any rate). [default: 1, or half of --interval if "
            "smaller]",
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
            "--max-connections; without --redis, --broadcast reaches only "
            "the connections of the same worker.",
        ],
    ]

    def parseOptions(self, options=None) -> None:
        # Kept so that each worker can parse exactly what twistd was given.
        self.arguments = list(sys.argv[1:] if options is None else options)
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            if self.parent is None:
                raise
            # twistd would print the whole usage, then the error after it on
            # standard output: the usage belongs to --help.
            raise SystemExit(f"heartbeat: {e}")

    def opt_version(self) -> None:
        """
        Display the heartbeat, Twisted and Python versions and exit.
        """
        print(version_line("heartbeat"))
        raise SystemExit(0)

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
        workers = self["workers"]
        if workers > 1 and self["node-id"] is not None:
            try:
                check_node_id(f"{self['node-id']}/{workers}")
            except ValueError as e:
                raise usage.UsageError(
                    f"--node-id: with --workers {workers}, the workers' ids are "
                    f"ID/1 to ID/{workers}: {e}"
                )
        if self["workers"] > 1 and self["redis"] is None:
            for name in ("websocket-port", "status-port", "api-port"):
                if self[name] is not None:
                    raise usage.UsageError(
                        f"--{name} with --workers above 1 needs --redis: the "
                        "workers share their connections through it"
                    )
        self["port"] = description = server_description(self["port"])
        if self["workers"] > 1:
            for name in ("port", "websocket-port"):
                shared = self[name]
                if shared is not None and shared.split(":")[0] not in _SHAREABLE:
                    raise usage.UsageError(
                        f"--workers above 1 needs a tcp:, tcp6: or unix: --{name}, "
                        f"not {shared!r}"
                    )
        try:
            serverFromString(_reactor(), description)
        except Exception as e:
            raise usage.UsageError(
                f"--port {description!r} is not a server endpoint: {e}"
            )
