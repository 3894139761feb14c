"""Hybrid logical clock: physical milliseconds + counter + node id, encoded as a sortable string.

Design: the clock belongs to the database, not to a process. Its state (the last stamp handed out)
is one row of `hlc_state`, read and advanced inside every write transaction by whatever process
writes (the web server, `flask sync`, a timer, a worker): two processes on one database can never
hand out stamps that go backwards. The math is pure (`next_stamp`, `merged`); `HybridLogicalClock`
binds it to the database through two callables installed by models/base.py.

A node never refuses to start or to write because of its clock: a wall clock that went back is
covered by the counter. A stamp received from elsewhere moves the clock forward only up to
`max_ahead_ms` past this machine's wall clock, so one device with a wrong date cannot drag every
clock in the network into the future; a record written after such a stamp still gets a stamp above
the record's own (`now(after=...)`), which is all per-field last-writer-wins needs.
The fixed-width encoding makes plain string comparison the same as (ms, counter, node) ordering.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Callable

NODE_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
COUNTER_MAX = 999_999


@dataclass(frozen=True, order=True)
class Stamp:
    """One decoded clock stamp; ordering is (ms, counter, node)."""

    ms: int
    counter: int
    node: str

    def encode(self) -> str:
        """Return the fixed-width string form, sortable as text."""
        return f"{self.ms:015d}:{self.counter:06d}:{self.node}"


class ClockDriftError(ValueError):
    """A device clock is too far ahead to be trusted (refused at hello, never at start)."""


# The usual form of a stamp: whatever matches it, `decode` accepts (one regex call instead of a parse).
_PLAIN_STAMP = re.compile(r"[0-9]{15}:[0-9]{6}:[a-z0-9][a-z0-9-]{0,31}")


def check_stamp(stamp: str) -> None:
    """Raise ValueError (decode's message) unless `stamp` is a valid stamp; cheap for the usual form."""
    if stamp.__class__ is str and _PLAIN_STAMP.fullmatch(stamp):
        return
    decode(stamp)  # the unusual forms decode accepts too (and the message when it refuses)


def decode(stamp: str) -> Stamp:
    """Parse a stamp string; raise ValueError when it is malformed."""
    try:
        ms, counter, node = stamp.split(":", 2)
        if len(ms) != 15 or len(counter) != 6 or not NODE_ID_PATTERN.match(node):
            raise ValueError
        return Stamp(int(ms), int(counter), node)
    except (AttributeError, ValueError):
        raise ValueError(f"dấu thời gian không hợp lệ: {stamp!r}") from None


def next_stamp(state: tuple[int, int], wall_ms: int, node: str, after: str = "",
               max_ahead_ms: int | None = None) -> tuple[tuple[int, int], str]:
    """The stamp after `state` (and after the stamp `after`, when given); return (new state, stamp).

    A state further ahead of the wall clock than `max_ahead_ms` (the device clock was fast and has
    been fixed) restarts from the wall clock: stamps then track real time again at once, and `after`
    still keeps every record's own stamps in order.
    """
    ms, counter = state
    if max_ahead_ms is not None and ms - wall_ms > max_ahead_ms:
        ms, counter = wall_ms, 0
    if after:
        floor = decode(after)
        if (floor.ms, floor.counter) > (ms, counter):
            ms, counter = floor.ms, floor.counter
    if wall_ms > ms:
        ms, counter = wall_ms, 0
    else:
        counter += 1
        if counter > COUNTER_MAX:
            # Only after a million stamps within one millisecond of clock time: borrow the next one.
            ms, counter = ms + 1, 0
    return (ms, counter), Stamp(ms, counter, node).encode()


def merged(state: tuple[int, int], remote: str, wall_ms: int, max_ahead_ms: int) -> tuple[int, int]:
    """The state after seeing a remote stamp, never pushed more than `max_ahead_ms` past our wall clock."""
    theirs = decode(remote)
    ceiling = wall_ms + max_ahead_ms
    if theirs.ms > ceiling:
        # Too far ahead to follow: stay put; the record keeps the stamp and later writes to it go
        # above it through `after`, so nothing is lost and no clock is dragged.
        return state
    return max(state, (theirs.ms, theirs.counter))


class HybridLogicalClock:
    """The node's clock; its state lives in the database (see models/base.py `_read_state`)."""

    # How far a received stamp may pull the clock ahead of this machine's wall clock. Minutes, not a
    # day: within it an early stamp can beat a later honest write only for that long.
    max_ahead_ms = 5 * 60 * 1000

    def __init__(self, node_id: str = "central", wall: Callable[[], float] = time.time):
        self.node_id = node_id
        self._wall = wall
        # Installed by models/base.py for the app's clock: read the state (locking it for the
        # transaction) and write it. A clock made on its own keeps its state in memory.
        self._memory = (0, 0)
        self.read_state: Callable[[], tuple[int, int]] = lambda: self._memory
        self.write_state: Callable[[tuple[int, int]], None] = self._remember

    def _remember(self, state: tuple[int, int]) -> None:
        self._memory = state

    def configure(self, node_id: str, max_ahead_ms: int | None = None) -> None:
        """Set the node id used in new stamps (and the accepted window)."""
        if not NODE_ID_PATTERN.match(node_id):
            raise ValueError(f"mã nút không hợp lệ: {node_id!r} (chữ thường, số, gạch nối)")
        self.node_id = node_id
        if max_ahead_ms is not None:
            self.max_ahead_ms = int(max_ahead_ms)

    def wall_ms(self) -> int:
        """This machine's wall clock in milliseconds."""
        return int(self._wall() * 1000)

    def now(self, after: str = "") -> str:
        """A new stamp above every stamp this database handed out or accepted (call inside a write transaction)."""
        state, stamp = next_stamp(self.read_state(), self.wall_ms(), self.node_id, after, self.max_ahead_ms)
        self.write_state(state)
        return stamp

    def observe(self, stamp: str) -> None:
        """Merge a stamp made elsewhere (inside a write transaction); never refuses."""
        before = self.read_state()
        after = merged(before, stamp, self.wall_ms(), self.max_ahead_ms)
        if after != before:
            self.write_state(after)

    def peek(self) -> str:
        """The last stamp handed out, without advancing (for display and hello)."""
        ms, counter = self.read_state()
        return Stamp(ms, counter, self.node_id).encode()

    def ahead_ms(self, stamp: str) -> int:
        """How far a stamp is ahead (positive) or behind this machine's wall clock."""
        return decode(stamp).ms - self.wall_ms()

    skew_ms = ahead_ms


clock = HybridLogicalClock()
