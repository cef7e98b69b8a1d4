"""
C{--workers N}: N processes, one listening socket, every core busy.

The parent listens once on each port (C{--port}, and C{--websocket-port}
when it is given), through the endpoint, then takes the port out of its
own reactor so that it never accepts; each worker inherits the sockets
and adopts them (C{adoptStreamPort}) into a reactor of its own, and the
kernel hands each new connection to one of them.  The parent only
supervises: it relays the workers' logs, restarts one that dies, and on
C{SIGTERM} stops them all before it exits.

Each worker is a node of the cluster, C{ID/1}, C{ID/2}...: with
C{--redis}, the workers share presence and broadcasts through it; without
it, they share nothing but the sockets, and each has its own
C{--broadcast} audience.  Each has its own C{--max-connections}.
"""

from __future__ import annotations

import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

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
from .listener import cannot_listen, with_backlog

# The first listening socket's descriptor number in every worker; the
# others follow.
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
        listeners: Sequence[Tuple[str, str]],
        workers: int,
        arguments: List[str],
        nodeId: str,
        reactor=None,
    ) -> None:
        """
        @param listeners: C{(option, description)} of each port the
            workers share, C{--port}'s first.
        @param nodeId: the machine's node id; worker N is C{nodeId/N}.
        """
        if reactor is None:
            from twisted.internet import reactor
        self.listeners = list(listeners)
        self.workers = workers
        self.arguments = arguments
        self.nodeId = nodeId
        self._reactor = reactor
        self._ports: List[IListeningPort] = []
        self._running: Dict[int, "_WorkerProtocol"] = {}
        self._restarts: Dict[int, object] = {}
        self._stopped: Optional[Deferred] = None

    def reportReceived(self, worker: int, text: str) -> None:
        """
        Worker C{worker} sent its status report, as JSON text; set by the
        status service that shows them (see L{heartbeat._service.machine}).
        """

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        unused = Factory()
        unused.noisy = False
        for option, description in self.listeners:
            listening: list = []
            serverFromString(self._reactor, with_backlog(description)).listen(
                unused
            ).addBoth(
                listening.append
            )
            if isinstance(listening[0], Failure):
                for port in self._ports:
                    port.stopListening()
                listening[0].trap(CannotListenError)
                raise cannot_listen(option, description, listening[0].value)
            port = listening[0]
            # The parent never accepts: every connection is a worker's.
            self._reactor.removeReader(port)
            self._ports.append(port)

    def startService(self) -> None:
        super().startService()
        addresses = [port.getHost() for port in self._ports]
        self.log.info(
            "{workers} workers serving {addresses}",
            workers=self.workers,
            addresses=", ".join(address_name(address) for address in addresses),
        )
        self._families = ",".join(_FAMILIES[type(address)] for address in addresses)
        for number in range(1, self.workers + 1):
            self._spawn(number)

    def _spawn(self, number: int) -> None:
        self._restarts.pop(number, None)
        worker = _WorkerProtocol(self, number)
        childFDs = {0: "w", 1: "r", 2: "r"}
        for offset, port in enumerate(self._ports):
            childFDs[WORKER_FD + offset] = port.fileno()
        self._reactor.spawnProcess(
            worker,
            sys.executable,
            [sys.executable, "-m", "heartbeat._service.worker", self._families]
            + self.arguments
            + ["--node-id", f"{self.nodeId}/{number}"],
            env=os.environ,
            childFDs=childFDs,
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
        for port in self._ports:
            port.stopListening()
        self._ports = []
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
            if name == "report":
                self.pool.reportReceived(self.number, text)
                continue
            try:
                level = LogLevel.levelWithName(name)
            except Exception:
                level, text = LogLevel.info, f"{name} {text}"
            self.pool.log.emit(level, "worker {worker}: {text}",
                               worker=self.number, text=text)

    def processEnded(self, reason: Failure) -> None:
        self.pool.workerEnded(self, reason)
