"""
The write cap: a peer that does not read must not grow the process.

One piece for every framing (line and WebSocket): each asks the cap before
it writes, whatever it writes (messages, pings, control frames).
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.logger import Logger

from .._core.protocol import peer_name


class WriteCap:
    """
    Registered as the transport's streaming producer, it hears when the
    transport's buffer passes its C{bufferSize} and when it has drained:
    the public way to know a peer is not reading.  From that moment it
    counts what the protocol writes; once more than the limit would wait
    unsent, it drops the peer (with one log line) and refuses every later
    write, so the writer and everyone else carry on.

    The protocol is not registered itself: a protocol's own
    C{pauseProducing} means something else (L{LineReceiver}'s pauses
    reading).

    @ivar unsent: bytes written since the transport asked to pause;
        C{None} while it has not (the cheap case, tested first).
    """

    __slots__ = ("_protocol", "unsent", "_dropped")

    log = Logger()

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol
        self.unsent: Optional[int] = None
        self._dropped = False

    @classmethod
    def attach(cls, protocol: Any) -> "WriteCap":
        """
        Watch C{protocol}'s transport, capping it at the protocol's
        C{maxWriteBuffer}.
        """
        cap = cls(protocol)
        transport = protocol.transport
        if getattr(transport, "producer", None) is not None:
            # A connection taken over from twisted.web (a WebSocket upgrade)
            # still has the HTTP channel registered, which will never
            # produce again: the transport takes one producer only.
            transport.unregisterProducer()
        transport.registerProducer(cap, True)
        return cap

    def allow(self, size: int) -> bool:
        """
        Count C{size} bytes the protocol is about to write.

        @return: whether to write them: C{False} once the peer is dropped.
        """
        if self._dropped:
            return False
        unsent = self.unsent
        if unsent is None:
            return True
        # The transport already holds its bufferSize; count what piles up
        # on top of it.
        unsent += size
        self.unsent = unsent
        protocol = self._protocol
        bufferSize = getattr(protocol.transport, "bufferSize", 0)
        if unsent + bufferSize > protocol.maxWriteBuffer:
            self._drop()
            return False
        return True

    def _drop(self) -> None:
        self._dropped = True
        protocol = self._protocol
        self.log.info(
            "dropping {peer}: it reads too slowly, over {limit} bytes wait "
            "to be sent",
            peer=peer_name(protocol),
            limit=protocol.maxWriteBuffer,
        )
        protocol.stopHeartbeat()
        protocol.transport.abortConnection()

    # IPushProducer, as the transport sees it

    def pauseProducing(self) -> None:
        if self.unsent is None:
            self.unsent = 0

    def resumeProducing(self) -> None:
        self.unsent = None

    def stopProducing(self) -> None:
        pass
