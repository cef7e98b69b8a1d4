"""
The servers the library is measured against; they live here, not in the
library, because they exist only to be beaten.

- L{FloorProtocol}: a bare L{LineReceiver} answering C{ping} with C{pong},
  with no timer at all: the cost of Twisted itself.
- L{ResetPerMessageProtocol}: one L{DelayedCall} per connection, moved by
  C{reset()} on every message, as C{TimeoutMixin} does.
- L{SweepProtocol}: a timestamp per message and one L{LoopingCall} per
  factory sweeping every connection each C{sweepPeriod}.
- L{WheelProtocol}: the library's L{HeartbeatProtocol} on the floor's
  framing, so that only the timer design differs from the other two.
"""

from __future__ import annotations

from typing import Optional, Set

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver

from heartbeat import HeartbeatProtocol

log = Logger()


class FloorProtocol(LineReceiver):
    """
    Answers C{ping [token]} with C{pong [token]} and echoes anything else.
    """

    delimiter = b"\n"
    MAX_LENGTH = 65537

    def lineReceived(self, line: bytes) -> None:
        if line[:4] == b"ping":
            self.sendLine(b"pong" + line[4:])
        else:
            self.sendLine(line)

    def sendHeartbeatPing(self, token: bytes) -> None:
        self.sendLine(b"ping " + token)


class ResetPerMessageProtocol(FloorProtocol):
    """
    Design (a): a L{DelayedCall} per connection, C{reset()} per message.

    No timestamp is kept: the call itself is the deadline, so after it
    fires it is re-armed for the next ping or the abort.
    """

    _call: Optional[IDelayedCall] = None
    _silence = 0.0
    _pings = 0

    def connectionMade(self) -> None:
        self._step = self.factory.interval
        self._call = self.factory.clock.callLater(self._step, self._due)

    def dataReceived(self, data: bytes) -> None:
        call = self._call
        if call is not None:
            call.reset(self.factory.interval)
            if self._silence:
                self._silence = 0.0
                self._step = self.factory.interval
        super().dataReceived(data)

    def _due(self) -> None:
        factory = self.factory
        self._silence += self._step
        if self._silence >= factory.timeout - 1e-9:
            self._call = None
            self.transport.abortConnection()
            return
        self._pings += 1
        self.sendHeartbeatPing(b"%d" % (self._pings,))
        self._step = min(factory.interval, factory.timeout - self._silence)
        self._call = factory.clock.callLater(self._step, self._due)

    def connectionLost(self, reason) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


class SweepProtocol(FloorProtocol):
    """
    Design (b): a timestamp per message; the factory's sweep does the rest.
    """

    _lastReceived = 0.0
    _pingedAt = 0.0
    _pings = 0

    def connectionMade(self) -> None:
        self._lastReceived = self.factory.clock.seconds()
        self.factory.connections.add(self)

    def dataReceived(self, data: bytes) -> None:
        self._lastReceived = self.factory.clock.seconds()
        super().dataReceived(data)

    def connectionLost(self, reason) -> None:
        self.factory.connections.discard(self)


class WheelProtocol(HeartbeatProtocol, FloorProtocol):
    """
    Design (c): the library's mixin, deadlines on its shared timing wheel.
    """

    sendHeartbeatPing = FloorProtocol.sendHeartbeatPing

    def heartbeatTimedOut(self, silence: float) -> None:
        # Silent, like the other designs: only the timers are compared.
        pass


class BaselineFactory(Factory):
    """
    Serves one of the protocols above with the same interval and timeout.

    @ivar sweepPeriod: seconds between sweeps, for L{SweepProtocol} only.
    """

    noisy = False
    sweepPeriod = 10.0

    def __init__(
        self,
        protocol: type,
        interval: float = 25.0,
        timeout: float = 55.0,
        clock: Optional[IReactorTime] = None,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.protocol = protocol
        self.interval = interval
        self.timeout = timeout
        self.clock = clock
        self.connections: Set[SweepProtocol] = set()
        self._sweep: Optional[LoopingCall] = None

    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        if isinstance(protocol, HeartbeatProtocol):
            protocol.heartbeatInterval = self.interval
            protocol.heartbeatTimeout = self.timeout
        return protocol

    def startFactory(self) -> None:
        if issubclass(self.protocol, SweepProtocol) and self._sweep is None:
            self._sweep = LoopingCall(self.sweep)
            self._sweep.clock = self.clock
            self._sweep.start(self.sweepPeriod, now=False).addErrback(
                lambda failure: log.failure("sweep stopped", failure)
            )

    def stopFactory(self) -> None:
        if self._sweep is not None and self._sweep.running:
            self._sweep.stop()
        self._sweep = None

    def sweep(self) -> None:
        """
        Ping every connection silent for an interval, abort the dead ones.
        """
        now = self.clock.seconds()
        interval, timeout = self.interval, self.timeout
        for protocol in list(self.connections):
            last = protocol._lastReceived
            if now - last >= timeout:
                protocol.transport.abortConnection()
            elif now - max(last, protocol._pingedAt) >= interval:
                protocol._pingedAt = now
                protocol._pings += 1
                protocol.sendHeartbeatPing(b"%d" % (protocol._pings,))


DESIGNS = {
    "floor": FloorProtocol,
    "reset": ResetPerMessageProtocol,
    "sweep": SweepProtocol,
    "wheel": WheelProtocol,
}
