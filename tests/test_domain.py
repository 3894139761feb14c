"""Domain rules as plain functions: the clock, attendance rate and verdict, rule-set choice, sorting."""
import datetime as dt
import json

import pytest

from models import Attendance, Meeting, Member, RuleSet, db
from models.clock import HybridLogicalClock, decode
from models.meetings import attendance_rate, attendance_summary, rate_passes
from models.members import roll_for_cell
from models.rules import rule_set_for


class FakeWall:
    """A wall clock the test moves by hand."""

    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


def test_clock_is_monotonic_when_the_wall_clock_goes_back():
    """Stamps keep increasing if the machine's time jumps back a little; a record's next stamp always does."""
    wall = FakeWall(1_700_000_000.0)
    clock = HybridLogicalClock("doi-1", wall)
    first = clock.now()
    wall.t -= 60
    second = clock.now()
    assert second > first
    assert decode(second).counter == decode(first).counter + 1
    # An hour back (beyond the window): new stamps follow the wall again, but a record edited now
    # still gets a stamp above its own last one.
    wall.t -= 3600
    assert clock.now(after=second) > second


def test_clock_orders_after_an_observed_remote_stamp():
    """After seeing a stamp from a node whose clock runs ahead, local stamps sort after it."""
    local = HybridLogicalClock("doi-1", FakeWall(1_700_000_000.0))
    remote = HybridLogicalClock("central", FakeWall(1_700_000_100.0)).now()
    local.observe(remote)
    assert local.now() > remote


def test_clock_rejects_malformed_stamps():
    """A stamp that is not ms:counter:node is refused with a clear error."""
    with pytest.raises(ValueError, match="không hợp lệ"):
        decode("12:ab:x y")


@pytest.mark.parametrize("present,counted,expected", [(0, 0, None), (7, 8, 87.5), (24, 24, 100.0), (0, 5, 0.0)])
def test_attendance_rate(present, counted, expected):
    """Present over counted, as a percentage; no counted members gives no rate."""
    assert attendance_rate(present, counted) == expected


def _rules(threshold=85, must_exceed=True):
    return RuleSet(code="x", title="x", effective_from=dt.date(2020, 1, 1),
                   params_json=json.dumps({"attendance_threshold_pct": threshold,
                                           "attendance_must_exceed": must_exceed}))


@pytest.mark.parametrize("rate,must_exceed,expected", [
    (85.7, True, True), (85.0, True, False), (85.0, False, True), (84.9, False, False), (None, True, None),
])
def test_rate_verdict_follows_the_rule_set(rate, must_exceed, expected):
    """'Over 85%' (12-HD) or 'at least 85%' is the rule set's choice, not the code's."""
    assert rate_passes(rate, _rules(85, must_exceed)) is expected


def test_rate_verdict_uses_the_rule_sets_threshold():
    """A province that sets 90% judges 88% as a fail."""
    assert rate_passes(88.0, _rules(90)) is False
    assert rate_passes(88.0, None) is None


def test_rule_set_in_force_is_chosen_by_meeting_date(app):
    """12-HD until 27/10/2025, 42-HD from 28/10/2025."""
    with app.app_context(), db.connection_context():
        assert rule_set_for(dt.date(2019, 3, 5)).code == "12-HD/BTCTW"
        assert rule_set_for(dt.date(2025, 10, 27)).code == "12-HD/BTCTW"
        assert rule_set_for(dt.date(2025, 10, 28)).code == "42-HD/BTCTW"
        assert rule_set_for(dt.date(2017, 1, 1)) is None


def test_meeting_keeps_the_rule_set_it_was_held_under(app, org):
    """A 2024 meeting is judged by 12-HD, today's by 42-HD."""
    with app.app_context(), db.connection_context():
        old = Meeting.create(cell=org.cell.id, held_on=dt.date(2024, 3, 5))
        assert old.rule_set.code == "12-HD/BTCTW"
        assert Meeting.get_by_id(org.meeting.id).rule_set.code == "42-HD/BTCTW"


def test_summary_excludes_exempted_and_counts_each_state(app, org):
    """Exempted members are not in the denominator; unmarked ones are reported."""
    with app.app_context(), db.connection_context():
        meeting = Meeting.get_by_id(org.meeting.id)
        states = ["present"] * 5 + ["excused", "unexcused"]
        for member, status in zip(org.members, states):
            Attendance.create(meeting=meeting.id, member=member.id, status=status)
        s = attendance_summary(meeting)
        assert (s.counted, s.present, s.excused, s.unexcused, s.not_counted) == (7, 5, 1, 1, 1)
        assert s.rate_text == "71,4" and s.passes is False
        assert "vắng không lý do" in " ".join(s.notes)


def test_closed_meeting_is_counted_on_its_own_marks(app, org):
    """A member who joins after a meeting closed does not change that meeting's rate."""
    with app.app_context(), db.connection_context():
        meeting = Meeting.get_by_id(org.meeting.id)
        for member in org.members[:7]:
            Attendance.create(meeting=meeting.id, member=member.id, status="present")
        meeting.status = "closed"
        meeting.save()
        Member.create(cell=org.cell.id, full_name="Lý Văn Mới")
        s = attendance_summary(meeting)
        assert (s.present, s.counted, s.rate_pct) == (7, 7, 100.0)


def test_roll_is_sorted_by_given_name_in_vietnamese_order(app, org):
    """Lists sort by the given name, with đ after d as Vietnamese readers expect."""
    with app.app_context(), db.connection_context():
        Member.create(cell=org.cell.id, full_name="Lê Văn Đức")
        Member.create(cell=org.cell.id, full_name="Lê Văn Dũng")
        names = [m.full_name.split()[-1] for m in roll_for_cell(org.cell.id)]
        assert names.index("Dũng") < names.index("Đức") < names.index("Em")
