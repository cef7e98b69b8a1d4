"""
C{--workers N}: N processes, one listening socket, every core busy.

The parent listens once, through the endpoint, then takes the port out of
its own reactor so that it never accepts; each worker inherits the socket
and adopts it (C{adoptStreamPort}) into a reactor of its own, and the
kernel hands each new connection to one of them.  The parent only
supervises: it relays the workers' logs, restarts one that dies, and on
C{SIGTERM} stops them all before it exits.

Workers share nothing but the socket: each has its own connections, its
own C{--max-connections} and its own C{--broadcast} audience.
"""

from __future__ import annotations

import os
import sys
from typing import Dict, List, Optional

from twisted.application.service import Service
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.logger import (
    Logger,
    LogLevel,
)
from twisted.python.failure import Failure

from .._core.protocol import address_name
from .listener import cannot_listen

# The listening socket's descriptor number in every worker.
WORKER_FD = 3

_FAMILIES = {IPv4Address: "AF_INET", IPv6Address: "AF_INET6", UNIXAddress: "AF_UNIX"}


class WorkerPool(Service):
    """
    Listens once and keeps C{workers} processes serving that socket.

    @ivar restartDelay: seconds before a dead worker is replaced, so that
        one that dies at start cannot spin the parent.
    @ivar stopTimeout: seconds the workers get to close their connections
        after C{SIGTERM} before they are killed.
    """

    log = Logger()
    restartDelay = 1.0
    stopTimeout = 10.0

    def __init__(
        self,
        description: str,
        workers: int,
        arguments: List[str],
        reactor=None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.description = description
        self.endpoint = serverFromString(reactor, description)
        self.workers = workers
        self.arguments = arguments
        self._reactor = reactor
        self._port: Optional[IListeningPort] = None
        self._running: Dict[int, "_WorkerProtocol"] = {}
        self._restarts: Dict[int, object] = {}
        self._stopped: Optional[Deferred] = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        listening: list = []
        unused = Factory()
        unused.noisy = False
        self.endpoint.listen(unused).addBoth(listening.append)
        if isinstance(listening[0], Failure):
            listening[0].trap(CannotListenError)
            raise cannot_listen("port", self.description, listening[0].value)
        self._port = port = listening[0]
        # The parent never accepts: every connection is a worker's.
        self._reactor.removeReader(port)

    def startService(self) -> None:
        super().startService()
        address = self._port.getHost()
        self.log.info(
            "{workers} workers serving {address}",
            workers=self.workers,
            address=address_name(address),
        )
        self._family = _FAMILIES[type(address)]
        for number in range(1, self.workers + 1):
            self._spawn(number)

    def _spawn(self, number: int) -> None:
        self._restarts.pop(number, None)
        worker = _WorkerProtocol(self, number)
        self._reactor.spawnProcess(
            worker,
            sys.executable,
            [sys.executable, "-m", "heartbeat._service.worker", self._family]
            + self.arguments,
            env=os.environ,
            childFDs={0: "w", 1: "r", 2: "r", WORKER_FD: self._port.fileno()},
        )
        self._running[number] = worker

    def workerEnded(self, worker: "_WorkerProtocol", reason: Failure) -> None:
        if self._running.get(worker.number) is worker:
            del self._running[worker.number]
        if self.running:
            self.log.warn(
                "worker {worker} (pid {pid}) died: {reason}; restarting in "
                "{delay}s",
                worker=worker.number,
                pid=worker.pid,
                reason=reason.getErrorMessage(),
                delay=self.restartDelay,
            )
            self._restarts[worker.number] = self._reactor.callLater(
                self.restartDelay, self._spawn, worker.number
            )
        elif not self._running and self._stopped is not None:
            stopped, self._stopped = self._stopped, None
            stopped.callback(None)

    def stopService(self) -> Deferred:
        super().stopService()
        for call in self._restarts.values():
            call.cancel()
        self._restarts.clear()
        if self._port is not None:
            self._port.stopListening()
            self._port = None
        if not self._running:
            return succeed(None)
        self._stopped = Deferred()
        for worker in self._running.values():
            worker.transport.signalProcess("TERM")
        kill = self._reactor.callLater(self.stopTimeout, self._kill)
        return self._stopped.addBoth(lambda result: kill.active() and kill.cancel())

    def _kill(self) -> None:
        for worker in list(self._running.values()):
            self.log.warn("worker {worker} did not stop; killing it",
                          worker=worker.number)
            worker.transport.signalProcess("KILL")


class _WorkerProtocol(ProcessProtocol):
    """
    One worker: relays its log lines, tells the pool when it ends.
    """

    def __init__(self, pool: WorkerPool, number: int) -> None:
        self.pool = pool
        self.number = number
        self.pid: Optional[int] = None
        self._partial: Dict[int, bytes] = {}

    def connectionMade(self) -> None:
        self.pid = self.transport.pid
        self.pool.log.info("worker {worker} started, pid {pid}",
                           worker=self.number, pid=self.pid)

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        *lines, self._partial[childFD] = (
            self._partial.get(childFD, b"") + data
        ).split(b"\n")
        for line in lines:
            name, _, text = line.decode("utf-8", "replace").partition(" ")
            try:
                level = LogLevel.levelWithName(name)
            except Exception:
                level, text = LogLevel.info, f"{name} {text}"
            self.pool.log.emit(level, "worker {worker}: {text}",
                               worker=self.number, text=text)

    def processEnded(self, reason: Failure) -> None:
        self.pool.workerEnded(self, reason)
