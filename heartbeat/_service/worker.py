"""
A worker of C{--workers N}: one node serving the listening socket that its
supervisor passed down, for as long as the supervisor lives.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import List, Optional

from twisted.logger import FileLogObserver, LogLevel, eventAsText, globalLogBeginner

from .node import server_factory
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


def main(argv: Optional[List[str]] = None) -> None:
    """
    A worker: C{python -m heartbeat._service.worker FAMILY [plugin options]}.
    """
    from twisted.internet import reactor

    family, *arguments = sys.argv[1:] if argv is None else argv
    options = ServerOptions()
    options.parseOptions(arguments)
    globalLogBeginner.beginLoggingTo(
        [FileLogObserver(sys.stdout, _level_and_text)], redirectStandardIO=False
    )
    reactor.adoptStreamPort(
        WORKER_FD, getattr(socket, family), server_factory(options)
    )
    os.close(WORKER_FD)
    reactor.addReader(_ParentWatch(reactor))
    reactor.run()


if __name__ == "__main__":
    main()
