"""
Direct writes: a reply goes to the socket at once when nothing is queued.

Twisted's transports buffer every write and send it when the reactor next
finds the socket writable: each reply arms the socket for writing
(C{epoll_ctl}), wakes the reactor once more for the write event, and
disarms it again.  For a server whose every ping is a short reply, that
second event and the two system calls around it are half of the cost of
a ping.  asyncio's and libevent's servers instead try the socket at once
when nothing is waiting to be sent, and queue only what the kernel does
not take; the transports here do the same, as subclasses of Twisted's
own, which keep all of Twisted's buffering, flow control and closing for
everything that does not take the short way.

The short way is taken only when nothing could tell it from Twisted's:
nothing queued, the connection open with no close or half-close pending
and not aborted, no TLS started on the transport itself (C{startTLS}; TLS
by endpoint is a protocol above this transport, and its encrypted bytes
take the short way too), no pull producer waiting for the buffer to drain
(a streaming producer, such as the write cap, is told to pause by the
buffer, which is empty) and a write no larger than Twisted's own
C{SEND_LIMIT}.  What the kernel does not take is queued as Twisted would
queue it; an error other than a full socket is left for Twisted's write
event to find, so that the connection ends as it would have.
"""

from __future__ import annotations

from errno import EAGAIN, ENOBUFS, EWOULDBLOCK
from typing import Any

from twisted.internet import tcp
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from zope.interface import implementer

try:
    from twisted.internet import unix
except ImportError:  # pragma: no cover: a platform without UNIX sockets
    unix = None  # type: ignore[assignment]

# A socket that cannot take more now; anything else is Twisted's to handle.
_FULL = frozenset((EAGAIN, EWOULDBLOCK, ENOBUFS))


class DirectWrites:
    """
    Mixed in before a Twisted stream transport (a L{tcp.Server}): L{write}
    sends at once when nothing is queued.
    """

    def write(self, data: bytes) -> None:
        if (
            type(data) is bytes
            and not self.dataBuffer  # type: ignore[attr-defined]
            and not self._tempDataLen  # type: ignore[attr-defined]
            and self._mayWriteDirectly()
            and len(data) <= self.SEND_LIMIT  # type: ignore[attr-defined]
        ):
            try:
                sent = self.socket.send(data)  # type: ignore[attr-defined]
            except OSError as e:
                if e.errno not in _FULL:
                    # Twisted's write event meets the error again and ends
                    # the connection as it always has.
                    super().write(data)  # type: ignore[misc]
                    return
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        super().write(data)  # type: ignore[misc]

    def _mayWriteDirectly(self) -> bool:
        """
        Whether a write may skip Twisted's buffer now, its buffer being
        empty: the connection is open and staying so, TLS is not started on
        it, and no pull producer waits for the buffer to drain.
        """
        producer = self.producer  # type: ignore[attr-defined]
        return bool(
            self.connected  # type: ignore[attr-defined]
            and not self.disconnecting  # type: ignore[attr-defined]
            and not self._writeDisconnecting  # type: ignore[attr-defined]
            and not self._aborting  # type: ignore[attr-defined]
            and not self.TLS  # type: ignore[attr-defined]
            and (producer is None or self.streamingProducer)  # type: ignore[attr-defined]
        )


class DirectWriteTCPServer(DirectWrites, tcp.Server):
    """
    A TCP server connection whose writes skip the buffer when they can.
    """


_DIRECT = {tcp.Server: DirectWriteTCPServer}

if unix is not None:

    class DirectWriteUNIXServer(DirectWrites, unix.Server):
        """
        A UNIX socket server connection whose writes skip the buffer when
        they can, and never while file descriptors wait to be sent (they
        travel with the buffered bytes).
        """

        def _mayWriteDirectly(self) -> bool:
            return not self._sendmsgQueue and super()._mayWriteDirectly()

    _DIRECT[unix.Server] = DirectWriteUNIXServer


def direct_writes(port: Any) -> Any:
    """
    Make C{port}'s new connections write directly, if it is a TCP or UNIX
    port of Twisted's (through its C{transport} attribute, which Twisted's
    ports read for each connection they accept); leave any other as it is.

    @return: C{port}.
    """
    direct = _DIRECT.get(getattr(port, "transport", None))  # type: ignore[arg-type]
    if direct is not None:
        port.transport = direct
    return port


@implementer(IStreamServerEndpoint)
class DirectWriteEndpoint:
    """
    A server endpoint whose port's connections write directly (see
    L{direct_writes}): C{tcp:}, C{tcp6:}, C{unix:}, and C{ssl:} (whose TLS
    sits above the connection).  Other endpoints listen as they would.
    """

    def __init__(self, endpoint: IStreamServerEndpoint) -> None:
        self._endpoint = endpoint

    def listen(self, factory: Any) -> "Deferred[IListeningPort]":
        return self._endpoint.listen(factory).addCallback(direct_writes)
