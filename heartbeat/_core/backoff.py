"""
How long a client waits before its next connection attempt.
"""

from __future__ import annotations

import random as _random
from typing import Callable


def backoff_delay(
    attempt: int,
    initial: float = 1.0,
    factor: float = 2.0,
    maximum: float = 30.0,
    jitter: bool = True,
    random: Callable[[], float] = _random.random,
) -> float:
    """
    Exponential backoff with full jitter.

    The cap for attempt C{n} (counting from 0) is C{initial * factor ** n},
    never above C{maximum}; with jitter the delay is drawn uniformly from
    C{[0, cap]}, so that clients cut off together spread their returns
    instead of arriving at the same instant.  The cap is applied before the
    jitter, so no delay can exceed C{maximum} or fall below zero.

    @param random: returns a float in C{[0, 1]}; a parameter so tests can
        pin both ends.
    """
    try:
        cap = min(maximum, initial * factor**attempt)
    except OverflowError:
        cap = maximum
    return cap * random() if jitter else cap
