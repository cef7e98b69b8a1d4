"""
Token expiry: one timer for every connection's token on a server.

A L{DelayedCall} per connection would cost several hundred bytes each, as
the heartbeat's design notes measured; the expiries sit on a timing wheel
of their own instead (the heartbeat's wheel files each connection for its
next heartbeat event, a slot the connection keeps in itself).  Only a
server that verifies tokens has one, and only its connections pay for an
entry: a server without tokens pays nothing.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from twisted.internet.interfaces import IReactorTime

from .._core.wheel import Slot, TimingWheel

# An expiry that fires this late means the reactor was blocked: a fresh
# token may be sitting unread, so it gets one more look first.
_BLOCKED = 0.05


class TokenExpiries:
    """
    When each connection's token expires, and the one timer that tells
    the connection (C{heartbeatTokenExpired()}) when it does.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._wheel = TimingWheel(clock)
        self._entries: Dict[Any, _Expiry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def expireAt(self, connection: Any, when: Optional[float]) -> None:
        """
        C{connection}'s token now expires at C{when} (the clock's time), or
        never (C{None}); whatever was set for it before is replaced.
        """
        self.forget(connection)
        if when is not None:
            entry = self._entries[connection] = _Expiry(self, connection, when)
            entry.slot = self._wheel.schedule(entry, when)

    def secondsLeft(self, connection: Any) -> Optional[float]:
        """
        Seconds before C{connection}'s token expires, or C{None}: never.
        """
        entry = self._entries.get(connection)
        if entry is None:
            return None
        return max(0.0, entry.when - self._clock.seconds())

    def forget(self, connection: Any) -> None:
        """
        C{connection} is going, or has a token that never expires.
        """
        entry = self._entries.pop(connection, None)
        if entry is not None:
            self._wheel.unschedule(entry, entry.slot)


class _Expiry:
    """
    One connection's place on the wheel.
    """

    __slots__ = ("owner", "connection", "when", "slot", "graced")

    def __init__(self, owner: TokenExpiries, connection: Any, when: float) -> None:
        self.owner = owner
        self.connection = connection
        self.when = when
        self.slot: Optional[Slot] = None
        self.graced = False

    def _heartbeatDue(self, now: float, lateness: float) -> None:
        entries = self.owner._entries
        if entries.get(self.connection) is not self:
            # Replaced or forgotten while its slot was being called.
            return
        wheel = self.owner._wheel
        if lateness > _BLOCKED and not self.graced:
            # Let the reactor read what arrived meanwhile first, a slot later.
            self.graced = True
            self.slot = wheel.schedule(self, now + wheel.resolution)
            return
        del entries[self.connection]
        self.connection.heartbeatTokenExpired()
