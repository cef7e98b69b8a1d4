"""
A client's side of its session: its send buffer becomes the lines the
server has not acknowledged, and what a lost session leaves in doubt is
known line by line.
"""

from __future__ import annotations

from typing import Any, List, Optional

from .session import AckScheduler, Kept, Session


class ClientSession(Session):
    """
    The client's side of one session.

    @ivar sid: the session's id, as the server's answer gave it.
    @ivar written: how many of the lines sent have been written to some
        connection: those after it never left the client, so they cannot
        have reached the server.
    """

    __slots__ = ("sid", "written", "_scheduler", "_owner")

    def __init__(self, sid: str, scheduler: AckScheduler, owner: Any) -> None:
        super().__init__()
        self.sid = sid
        self.written = 0
        self._scheduler = scheduler
        # Told when acknowledgements make room (a factory's roomMade()).
        self._owner = owner

    def acks(self) -> AckScheduler:
        return self._scheduler

    def send(self, payload: bytes, isBinary: Optional[bool] = None) -> None:
        super().send(payload, isBinary)
        if self.connection is not None:
            self.written = self.sent

    def replay(self) -> None:
        super().replay()
        if self.connection is not None:
            self.written = self.sent

    def acknowledge(self, count: int) -> None:
        before = self.unacknowledged
        super().acknowledge(count)
        if self.unacknowledged < before:
            self._owner.roomMade()

    def inDoubt(self) -> List[Kept]:
        """
        The lines kept that were written to a connection: the server may or
        may not have received them.
        """
        return self.unacknowledgedLines()[: self.written - self.acknowledged]

    def unwritten(self) -> List[Kept]:
        """
        The lines kept that were never written: the server cannot have
        received them.
        """
        return self.unacknowledgedLines()[self.written - self.acknowledged :]
