"""
One shared timer for every heartbeat deadline on a clock.

A L{DelayedCall} per connection costs several hundred bytes and a
C{reset()} per message; a coarse sweep is cheap but fires up to a whole
period late.  The wheel keeps connections in slots C{resolution} seconds
wide and arms a single L{DelayedCall} for the earliest slot, so a deadline
fires at most one slot late while a connection costs one list entry.

Deadlines are re-armed lazily: receiving data records a timestamp, and a
member whose slot comes due while it has heard from its peer files itself
into a later slot; a member that expects no more data before its slot
comes due files itself again as the data arrives (see
L{heartbeat._core.protocol}), so that its slot never wakes the reactor.

The timer is never moved later, only sooner (C{reset()}), and is left armed
when its slot empties: Twisted's reactor keeps a cancelled or postponed call
in its heap, where it wakes the reactor at its first time all the same, so
a new call would only add work.  It is cancelled once the wheel is empty.
"""

from __future__ import annotations

from heapq import heappop, heappush
from math import ceil
from typing import Dict, Optional, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class WheelMember(Protocol):
    """
    What the wheel calls when a member's slot comes due.
    """

    def _heartbeatDue(self, now: float, lateness: float) -> None:
        """
        @param now: the clock's time when the slot fired.
        @param lateness: how long after the slot's own time it fired: large
            when the reactor was blocked, so events may be sitting unread.
        """


class Slot(list):
    """
    The members filed for one slot, and its number.

    A member keeps this object rather than the number: each number computed
    is an integer object of its own, 32 bytes for every connection, where
    the slot is shared by all of its members.
    """

    __slots__ = ("number",)


# The width of a slot in seconds: the most a deadline fires late when the
# reactor keeps up.
RESOLUTION = 0.005


class TimingWheel:
    """
    Slots of members keyed by slot number, with one timer for the earliest.

    @ivar resolution: L{RESOLUTION}.
    @ivar seconds: the clock's C{seconds}, kept to save a lookup per message.
    """

    resolution = RESOLUTION

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self.seconds = clock.seconds
        # Lists, not sets: with connections spread over an interval most
        # slots hold a few members, where an empty set alone is 216 bytes.
        # A slot holds what was filed within one resolution, a few hundred
        # members at most, so removal by scanning stays cheap.
        self._slots: Dict[int, Slot] = {}
        # Slot numbers in time order; may hold numbers whose slot has since
        # emptied, skipped when they reach the top.
        self._order: list[int] = []
        self._call: Optional[IDelayedCall] = None
        self._armedSlot: Optional[int] = None
        self._firing = False
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def schedule(self, member: WheelMember, when: float) -> Slot:
        """
        File C{member} to be called at C{when} (or at most one slot later).

        @return: the slot, to be given back to L{unschedule}.
        """
        number = ceil(when / self.resolution)
        slot = self._slots.get(number)
        if slot is None:
            slot = self._slots[number] = Slot((member,))
            slot.number = number
            heappush(self._order, number)
            # While firing, the timer is armed once all due members are
            # called, for whichever slot is then the earliest.
            if not self._firing and (
                self._armedSlot is None or number < self._armedSlot
            ):
                self._arm(number)
        else:
            slot.append(member)
        self._count += 1
        return slot

    def unschedule(self, member: WheelMember, slot: Slot) -> None:
        """
        Forget C{member}, filed in C{slot}; does nothing if it is not there.
        """
        number = slot.number
        # A slot that has come due is no longer filed, and is left alone:
        # the wheel may be calling its members right now.
        if self._slots.get(number) is not slot:
            return
        try:
            slot.remove(member)
        except ValueError:
            return
        self._count -= 1
        if not slot:
            # Its number stays in the order, skipped when it comes up, and
            # the timer stays as it is (see the module's docstring).
            del self._slots[number]
            if not self._count and not self._firing:
                self._stop()

    def _arm(self, slot: int) -> None:
        """
        Arm the timer for C{slot}: a new call, or the armed one moved sooner.
        """
        delay = max(0.0, slot * self.resolution - self._clock.seconds())
        self._armedSlot = slot
        if self._call is None:
            self._call = self._clock.callLater(delay, self._fire)
        else:
            self._call.reset(delay)

    def _armNext(self) -> None:
        order = self._order
        while order and order[0] not in self._slots:
            heappop(order)
        if order:
            self._arm(order[0])
        else:
            self._stop()

    def _stop(self) -> None:
        """
        The wheel is empty: no timer, and no place in the registry.
        """
        if self._call is not None:
            self._call.cancel()
            self._call = None
        self._armedSlot = None
        self._order.clear()
        _release(self)

    def _fire(self) -> None:
        self._call = None
        self._armedSlot = None
        now = self._clock.seconds()
        order = self._order
        slots = self._slots
        due = []
        while order and order[0] * self.resolution <= now:
            slot = heappop(order)
            members = slots.pop(slot, None)
            if members:
                self._count -= len(members)
                due.append((slot * self.resolution, members))
        # Members are called after every due slot is unfiled, so one that
        # re-files itself (even into a slot already due) is not lost.
        self._firing = True
        try:
            for slotTime, members in due:
                lateness = now - slotTime
                for member in members:
                    member._heartbeatDue(now, lateness)
        finally:
            self._firing = False
            self._armNext()


_wheels: Dict[IReactorTime, TimingWheel] = {}


def wheel_for(clock: IReactorTime) -> TimingWheel:
    """
    The wheel shared by every connection on C{clock}, made on first use.

    A wheel that empties is forgotten, so an idle clock (a test's
    L{Clock}) is not kept alive by this registry.
    """
    wheel = _wheels.get(clock)
    if wheel is None:
        wheel = _wheels[clock] = TimingWheel(clock)
    return wheel


def _release(wheel: TimingWheel) -> None:
    if _wheels.get(wheel._clock) is wheel:
        del _wheels[wheel._clock]
