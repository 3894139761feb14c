"""The hybrid logical clock's rules, as pure functions (the database-bound clock is tested in test_capture)."""
from models.clock import COUNTER_MAX, Stamp, decode, merged, next_stamp

WALL = 1_800_000_000_000


def test_stamps_increase_even_when_the_wall_clock_goes_back():
    """A wall clock set back is covered by the counter: every stamp is above the last."""
    state, first = next_stamp((0, 0), WALL, "doi-1")
    state, second = next_stamp(state, WALL - 60_000, "doi-1")
    assert second > first and decode(second).ms == WALL


def test_a_new_stamp_is_above_the_records_own_stamp():
    """`after` lifts a stamp above a record stamped far ahead (by a device whose clock was wrong)."""
    ahead = Stamp(WALL + 86_400_000, 3, "doi-2").encode()
    _state, stamp = next_stamp((WALL, 0), WALL, "central", after=ahead, max_ahead_ms=300_000)
    assert stamp > ahead


def test_a_clock_far_ahead_of_the_wall_restarts_from_it():
    """After a fast clock is fixed, new stamps track real time again (the state is not trusted blindly)."""
    _state, stamp = next_stamp((WALL + 3 * 86_400_000, 5), WALL, "doi-1", max_ahead_ms=300_000)
    assert decode(stamp).ms == WALL


def test_a_received_stamp_moves_the_clock_only_inside_the_window():
    """A stamp a minute ahead is followed; one a year ahead is not (it cannot drag every clock)."""
    near = Stamp(WALL + 60_000, 0, "doi-1").encode()
    far = Stamp(WALL + 365 * 86_400_000, 0, "doi-1").encode()
    assert merged((WALL, 0), near, WALL, 300_000) == (WALL + 60_000, 0)
    assert merged((WALL, 0), far, WALL, 300_000) == (WALL, 0)


def test_the_counter_never_overflows_its_width():
    """A million stamps within one millisecond borrow the next millisecond instead of widening."""
    state, stamp = next_stamp((WALL, COUNTER_MAX), WALL, "central")
    assert state == (WALL + 1, 0) and len(stamp) == len(Stamp(WALL, 0, "central").encode())
