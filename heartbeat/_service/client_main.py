"""
C{heartbeat-client}: stdin lines to the server, its lines to stdout, with
heartbeats and reconnection in between.
"""

from __future__ import annotations

import sys
from typing import List, Optional

from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.protocols.basic import LineReceiver
from twisted.python import usage
from zope.interface import implementer

from .._client.factory import BufferFull, HeartbeatClientFactory, ServerRefused
from .._client.protocol import HeartbeatClientProtocol
from .options import HeartbeatOptions, positive_float, positive_int

log = Logger()

_ENDPOINT_TYPES = ("tcp", "tcp6", "ssl", "tls", "unix", "systemd")

# The options a client otherwise takes from the server's handshake answer,
# and the factory's settings they set.
_SERVER_SETTINGS = (
    ("interval", "heartbeatInterval"),
    ("timeout", "heartbeatTimeout"),
    ("pong-timeout", "heartbeatPongTimeout"),
    ("max-line-length", "maxLineLength"),
)


def client_description(target: str) -> str:
    """
    C{HOST:PORT} means TCP; anything else is a client endpoint description.
    """
    kind, _, rest = target.partition(":")
    if kind not in _ENDPOINT_TYPES and rest.isdigit():
        return f"tcp:{target}"
    return target


class Options(HeartbeatOptions):
    synopsis = "Usage: heartbeat-client [options] ENDPOINT"
    longdesc = (
        "Connect to a heartbeat server (ENDPOINT: HOST:PORT or a client "
        "endpoint description such as tcp:127.0.0.1:1234 or "
        "tls:example.com:1234), send each line read from stdin, and print "
        "each application line received on stdout.  Pings a silent server, "
        "drops a dead one and reconnects with jittered backoff; lines typed "
        "while disconnected are sent after reconnection.  Logs go to "
        "stderr.  Exits 1 if the server refuses the client "
        "(error unauthorized).  --interval, --timeout, --pong-timeout "
        "and --max-line-length follow the server's, as its handshake "
        "answer announces them, unless given here; the defaults shown "
        "apply until it answers."
    )
    optParameters = [
        [
            "initial-delay",
            None,
            "1",
            "Longest wait before the first reconnection attempt, seconds.",
        ],
        ["max-delay", None, "30", "Longest wait between reconnection attempts."],
        [
            "buffer-size",
            None,
            "1000",
            "Lines kept while disconnected; beyond that a line is refused "
            "with a message on stderr.",
        ],
    ]

    def opt_version(self) -> None:
        """
        Display the heartbeat version and exit.
        """
        from .. import __version__

        print(f"heartbeat-client {__version__}")
        raise SystemExit(0)

    def parseArgs(self, endpoint: str) -> None:
        self["endpoint"] = client_description(endpoint)

    def postOptions(self) -> None:
        super().postOptions()
        self["initial-delay"] = positive_float(self, "initial-delay")
        self["max-delay"] = positive_float(self, "max-delay")
        if self["max-delay"] < self["initial-delay"]:
            raise usage.UsageError("--max-delay must be at least --initial-delay")
        self["buffer-size"] = positive_int(self, "buffer-size")
        from twisted.internet import reactor

        try:
            clientFromString(reactor, self["endpoint"])
        except Exception as e:
            raise usage.UsageError(
                f"{self['endpoint']!r} is not a client endpoint: {e}"
            )


class _PrintingProtocol(HeartbeatClientProtocol):
    def messageReceived(self, line: bytes) -> None:
        self.factory.stdout.write(line + b"\n")


@implementer(IHalfCloseableProtocol)
class _StdinLines(LineReceiver):
    """
    Each stdin line goes to the factory; stdout stays open after stdin ends.
    """

    delimiter = b"\n"

    def __init__(self, factory: HeartbeatClientFactory) -> None:
        self.client = factory

    def connectionMade(self) -> None:
        self.client.stdout = self.transport
        self.MAX_LENGTH = self.client.maxLineLength + 1

    def lineReceived(self, line: bytes) -> None:
        if line[-1:] == b"\r":
            line = line[:-1]
        try:
            self.client.sendMessage(line)
        except BufferFull as e:
            log.error("line dropped, buffer full: {error}", error=str(e))

    def lineLengthExceeded(self, line: bytes) -> None:
        log.error("stdin line longer than --max-line-length dropped")

    def readConnectionLost(self) -> None:
        log.info("end of stdin; still printing what the server sends")

    def writeConnectionLost(self) -> None:
        pass


def configure(factory: HeartbeatClientFactory, options: Options) -> None:
    """
    Give the client the timing and line limit its command line gives; those
    left out follow the server's announcement.
    """
    for option, setting in _SERVER_SETTINGS:
        if option in options.given:
            setattr(factory, setting, options[option])


def _run(reactor, options: Options):
    from twisted.internet.stdio import StandardIO

    factory = HeartbeatClientFactory()
    factory.protocol = _PrintingProtocol
    configure(factory, options)
    factory.initialDelay = options["initial-delay"]
    factory.maxDelay = options["max-delay"]
    factory.maxBufferedMessages = options["buffer-size"]
    factory.authToken = options["auth-token"]
    StandardIO(_StdinLines(factory), reactor=reactor)
    reactor.addSystemEventTrigger("before", "shutdown", factory.stopTrying)
    log.info("connecting to {endpoint}", endpoint=options["endpoint"])
    factory.connectEndpoint(
        clientFromString(reactor, options["endpoint"]), options["endpoint"]
    )
    return factory.whenStopped().addErrback(_refused)


def _refused(failure):
    failure.trap(ServerRefused)
    log.error("giving up: the server refused us ({reason})", reason=failure.value)
    raise SystemExit(1)


def main(argv: Optional[List[str]] = None) -> None:
    """
    The console entry point.
    """
    from twisted.internet import task

    options = Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        sys.stderr.write(f"heartbeat-client: {e}\n")
        sys.stderr.write("Try 'heartbeat-client --help'.\n")
        raise SystemExit(2)
    globalLogBeginner.beginLoggingTo(
        [
            FilteringLogObserver(
                textFileLogObserver(sys.stderr),
                [LogLevelFilterPredicate(LogLevel.info)],
            )
        ],
        redirectStandardIO=False,
    )
    task.react(_run, [options])


if __name__ == "__main__":
    main()
