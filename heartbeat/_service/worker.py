"""
A worker of C{--workers N}: one node serving the listening socket that its
supervisor passed down, for as long as the supervisor lives.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import List, Optional

from twisted.logger import (
    FileLogObserver,
    Logger,
    LogLevel,
    eventAsText,
    globalLogBeginner,
)

from .._server.transport import direct_writes
from .node import make_cluster, server_factory, websocket_site_for
from .server_options import ServerOptions
from .supervisor import WORKER_FD


class _ParentWatch:
    """
    Reads the worker's stdin, a pipe from the parent: its end means the
    parent is gone, so the worker stops instead of serving on unsupervised.
    """

    def __init__(self, reactor) -> None:
        self._reactor = reactor
        os.set_blocking(0, False)

    def fileno(self) -> int:
        return 0

    def logPrefix(self) -> str:
        return "parent"

    def doRead(self) -> None:
        try:
            data = os.read(0, 4096)
        except BlockingIOError:
            return None
        if not data:
            self.connectionLost(None)

    def connectionLost(self, reason) -> None:
        self._reactor.removeReader(self)
        if self._reactor.running:
            self._reactor.stop()


def _level_and_text(event: dict) -> str:
    """
    Each line of the event prefixed with its level, for the parent to log.
    """
    text = eventAsText(event, includeTimestamp=False, includeSystem=False)
    level = event.get("log_level", LogLevel.info).name
    return "".join(f"{level} {line}\n" for line in text.splitlines())


def _report_every_second(server, reactor) -> None:
    """
    Send the supervisor this worker's report, for the status port it
    serves, as a line C{report JSON} among the log lines.
    """
    from twisted.internet.task import LoopingCall

    from .._status.service import StatusService

    def report() -> None:
        [data] = server.reports(StatusService.maxRows)
        sys.stdout.write("report " + json.dumps(data) + "\n")
        sys.stdout.flush()

    loop = LoopingCall(report)
    loop.clock = reactor
    loop.start(1.0).addErrback(
        lambda failure: Logger().failure("status reports stopped", failure)
    )


def main(argv: Optional[List[str]] = None) -> None:
    """
    A worker: C{python -m heartbeat._service.worker FAMILIES [plugin
    options]}, FAMILIES naming the address family of each socket passed
    down (C{--port}'s, then C{--websocket-port}'s), comma-separated.
    """
    from twisted.internet import reactor

    families, *arguments = sys.argv[1:] if argv is None else argv
    options = ServerOptions()
    options.parseOptions(arguments)
    globalLogBeginner.beginLoggingTo(
        [FileLogObserver(sys.stdout, _level_and_text)], redirectStandardIO=False
    )
    cluster = make_cluster(options)
    server = server_factory(options, cluster)
    factories = [server]
    if options["websocket-port"] is not None:
        factories.append(websocket_site_for(options, server))
    for offset, (family, factory) in enumerate(zip(families.split(","), factories)):
        port = reactor.adoptStreamPort(
            WORKER_FD + offset, getattr(socket, family), factory
        )
        if factory is server and not options["buffered-writes"]:
            direct_writes(port)
        os.close(WORKER_FD + offset)
    reactor.addReader(_ParentWatch(reactor))
    if options["status-port"] is not None:
        _report_every_second(server, reactor)
    cluster.start()
    reactor.addSystemEventTrigger("before", "shutdown", cluster.stop)
    reactor.run()


if __name__ == "__main__":
    main()
