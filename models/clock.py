"""Hybrid logical clock: physical milliseconds + counter + node id, encoded as a sortable string.

Every synced write is stamped with `clock.now()`; every stamp received from another node is fed to
`clock.observe()` so that later local stamps sort after it even when the two wall clocks disagree.
The fixed-width encoding makes plain string comparison the same as (ms, counter, node) ordering.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

NODE_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


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
    """A received stamp is too far in the future to be trusted."""


def decode(stamp: str) -> Stamp:
    """Parse a stamp string; raise ValueError when it is malformed."""
    try:
        ms, counter, node = stamp.split(":", 2)
        if len(ms) != 15 or len(counter) != 6 or not NODE_ID_PATTERN.match(node):
            raise ValueError
        return Stamp(int(ms), int(counter), node)
    except (AttributeError, ValueError):
        raise ValueError(f"dấu thời gian không hợp lệ: {stamp!r}") from None


class HybridLogicalClock:
    """A thread-safe HLC for one node (one per process, configured by create_app)."""

    # A stamp further ahead than this is refused rather than dragging every later stamp into the
    # future (a field tablet with its date set a year ahead must not poison the whole network).
    max_drift_ms = 24 * 3600 * 1000

    def __init__(self, node_id: str = "central", wall=time.time):
        self.node_id = node_id
        self._wall = wall
        self._ms = 0
        self._counter = 0
        self._lock = threading.Lock()

    def configure(self, node_id: str) -> None:
        """Set the node id used in new stamps."""
        if not NODE_ID_PATTERN.match(node_id):
            raise ValueError(f"mã nút không hợp lệ: {node_id!r} (chữ thường, số, gạch nối)")
        self.node_id = node_id

    def _physical(self) -> int:
        return int(self._wall() * 1000)

    def now(self) -> str:
        """Return a new stamp, strictly greater than every stamp seen so far."""
        with self._lock:
            pt = self._physical()
            if pt > self._ms:
                self._ms, self._counter = pt, 0
            else:
                self._counter += 1
            return Stamp(self._ms, self._counter, self.node_id).encode()

    def observe(self, stamp: str) -> None:
        """Merge a stamp made elsewhere so that later local stamps sort after it."""
        remote = decode(stamp)
        with self._lock:
            pt = self._physical()
            if remote.ms - pt > self.max_drift_ms:
                raise ClockDriftError(
                    f"dấu thời gian của nút {remote.node} đi trước đồng hồ máy này "
                    f"{(remote.ms - pt) // 60000} phút: hãy chỉnh ngày giờ của thiết bị đó")
            new_ms = max(self._ms, remote.ms, pt)
            if new_ms == self._ms == remote.ms:
                self._counter = max(self._counter, remote.counter) + 1
            elif new_ms == self._ms:
                self._counter += 1
            elif new_ms == remote.ms:
                self._counter = remote.counter + 1
            else:
                self._counter = 0
            self._ms = new_ms

    def skew_ms(self, stamp: str) -> int:
        """How far ahead (positive) or behind a stamp is against this machine's wall clock."""
        return decode(stamp).ms - self._physical()


clock = HybridLogicalClock()
