"""
The timing wheel on its own: filing, forgetting, firing in order.
"""

from heartbeat._core.wheel import TimingWheel


class Member:
    """
    Records when it is called; files itself again C{again} seconds later.
    """

    def __init__(self, wheel, fired, name, again=None):
        self.wheel, self.fired, self.name, self.again = wheel, fired, name, again

    def _heartbeatDue(self, now, lateness):
        self.fired.append((self.name, round(now, 3)))
        if self.again:
            self.wheel.schedule(self, now + self.again)
            self.again = None


def test_a_member_filed_while_firing_does_not_hide_an_earlier_slot(clock):
    """A connection re-filed far ahead while the wheel fires must not delay
    another connection's deadline that falls in between."""
    wheel, fired = TimingWheel(clock), []
    wheel.schedule(Member(wheel, fired, "a", again=2.0), 1.0)
    wheel.schedule(Member(wheel, fired, "b"), 1.5)
    clock.pump([0.25] * 16)
    assert fired == [("a", 1.0), ("b", 1.5), ("a", 3.0)]
    assert clock.getDelayedCalls() == []


def test_the_wheel_forgets_a_member_once(clock):
    """Unscheduling twice, or from the wrong slot, neither fails nor
    disturbs the other members of the slot."""
    wheel, fired = TimingWheel(clock), []
    a, b = Member(wheel, fired, "a"), Member(wheel, fired, "b")
    slot = wheel.schedule(a, 1.0)
    assert wheel.schedule(b, 1.0) == slot
    wheel.unschedule(a, slot)
    wheel.unschedule(a, slot)
    wheel.unschedule(b, wheel.schedule(Member(wheel, fired, "c"), 2.0))
    clock.advance(1.0)
    assert fired == [("b", 1.0)]
    clock.advance(1.0)
    assert fired == [("b", 1.0), ("c", 2.0)]
    assert clock.getDelayedCalls() == []


def test_one_timer_moved_only_sooner(clock):
    """The wheel holds one timer, moved sooner for an earlier member and
    never later (a postponed or cancelled call still wakes Twisted's
    reactor at its first time): it fires once for a member that left,
    then at the next member's time, and is gone once the wheel is empty."""
    wheel, fired = TimingWheel(clock), []
    wheel.schedule(Member(wheel, fired, "a"), 5.0)
    b = Member(wheel, fired, "b")
    slot = wheel.schedule(b, 3.0)
    [call] = clock.getDelayedCalls()
    assert call.getTime() == 3.0
    wheel.unschedule(b, slot)
    assert clock.getDelayedCalls() == [call]
    clock.advance(3.0)
    assert fired == []
    [call] = clock.getDelayedCalls()
    assert call.getTime() == 5.0
    clock.advance(2.0)
    assert fired == [("a", 5.0)]
    assert clock.getDelayedCalls() == []
    assert len(wheel) == 0
