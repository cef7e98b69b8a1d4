"""
A client's session as its server holds it: one side of the session, and a
member of the cluster in its own right, so that presence and routing
reach it while its client is reconnecting.
"""

from __future__ import annotations

from typing import Any, Optional

from .session import CLOSED, AckScheduler, Session


class ServerSession(Session):
    """
    The server's side of one client's session.

    It is the cluster's member for the client (see
    L{heartbeat._cluster.interface.Member}), in place of each connection
    that carries it: present from its first connection until it ends, and
    handed every line for its client, kept while the client is away.

    @ivar sid: the session's id, 128 random bits.
    @ivar store: the store that holds it, or C{None} once it has ended.
    @ivar heartbeatConnectionId: the number of its first connection on
        this node, by which the cluster knows it.
    @ivar heartbeatName: its client's name, or C{None}.
    @ivar heartbeatVerified: whether a token the server verified gave its
        client that name.
    @ivar heartbeatSince: when its first connection was admitted.
    """

    __slots__ = (
        "sid",
        "store",
        "heartbeatConnectionId",
        "heartbeatName",
        "heartbeatVerified",
        "heartbeatSince",
    )

    def __init__(self, sid: int, store: Any, connection: Any) -> None:
        super().__init__()
        self.sid = sid
        self.store = store
        self.heartbeatConnectionId: int = connection.heartbeatConnectionId
        self.heartbeatName: Optional[str] = connection.heartbeatName
        self.heartbeatVerified: bool = connection.heartbeatVerified
        self.heartbeatSince: float = connection.heartbeatSince

    def __repr__(self) -> str:
        return f"<ServerSession {self.store.describe(self) if self.store else 'ended'}>"

    # Sending, within the store's bounds

    def send(self, payload: bytes, isBinary: Optional[bool] = None) -> None:
        if self.keepWithin(payload, isBinary):
            connection = self.connection
            if connection is not None:
                connection.sessionWrite(payload, isBinary)

    def keepWithin(self, payload: bytes, isBinary: Optional[bool]) -> bool:
        """
        Keep C{payload} as the session's next line, within the store's
        bounds: one line over them ends the session.

        @return: whether it was kept (the session lives).
        """
        store = self.store
        if store is None:
            return False
        self.keep(payload, isBinary)
        if self.unacknowledged > store.maxLines or self._unackedBytes > store.maxBytes:
            store.overflowed(self)
            return False
        return True

    def acks(self) -> AckScheduler:
        return self.store.acks

    # What the cluster needs of a member

    @property
    def heartbeatAdmitted(self) -> bool:
        return self.store is not None

    @property
    def heartbeatPresent(self) -> bool:
        return self.store is not None

    @property
    def heartbeatSmoothedRtt(self) -> Optional[float]:
        connection = self.connection
        return None if connection is None else connection.heartbeatSmoothedRtt

    @property
    def heartbeatFraming(self) -> str:
        connection = self.connection
        return "resuming" if connection is None else connection.heartbeatFraming

    @property
    def transport(self) -> Any:
        # For the operator's view of where the client is connected from.
        connection = self.connection
        return None if connection is None else connection.transport

    def sendMessage(self, line: bytes, isBinary: Optional[bool] = None) -> None:
        self.send(line, isBinary)

    def heartbeatHear(self, line: bytes, isBinary: Optional[bool]) -> None:
        # A session is in presence from its start: nothing to hold.
        self.send(line, isBinary)

    def heartbeatDisconnect(self) -> None:
        """
        End the session, and tell its connection (if it has one) that the
        server disconnected it.
        """
        connection = self.connection
        if self.store is not None:
            self.store.end(self, CLOSED)
        if connection is not None:
            connection.heartbeatDisconnect()
