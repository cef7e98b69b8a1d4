"""
C{heartbeat-client}: stdin lines to the server, its lines to stdout, with
heartbeats and reconnection in between.
"""

from __future__ import annotations

import getopt
import sys
from functools import partial
from typing import List, Optional

from twisted.internet.defer import Deferred
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
from .._cluster.identity import check_name
from .._core.protocol import peer_name
from .._framing.line import PING, parse_heartbeat
from .options import (
    HeartbeatOptions,
    positive_float,
    positive_int,
    token_from_file,
    version_line,
)

log = Logger()

_ENDPOINT_TYPES = ("tcp", "tcp6", "ssl", "tls", "unix", "systemd")

# Seconds a stopping client waits for its connection to close cleanly.
STOP_GRACE = 1.0

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
        "drops a dead one and reconnects with jittered backoff.  With a "
        "server that offers sessions, every stdin line reaches the server "
        "once and every server line reaches stdout once, in order, across "
        "reconnections; a session the server could not resume is said on "
        "stderr.  Logs go to "
        "stderr.  Exits 1 if the server refuses the client "
        "(error unauthorized).  --auth-token-file is read again for each "
        "connection, and for a fresh token before the server's says it "
        "expires, so a JWT renewed in the file is the one sent.  --interval, --timeout, --pong-timeout "
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
        [
            "max-delay",
            None,
            "30",
            "Longest wait between reconnection attempts, seconds.",
        ],
        [
            "buffer-size",
            None,
            "1000",
            "Lines kept until the server acknowledges them (or, from a server "
            "without sessions, while disconnected); while that many are kept, "
            "reading stdin waits.",
        ],
        [
            "name",
            None,
            None,
            "The name this client gives itself in its handshake, by which "
            "the server's presence knows it: 1 to 256 bytes of UTF-8 text, "
            "in any script, without spaces, control or invisible "
            "characters, or '#'.",
        ],
    ]

    def opt_version(self) -> None:
        """
        Display the heartbeat-client, Twisted and Python versions and exit.
        """
        print(version_line("heartbeat-client"))
        raise SystemExit(0)

    def parseOptions(self, options=None) -> None:
        # Options may come after the endpoint too, as with most commands:
        # sort them out first, then parse them in the order usage expects.
        argv = sys.argv[1:] if options is None else options
        try:
            found, arguments = getopt.gnu_getopt(argv, self.shortOpt, self.longOpt)
        except getopt.error as e:
            raise usage.UsageError(str(e))
        ordered = []
        for option, value in found:
            takesValue = (
                option[2:] + "=" in self.longOpt
                if option.startswith("--")
                else option[1] + ":" in self.shortOpt
            )
            ordered += [option, value] if takesValue else [option]
        super().parseOptions(ordered + ["--"] + arguments)

    def parseArgs(self, *arguments: str) -> None:
        if not arguments:
            raise usage.UsageError(
                "no ENDPOINT: give the server's, such as 127.0.0.1:1234"
            )
        if len(arguments) > 1:
            raise usage.UsageError(
                f"one ENDPOINT expected, not {len(arguments)}: "
                + " ".join(arguments)
            )
        self["endpoint"] = client_description(arguments[0])

    def postOptions(self) -> None:
        super().postOptions()
        self["initial-delay"] = positive_float(self, "initial-delay")
        self["max-delay"] = positive_float(self, "max-delay")
        if self["max-delay"] < self["initial-delay"]:
            raise usage.UsageError("--max-delay must be at least --initial-delay")
        self["buffer-size"] = positive_int(self, "buffer-size")
        if self["name"] is not None:
            try:
                check_name(self["name"])
            except ValueError as e:
                raise usage.UsageError(f"--name: {e}")
        from twisted.internet import reactor

        try:
            clientFromString(reactor, self["endpoint"])
        except Exception as e:
            raise usage.UsageError(
                f"{self['endpoint']!r} is not a client endpoint: {e}"
            )


class _PrintingProtocol(HeartbeatClientProtocol):
    """
    Prints the server's lines, and the round trip of a ping typed on stdin.
    """

    _typedPing: Optional[bytes] = None

    def messageReceived(self, line: bytes) -> None:
        self.factory.stdout.write(line + b"\n")

    def typedPing(self) -> None:
        """
        A ping typed on stdin: sent with our own token, so that its pong
        gives a round trip to show (the pong itself is a heartbeat's).
        """
        self._typedPing = self.heartbeatPing()

    def heartbeatRoundTrip(self, rtt: float) -> None:
        super().heartbeatRoundTrip(rtt)
        if self._typedPing == b"%d" % (self.heartbeatPingsSent,):
            self._typedPing = None
            log.info(
                "pong from {peer}: round trip {rtt:.2f} ms",
                peer=peer_name(self),
                rtt=rtt * 1000,
            )


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
        heartbeat = parse_heartbeat(line)
        if heartbeat is not None and heartbeat[0] == PING:
            self._ping()
            return
        try:
            self.client.sendMessage(line)
        except BufferFull as e:
            # Reading pauses while the buffer is full; lines already read
            # with the one that filled it are the only ones that can land
            # here.
            log.error("line dropped, buffer full: {error}", error=str(e))

    def _ping(self) -> None:
        protocol = self.client.connectedProtocol
        if protocol is None:
            log.warn("not connected: ping not sent")
        else:
            protocol.typedPing()

    def lineLengthExceeded(self, line: bytes) -> None:
        log.error("stdin line longer than --max-line-length dropped")

    def readConnectionLost(self) -> None:
        # Stdin also "ends" when the reactor shuts down (SIGTERM), after the
        # client has stopped: nothing is printed any more then.
        if self.client.continueTrying:
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
    if options["auth-token-file"] is not None:
        # Read again for each connection and each fresh token, so that a
        # token rewritten in the file (a JWT renewed) is the one sent.
        factory.authToken = partial(token_from_file, options["auth-token-file"])
    factory.name = options["name"]
    stdin = _StdinLines(factory)
    StandardIO(stdin, reactor=reactor)
    # Standard input waits while the buffer is full: no line is dropped.
    factory.registerProducer(stdin, True)
    reactor.addSystemEventTrigger("before", "shutdown", _stop, factory, reactor)
    log.info("connecting to {endpoint}", endpoint=options["endpoint"])
    factory.connectEndpoint(
        clientFromString(reactor, options["endpoint"]), options["endpoint"]
    )
    return factory.whenStopped().addErrback(_refused)


def _stop(factory: HeartbeatClientFactory, reactor) -> Deferred:
    """
    Stop the client and give its last lines (its session's C{bye}) a
    moment to leave before the reactor closes every socket.
    """
    factory.stopTrying()
    stopped = factory.whenStopped()
    stopped.addTimeout(STOP_GRACE, reactor)
    return stopped.addErrback(lambda failure: None)


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
