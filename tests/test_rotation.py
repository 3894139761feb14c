"""The automatic rotation plan (models/rotation.py): its constraints on the issue's case (8 cells,
5 Standing Committee members, a year) and on random inputs from a seeded generator."""
from __future__ import annotations

import datetime as dt
import random
from collections import Counter

import pytest

from models.rotation import assign_visits, planned_visits, rotation_plan, year_months

CELLS = [f"CB0{i}" for i in range(1, 9)]
MEMBERS = ["hung", "lan", "minh", "phuong", "son"]
DAYS = dict(zip(CELLS, [5, 6, 8, 10, 12, 15, 18, 20]))
OWN = {"hung": "CB01", "lan": "CB02", "minh": "CB05", "phuong": "CB08"}  # "son" has no cell here


def check_constraints(plan, cells, members, frequency, months, own=None, balanced=True):
    """Assert every constraint the issue names; return the per-member counts."""
    done = plan.assignments
    per_cell = Counter(a.cell for a in done) + Counter(v.cell for v in plan.unassigned)
    for cell in cells:
        assert per_cell[cell] == min(frequency, len(months)), f"{cell} not visited at the planned frequency"
        cell_months = [(a.year, a.month) for a in done if a.cell == cell]
        assert len(cell_months) == len(set(cell_months)), f"{cell} visited twice in one month"
    counts = Counter(a.member for a in done)
    if balanced and members:
        values = [counts.get(m, 0) for m in members]
        assert max(values) - min(values) <= 1, f"unfair spread {counts}"
    weeks = Counter((a.member, a.planned_on.isocalendar()[:2]) for a in done)
    assert all(n == 1 for n in weeks.values()), "a member has two visits in one ISO week"
    for a in done:
        assert (a.year, a.month) == (a.planned_on.year, a.planned_on.month)
        assert a.member in members
    return counts


@pytest.mark.parametrize("frequency", [1, 2, 4, 6, 12])
def test_eight_cells_five_members_a_year(frequency):
    """Every cell at the planned frequency, counts within one, one visit a week, no own cell."""
    months = year_months(2026)
    plan = rotation_plan(CELLS, MEMBERS, months, frequency, own_cells=OWN, meeting_days=DAYS)
    assert plan.unassigned == []
    assert len(plan.assignments) == 8 * frequency
    check_constraints(plan, CELLS, MEMBERS, frequency, months, OWN)
    own_visits = [a for a in plan.assignments if OWN.get(a.member) == a.cell]
    assert own_visits == []


def test_visits_are_spread_over_the_year():
    """Quarterly visits fall one per quarter, and the months carry similar loads."""
    plan = rotation_plan(CELLS, MEMBERS, year_months(2026), 4, meeting_days=DAYS)
    for cell in CELLS:
        quarters = sorted((a.month - 1) // 3 for a in plan.assignments if a.cell == cell)
        assert quarters == [0, 1, 2, 3]
    per_month = Counter(a.month for a in plan.assignments)
    assert max(per_month.values()) - min(per_month.values()) <= 1


def test_the_visit_is_on_the_cells_meeting_date():
    """A known meeting date wins over the cell's fixed day."""
    moved = dt.date(2026, 1, 21)
    visits = planned_visits(["CB01"], year_months(2026), 12, meeting_dates={("CB01", 2026, 1): moved},
                            meeting_days={"CB01": 31})
    assert visits[0].planned_on == moved
    assert visits[1].planned_on == dt.date(2026, 2, 28)  # the 31st in February is the month's last day


def test_own_cell_only_when_nothing_else_is_fair():
    """With one member and one cell the member visits their own cell rather than nobody."""
    plan = rotation_plan(["CB01"], ["hung"], year_months(2026), 2, own_cells={"hung": "CB01"})
    assert [a.member for a in plan.assignments] == ["hung", "hung"]


def test_too_many_meetings_in_one_week_are_left_for_a_person():
    """Three cells meeting the same week with two members: one visit is not placed, none doubled."""
    visits = planned_visits(["A", "B", "C"], [(2026, 3)], 1, meeting_days={"A": 2, "B": 3, "C": 4})
    plan = assign_visits(visits, ["x", "y"])
    assert len(plan.assignments) == 2 and len(plan.unassigned) == 1
    assert len({a.member for a in plan.assignments}) == 2


def test_the_plan_is_deterministic():
    """The same inputs give the same plan (it can be regenerated and compared)."""
    one = rotation_plan(CELLS, MEMBERS, year_months(2026), 4, own_cells=OWN, meeting_days=DAYS)
    two = rotation_plan(CELLS, MEMBERS, year_months(2026), 4, own_cells=OWN, meeting_days=DAYS)
    assert one == two


@pytest.mark.parametrize("seed", range(40))
def test_random_inputs_keep_every_constraint(seed):
    """Random cells, members, days, own cells and frequencies (seeded): constraints always hold, and
    nothing is left unplaced when no week has more meetings than there are members."""
    rng = random.Random(seed)
    cells = [f"C{i}" for i in range(rng.randint(1, 14))]
    members = [f"m{i}" for i in range(rng.randint(1, 7))]
    frequency = rng.randint(1, 12)
    year = rng.choice([2024, 2025, 2026])
    months = year_months(year)
    days = {c: rng.randint(1, 31) for c in cells}
    own = {m: rng.choice(cells) for m in members if rng.random() < 0.7}
    plan = rotation_plan(cells, members, months, frequency, own_cells=own, meeting_days=days)
    week_load = Counter(v.planned_on.isocalendar()[:2] for v in plan.assignments + plan.unassigned)
    if max(week_load.values()) <= len(members):
        assert plan.unassigned == []
    check_constraints(plan, cells, members, frequency, months, own, balanced=not plan.unassigned)
    # Own cells avoided where possible: a member visits their own cell only if every other member
    # is busy that week or already carries more visits.
    counts = Counter(a.member for a in plan.assignments)
    busy = {(a.member, a.planned_on.isocalendar()[:2]) for a in plan.assignments}
    for a in plan.assignments:
        if own.get(a.member) == a.cell:
            week = a.planned_on.isocalendar()[:2]
            swappable = [m for m in members if m != a.member and own.get(m) != a.cell
                         and (m, week) not in busy and counts[m] < counts[a.member]]
            assert not swappable, f"{a} could have gone to {swappable}"
