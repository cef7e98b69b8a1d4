"""
A warning that may come thousands of times a second (every cross-node
send while Redis is down) is logged once per window, with a count of the
rest.
"""

from __future__ import annotations

from typing import Optional

from twisted.logger import Logger

WINDOW = 10.0


class ThrottledWarning:
    """
    Logs C{format} (with C{unlogged}, the count since the last line) at
    most once per L{WINDOW} seconds of C{clock}.
    """

    def __init__(self, log: Logger, format: str, clock) -> None:
        self._log = log
        self._format = format
        self._clock = clock
        self._loggedAt: Optional[float] = None
        self._unlogged = 0

    def __call__(self, **fields: object) -> None:
        now = self._clock.seconds()
        if self._loggedAt is not None and now - self._loggedAt < WINDOW:
            self._unlogged += 1
            return
        self._loggedAt = now
        unlogged, self._unlogged = self._unlogged, 0
        self._log.warn(self._format, unlogged=unlogged, **fields)
