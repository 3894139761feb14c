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


def test_the_quick_stamp_check_accepts_and_refuses_exactly_what_decode_does():
    """check_stamp (one regex for the usual form) agrees with decode on stamps mutated at random."""
    import random

    from models.clock import check_stamp

    def accepted(check, stamp):
        try:
            check(stamp)
            return True
        except ValueError:
            return False

    rng = random.Random(7)
    alphabet = "0123456789:abz-_ +\n٣A"
    seen = {True: 0, False: 0}
    for _ in range(20000):
        chars = list("000178000000012:000001:doi-1")
        for _ in range(rng.randint(0, 3)):
            at = rng.randrange(len(chars))
            kind = rng.random()
            if kind < 0.4:
                chars[at] = rng.choice(alphabet)
            elif kind < 0.7:
                chars.insert(at, rng.choice(alphabet))
            else:
                del chars[at]
        stamp = "".join(chars)
        verdict = accepted(decode, stamp)
        assert accepted(check_stamp, stamp) == verdict, stamp
        seen[verdict] += 1
    assert seen[True] > 1000 and seen[False] > 1000  # both kinds were really tried
    for odd in (None, 5, "", "000178000000012:000001:doi-1\n", "+00178000000012:000001:doi-1"):
        assert accepted(check_stamp, odd) == accepted(decode, odd), odd
