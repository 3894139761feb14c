"""A member's record over time, year by year, for the profile page.

Design: one row per year with the member's attendance (present, excused, unexcused, rate) from the
roll calls. The row has room for contributions (speeches, self-criticism and criticism…): when the
meetings issue adds a contributions table with `member` and `meeting` columns, `activity_by_year()`
counts them too, and the profile page already shows the column whenever any year has a count.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from peewee import SQL, fn

from .base import SYNCED_MODELS
from .meetings import Attendance, Meeting
from .members import Member


@dataclass
class YearActivity:
    """A member's participation in one year."""

    year: int
    present: int = 0
    excused: int = 0
    unexcused: int = 0
    contributions: dict[str, int] = field(default_factory=dict)

    @property
    def marked(self) -> int:
        """Meetings where the member was on the roll call."""
        return self.present + self.excused + self.unexcused

    @property
    def rate_pct(self) -> float | None:
        """Share of those meetings attended."""
        return 100.0 * self.present / self.marked if self.marked else None

    @property
    def contribution_total(self) -> int:
        """All contributions counted in the year."""
        return sum(self.contributions.values())


def activity_by_year(member: Member) -> list[YearActivity]:
    """The member's attendance (and contributions, once recorded) per year, newest first."""
    years: dict[int, YearActivity] = {}
    # The unit is written into the SQL, not bound: PostgreSQL sees `date_part($1, …)` in SELECT and
    # `date_part($2, …)` in GROUP BY as different expressions and refuses the query.
    year = fn.strftime("%Y", Meeting.held_on) if _is_sqlite() else fn.date_part(SQL("'year'"), Meeting.held_on)
    rows = (Attendance.live()
            .select(year.alias("y"), Attendance.status, fn.COUNT(Attendance.id))
            .join(Meeting, on=(Attendance.meeting == Meeting.id))
            .where((Attendance.member == member.id) & Meeting.deleted_at.is_null())
            .group_by(year, Attendance.status).tuples())
    for y, status, count in rows:
        row = years.setdefault(int(y), YearActivity(int(y)))
        if status in ("present", "excused", "unexcused"):
            setattr(row, status, getattr(row, status) + count)
    contributions = SYNCED_MODELS.get("contribution")
    if contributions is not None and hasattr(contributions, "member") and hasattr(contributions, "meeting"):
        kind = getattr(contributions, "kind", None)
        columns = [year.alias("y")] + ([kind] if kind is not None else []) + [fn.COUNT(contributions.id)]
        query = (contributions.select(*columns)
                 .join(Meeting, on=(contributions.meeting == Meeting.id))
                 .where((contributions.member == member.id) & contributions.deleted_at.is_null())
                 .group_by(year, *([kind] if kind is not None else [])).tuples())
        for values in query:
            y, count = int(values[0]), values[-1]
            label = values[1] if kind is not None else "total"
            years.setdefault(y, YearActivity(y)).contributions[label] = count
    return sorted(years.values(), key=lambda a: a.year, reverse=True)


def _is_sqlite() -> bool:
    from peewee import SqliteDatabase

    from .base import db

    return isinstance(db.obj, SqliteDatabase)
