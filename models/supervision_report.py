"""Supervision figures for the consolidated reports: coverage (planned vs made), visits, annual
inspections, recommendations by their derived state, and the supervisor's score beside the cell's
self score, per year and for chosen cells (None: every cell).

Design: counted straight from the supervision tables with GROUP BY (plan lines, visits, inspections,
score bands), not from the meeting rollup, so nothing is added to `affected_meetings`: they are a few
rows per cell a year and the database counts them. The exception is a recommendation's state, a replay
of its events (`derive_state`) that no SQL sum can do: nationally that is ~30,000 recommendations and
~60,000 events a year, too many to replay on every page, so `ReportRecommendation` keeps each one's
derived state (local, never synced, like the rollup) and `consolidation.refresh()` recomputes the
recommendations its change-log batch touches (`affected_recommendations`). Likewise `ReportVisit`
holds each live visit's year, month, cell, visitor, scores and self band (from its meeting's rollup
row), so coverage's visits made (`coverage(rolled=True)`), visit totals and score bands read a year's
rows by index instead of placing every visit by its meeting; refresh() recomputes the changed visits
and the visits of the meetings a batch touches (`affected_visits`). Every rule is the one
models/supervision.py applies on the supervision pages (`coverage`, `derive_state`, `is_overdue`,
`ScoreGap`); the cell's self score and the bands come from the rollup's row of the visited meeting.
A record belongs to the year (and month) of its meeting; a recommendation to its visit's meeting.
The drill-down lists re-derive each recommendation from its events.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Iterable

from peewee import JOIN, BooleanField, Case, CharField, DateField, FloatField, IntegerField, fn

from .base import BaseModel
from .meetings import Meeting, local_today
from .org import Cell
from .rules import RuleSet, band_for
from .supervision import (
    REC_STATES,
    AnnualInspection,
    Recommendation,
    RecommendationEvent,
    ScoreGap,
    SupervisionAssignment,
    SupervisionVisit,
    coverage,
    derive_state,
    is_overdue,
)
from .users import User

# Drill-down filters of recommendations: a derived state, or these groups of states.
REC_FILTERS = {**REC_STATES, "overdue": "Quá hạn chưa khắc phục", "unverified": "Chưa kiểm chứng (còn mở)",
               "all": "Tất cả kiến nghị"}


def _year_span(years: Iterable[int]):
    """The meeting-date bounds of the years (one range, so an index on held_on serves)."""
    years = list(years)
    return dt.date(min(years), 1, 1), dt.date(max(years), 12, 31)


def _visit_query(years: Iterable[int], cell_ids: list[str] | None, months: list[int] | None = None):
    """Live visits of live meetings held in the years (and months), of the cells."""
    years = sorted(set(years))
    first, last = _year_span(years)
    query = (SupervisionVisit.select().join(Meeting)
             .where(SupervisionVisit.deleted_at.is_null() & Meeting.deleted_at.is_null()
                    & (Meeting.held_on >= first) & (Meeting.held_on <= last)))
    if cell_ids is not None:
        query = query.where(Meeting.cell.in_(cell_ids) if cell_ids else (Meeting.cell == ""))
    return query, set(years), months


@dataclass
class VisitFact:
    """One visit as the reports count it."""

    id: str
    meeting_id: str
    cell_id: str
    held_on: dt.date
    supervisor_id: str
    score: float | None
    confirmed: bool


def visit_facts(years: Iterable[int], cell_ids: list[str] | None = None,
                months: list[int] | None = None) -> list[VisitFact]:
    """The visits of the years (by meeting date), one query."""
    query, wanted, months = _visit_query(years, cell_ids, months)
    rows = query.select(SupervisionVisit.id, SupervisionVisit.meeting, Meeting.cell, Meeting.held_on,
                        SupervisionVisit.supervisor, SupervisionVisit.score, SupervisionVisit.confirmed_at) \
        .order_by(Meeting.held_on, SupervisionVisit.id).tuples()
    return [VisitFact(v, m, c, d, s, score, confirmed is not None) for v, m, c, d, s, score, confirmed in rows
            if d.year in wanted and (months is None or d.month in months)]


@dataclass
class VisitTotals:
    """A period's visits counted by the database: records, signed records, cells visited."""

    made: int = 0
    confirmed: int = 0
    cells: int = 0


def _rolled_visits(year: int, cell_ids: list[str] | None, months: list[int] | None):
    """Live visits joined to their meeting's rollup row of the year (and months, and cells).

    The rollup has a row for every live meeting, with its year, month and cell, indexed by year: far
    cheaper than scanning every meeting by date nationally. The report pages refresh it first."""
    R = _report_meeting()
    query = (SupervisionVisit.select().join(R, on=(R.meeting_id == SupervisionVisit.meeting))
             .where(SupervisionVisit.deleted_at.is_null() & (R.year == year)))
    if months:
        query = query.where(R.month.in_(months))
    if cell_ids is not None:
        query = query.where(R.cell_id.in_(cell_ids) if cell_ids else (R.cell_id == ""))
    return query, R


def visit_totals(year: int, cell_ids: list[str] | None = None, months: list[int] | None = None,
                 rolled: bool = True) -> VisitTotals:
    """The visits of a year (or of some of its months), counted in one query.

    From the visit rollup (`ReportVisit`, refreshed first by the report pages); rolled=False counts
    the same from the visits joined to the meeting rollup (the tests compare the two)."""
    if rolled:
        V = ReportVisit
        query = _visit_rows(year, cell_ids, months)
        row = query.select(fn.COUNT(V.visit_id), fn.SUM(Case(None, [(V.confirmed == True, 1)], 0)),  # noqa: E712
                           fn.COUNT(V.cell_id.distinct())).tuples().first()
        return VisitTotals(*(int(v or 0) for v in row)) if row else VisitTotals()
    query, R = _rolled_visits(year, cell_ids, months)
    row = (query.select(fn.COUNT(SupervisionVisit.id), fn.COUNT(SupervisionVisit.confirmed_at),
                        fn.COUNT(R.cell_id.distinct())).tuples().first())
    return VisitTotals(*(int(v or 0) for v in row)) if row else VisitTotals()


# -- the visit rollup ------------------------------------------------------------------------------

class ReportVisit(BaseModel):
    """A live visit of a live meeting with what the reports count and group by (local derived data).

    Year, month and cell are the visited meeting's (from its report_meeting row), so are the rule set
    and the cell's self score and band; the supervisor's score and whether the record is signed are
    the visit's own. Filled set-based by `rebuild_visits()` after the meeting rollup, and kept by
    `consolidation.refresh()`: a batch's changed visits and the visits of the meetings it touches
    (their own answer sets and answers included) are recomputed by `recompute_visits()`."""

    visit_id = CharField(primary_key=True, max_length=36)
    meeting_id = CharField(max_length=36)
    cell_id = CharField(max_length=36)
    year = IntegerField()
    month = IntegerField()
    supervisor_id = CharField(max_length=36)
    score = FloatField(null=True)
    confirmed = BooleanField(default=False)
    rule_set_id = CharField(max_length=36, null=True)
    self_pct = FloatField(null=True)
    self_band = CharField(max_length=20, null=True)

    class Meta:
        table_name = "report_visit"
        indexes = ((("year", "cell_id"), False), (("meeting_id",), False))


_VISIT_FIELDS = ["visit_id", "meeting_id", "cell_id", "year", "month", "supervisor_id", "score", "confirmed",
                 "rule_set_id", "self_pct", "self_band"]


def _visit_source(visit_ids: list[str] | None):
    """The rollup rows of the live visits (of these ids; all with None), one INSERT … SELECT source."""
    R, V = _report_meeting(), SupervisionVisit
    query = (V.select(V.id, V.meeting, R.cell_id, R.year, R.month, V.supervisor, V.score,
                      Case(None, [(V.confirmed_at.is_null(False), True)], False), R.rule_set_id, R.self_pct,
                      R.self_band)
             .join(R, on=(R.meeting_id == V.meeting)).where(V.deleted_at.is_null()))
    if visit_ids is not None:
        query = query.where(V.id.in_(visit_ids))
    return query


def rebuild_visits() -> None:
    """Refill the visit rollup from the visits and the meeting rollup (inside the caller's transaction)."""
    ReportVisit.delete().execute()
    ReportVisit.insert_from(_visit_source(None), [ReportVisit._meta.fields[n] for n in _VISIT_FIELDS]).execute()


def affected_visits(changes: Iterable[tuple[str, str]], meeting_ids: Iterable[str]) -> set[str]:
    """The visits a batch of (table, record id) changes touches: changed visits, the visits of the
    meetings the batch touches (their answer sets and answers included), visits whose sheet changed."""
    by_table: dict[str, list[str]] = defaultdict(list)
    for table, record_id in changes:
        by_table[table].append(record_id)
    visits = set(by_table.get("supervision_visit", ()))
    V = SupervisionVisit
    sheets = sorted(set(by_table.get("answer_set", ())))
    for column, ids in ((V.meeting, sorted(set(meeting_ids))), (V.answer_set, sheets)):
        for start in range(0, len(ids), 500):
            visits |= {v for (v,) in V.select(V.id).where(column.in_(ids[start:start + 500])).tuples()}
    return visits


def recompute_visits(visit_ids: Iterable[str]) -> None:
    """Recompute these visits' rollup rows (after the meeting rollup; inside the caller's transaction)."""
    ids = sorted(set(visit_ids))
    fields = [ReportVisit._meta.fields[n] for n in _VISIT_FIELDS]
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        ReportVisit.delete().where(ReportVisit.visit_id.in_(chunk)).execute()
        ReportVisit.insert_from(_visit_source(chunk), fields).execute()


def _visit_rows(year: int, cell_ids: list[str] | None, months: list[int] | None):
    """The visit rollup's rows of a year (and months, and cells)."""
    V = ReportVisit
    query = V.select().where(V.year == year)
    if months:
        query = query.where(V.month.in_(months))
    if cell_ids is not None:
        query = query.where(V.cell_id.in_(cell_ids) if cell_ids else (V.cell_id == ""))
    return query


@dataclass
class RecFact:
    """One recommendation with its derived state."""

    id: str
    visit_id: str
    meeting_id: str
    cell_id: str
    held_on: dt.date
    deadline: dt.date
    text: str
    state: str
    overdue: bool


def rec_facts(years: Iterable[int], cell_ids: list[str] | None = None, months: list[int] | None = None,
              today: dt.date | None = None, text: bool = False) -> list[RecFact]:
    """The recommendations made at the years' visits, each state derived from its events.

    One query over the events joined to their recommendation, visit and meeting (every recommendation
    has its opening event); the text only when asked (the drill-down), the rows being many nationally."""
    today = today or local_today()
    query, wanted, months = _visit_query(years, cell_ids, months)
    E = RecommendationEvent
    columns = [Recommendation.id, Recommendation.visit, SupervisionVisit.meeting, Meeting.cell, Meeting.held_on,
               Recommendation.deadline, E.hlc, E.id, E.state, E.side] + ([Recommendation.text] if text else [])
    rows = (query.switch(SupervisionVisit).join(Recommendation, on=(Recommendation.visit == SupervisionVisit.id))
            .join(E, on=(E.recommendation == Recommendation.id))
            .where(Recommendation.deleted_at.is_null() & E.deleted_at.is_null())
            .select(*columns).tuples())
    recs: dict[str, tuple] = {}
    events: dict[str, list[tuple]] = defaultdict(list)
    for row in rows:
        if row[4].year not in wanted or (months is not None and row[4].month not in months):
            continue
        recs.setdefault(row[0], row)
        events[row[0]].append(row[6:10])
    out = []
    for rec_id, row in recs.items():
        state = derive_state(events[rec_id])
        # is_overdue reads only the deadline: a light stand-in, not a model instance per row.
        out.append(RecFact(rec_id, row[1], row[2], row[3], row[4], row[5], row[10] if text else "", state,
                           is_overdue(SimpleNamespace(deadline=row[5]), state, today)))
    out.sort(key=lambda r: (r.deadline, r.id))
    return out


class ReportRecommendation(BaseModel):
    """A recommendation's derived state with what the reports group by (local derived data)."""

    rec_id = CharField(primary_key=True, max_length=36)
    cell_id = CharField(max_length=36)
    year = IntegerField()
    month = IntegerField()
    deadline = DateField()
    state = CharField(max_length=20)

    class Meta:
        table_name = "report_recommendation"
        indexes = ((("year", "cell_id"), False),)


def _derived_rows(rec_ids: list[str] | None) -> list[dict]:
    """Each live recommendation's cache row (of these ids; all with None), replaying its events."""
    E = RecommendationEvent
    query = (E.select(Recommendation.id, Meeting.cell, Meeting.held_on, Recommendation.deadline,
                      E.hlc, E.id, E.state, E.side)
             .join(Recommendation, on=(E.recommendation == Recommendation.id))
             .join(SupervisionVisit, on=(Recommendation.visit == SupervisionVisit.id))
             .join(Meeting, on=(SupervisionVisit.meeting == Meeting.id))
             .where(E.deleted_at.is_null() & Recommendation.deleted_at.is_null()
                    & SupervisionVisit.deleted_at.is_null() & Meeting.deleted_at.is_null()))
    if rec_ids is not None:
        query = query.where(Recommendation.id.in_(rec_ids))
    heads: dict[str, tuple] = {}
    events: dict[str, list[tuple]] = defaultdict(list)
    for row in query.tuples():
        heads.setdefault(row[0], row)
        events[row[0]].append(row[4:8])
    return [{"rec_id": r, "cell_id": c, "year": d.year, "month": d.month, "deadline": deadline,
             "state": derive_state(events[r])} for r, (_r, c, d, deadline, *_e) in heads.items()]


def rebuild_recommendations() -> None:
    """Refill the recommendation cache from the records (inside the caller's transaction)."""
    ReportRecommendation.delete().execute()
    rows = _derived_rows(None)
    for start in range(0, len(rows), 1000):
        ReportRecommendation.insert_many(rows[start:start + 1000]).execute()


def affected_recommendations(changes: Iterable[tuple[str, str]]) -> set[str]:
    """The recommendations a batch of (table, record id) changes touches (their events, visit, meeting)."""
    by_table: dict[str, list[str]] = defaultdict(list)
    for table, record_id in changes:
        by_table[table].append(record_id)
    recs = set(by_table.get("supervision_recommendation", ()))
    lookups = (("recommendation_event", RecommendationEvent.select(RecommendationEvent.recommendation),
                RecommendationEvent.id),
               ("supervision_visit", Recommendation.select(Recommendation.id), Recommendation.visit),
               ("meeting", Recommendation.select(Recommendation.id).join(SupervisionVisit), SupervisionVisit.meeting))
    for table, query, column in lookups:
        ids = sorted(set(by_table.get(table, ())))
        for start in range(0, len(ids), 500):
            recs |= {r for (r,) in query.where(column.in_(ids[start:start + 500])).tuples()}
    return recs


def recompute_recommendations(rec_ids: Iterable[str]) -> None:
    """Recompute these recommendations' cache rows (inside the caller's transaction)."""
    ids = sorted(set(rec_ids))
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        ReportRecommendation.delete().where(ReportRecommendation.rec_id.in_(chunk)).execute()
        rows = _derived_rows(chunk)
        if rows:
            ReportRecommendation.insert_many(rows).execute()


@dataclass
class RecCounts:
    """Recommendations of a period by derived state, and how many are overdue."""

    by_state: dict[str, int]
    overdue: int

    @property
    def total(self) -> int:
        """Every recommendation counted."""
        return sum(self.by_state.values())

    def count(self, which: str) -> int:
        """The number under a drill-down filter of REC_FILTERS."""
        if which == "all":
            return self.total
        if which == "overdue":
            return self.overdue
        if which == "unverified":
            return self.total - self.by_state.get("verified", 0)
        return self.by_state.get(which, 0)


def rec_counts(years: Iterable[int], cell_ids: list[str] | None = None, months: list[int] | None = None,
               today: dt.date | None = None) -> dict[int, RecCounts]:
    """Per year, the cached states counted by the database; overdue judged once per (state, deadline)."""
    today = today or local_today()
    years = sorted(set(years))
    R = ReportRecommendation
    query = (R.select(R.year, R.state, R.deadline, fn.COUNT(R.rec_id)).where(R.year.in_(years))
             .group_by(R.year, R.state, R.deadline))
    if cell_ids is not None:
        query = query.where(R.cell_id.in_(cell_ids) if cell_ids else (R.cell_id == ""))
    if months:
        query = query.where(R.month.in_(months))
    out = {y: RecCounts(defaultdict(int), 0) for y in years}
    for year, state, deadline, n in query.tuples():
        out[year].by_state[state] += n
        out[year].overdue += n if is_overdue(SimpleNamespace(deadline=deadline), state, today) else 0
    return out


def rec_matches(fact: RecFact, which: str) -> bool:
    """Whether a recommendation falls under a drill-down filter of REC_FILTERS."""
    if which == "all":
        return True
    if which == "overdue":
        return fact.overdue
    if which == "unverified":
        return fact.state != "verified"
    return fact.state == which


def inspections_of(years: Iterable[int], cell_ids: list[str] | None = None) -> list[AnnualInspection]:
    """The years' live inspections of the cells, by year then cell code."""
    query = (AnnualInspection.select(AnnualInspection, Cell).join(Cell)
             .where(AnnualInspection.deleted_at.is_null() & AnnualInspection.year.in_(sorted(set(years)))))
    if cell_ids is not None:
        query = query.where(AnnualInspection.cell.in_(cell_ids) if cell_ids else (AnnualInspection.cell == ""))
    return list(query.order_by(AnnualInspection.year, Cell.code))


def plan_lines(year: int, cell_ids: list[str] | None = None, months: list[int] | None = None,
               supervisor_id: str | None = None) -> list[SupervisionAssignment]:
    """The year's live plan lines of the cells (and months, and one visitor), by month then cell code."""
    query = (SupervisionAssignment.select(SupervisionAssignment, Cell).join(Cell)
             .where(SupervisionAssignment.deleted_at.is_null() & (SupervisionAssignment.year == year)))
    if cell_ids is not None:
        query = query.where(SupervisionAssignment.cell.in_(cell_ids) if cell_ids else (SupervisionAssignment.cell == ""))
    if months is not None:
        query = query.where(SupervisionAssignment.month.in_(months))
    if supervisor_id:
        query = query.where(SupervisionAssignment.supervisor == supervisor_id)
    return list(query.order_by(SupervisionAssignment.month, Cell.code))


# -- the supervisor's score beside the cell's ------------------------------------------------------

@dataclass
class ScoreFact:
    """A scored visit: the two scores, their bands by the meeting's rule set, and the gap."""

    visit: VisitFact
    gap: ScoreGap
    self_band: str | None
    sup_band: str | None


def score_facts(year: int, cell_ids: list[str] | None = None, months: list[int] | None = None) -> list[ScoreFact]:
    """Visits with a supervisor's score, beside the meeting's self score from the rollup (one query)."""
    R = _report_meeting()
    query, wanted, months = _visit_query([year], cell_ids, months)
    rows = (query.join(R, JOIN.LEFT_OUTER, on=(R.meeting_id == Meeting.id))
            .where(SupervisionVisit.score.is_null(False))
            .select(SupervisionVisit.id, SupervisionVisit.meeting, Meeting.cell, Meeting.held_on,
                    SupervisionVisit.supervisor, SupervisionVisit.score, SupervisionVisit.confirmed_at,
                    R.self_pct, R.self_band, R.rule_set_id)
            .order_by(Meeting.held_on, SupervisionVisit.id).tuples())
    bands = _score_bands()
    out = []
    for v, m, c, d, s, score, confirmed, pct, band, rule_set_id in rows:
        if d.year not in wanted or (months is not None and d.month not in months):
            continue
        sup = band_for(score, bands.get(rule_set_id, []))
        out.append(ScoreFact(VisitFact(v, m, c, d, s, score, confirmed is not None),
                             ScoreGap(score, round(pct, 1) if pct is not None else None), band,
                             sup["code"] if sup else None))
    return out


def _report_meeting():
    """The rollup's meeting table (imported late: consolidation imports the pack panels from here)."""
    from .consolidation import ReportMeeting

    return ReportMeeting


def _score_bands() -> dict:
    """Rule set id -> its score bands."""
    return {r.id: r.params.get("score_bands") or [] for r in RuleSet.select()}


def score_counts(year: int, cell_ids: list[str] | None = None, months: list[int] | None = None,
                 rolled: bool = True) -> dict[str, int]:
    """The dashboard's counts of scored visits: 'self:sup' band pairs, 'gap' and 'all'.

    The database groups visits by (rule set, self band, self score, supervisor's score): a national
    year has tens of thousands of visits but few distinct groups; each group is judged once by the
    same band_for and ScoreGap as a single visit."""
    if rolled:  # the visit rollup (refreshed first by the report pages)
        V = ReportVisit
        groups = (_visit_rows(year, cell_ids, months).where(V.score.is_null(False))
                  .select(V.rule_set_id, V.self_band, V.self_pct, V.score, fn.COUNT(V.visit_id))
                  .group_by(V.rule_set_id, V.self_band, V.self_pct, V.score).tuples())
    else:  # the visits joined to the meeting rollup (the tests compare the two)
        query, R = _rolled_visits(year, cell_ids, months)
        groups = (query.where(SupervisionVisit.score.is_null(False))
                  .select(R.rule_set_id, R.self_band, R.self_pct, SupervisionVisit.score, fn.COUNT(SupervisionVisit.id))
                  .group_by(R.rule_set_id, R.self_band, R.self_pct, SupervisionVisit.score).tuples())
    bands = _score_bands()
    counts: dict[str, int] = defaultdict(int)
    sup_bands: dict[tuple, str] = {}  # (rule set, supervisor's score) -> band code, judged once
    # Plain cursor rows: nationally ~10,000 groups a year (the self score is rarely shared).
    for rule_set_id, band, pct, score, n in groups.model._meta.database.execute(groups).fetchall():
        key = (rule_set_id, score)
        if key not in sup_bands:
            sup = band_for(score, bands.get(rule_set_id, []))
            sup_bands[key] = sup["code"] if sup else ""
        counts[f"{band or ''}:{sup_bands[key]}"] += n
        counts["gap"] += n if ScoreGap(score, round(pct, 1) if pct is not None else None).highlighted else 0
        counts["all"] += n
    return counts


def score_matches(fact: ScoreFact, which: str) -> bool:
    """Drill-down of scored visits: 'all', 'gap' (highlighted), or 'self_band:sup_band' (a band pair)."""
    if which == "all":
        return True
    if which == "gap":
        return fact.gap.highlighted
    self_band, _, sup_band = which.partition(":")
    return (fact.self_band or "") == self_band and (fact.sup_band or "") == sup_band


# -- per year: what the five-year pack and year on year show ----------------------------------------

@dataclass
class SupervisionYear:
    """One year's supervision figures."""

    planned: int = 0
    made: int = 0
    confirmed: int = 0
    cells_visited: int = 0
    inspections_planned: int = 0
    inspections_done: int = 0
    recs: int = 0
    recs_verified: int = 0
    recs_done: int = 0
    recs_open: int = 0
    recs_overdue: int = 0


def supervision_years(years: list[int], cell_ids: list[str] | None = None, today: dt.date | None = None,
                      planned: bool = True) -> dict[int, SupervisionYear]:
    """Each year's figures (planned from the plan, made from the visits, states as of today).

    Recommendations come from the cache: call consolidation.refresh() first, as the report pages do."""
    out = {y: SupervisionYear() for y in years}
    for y in years if planned else ():  # year on year shows no plan figures
        by_cell, _people = coverage(y, cell_ids, rolled=True)
        out[y].planned = sum(r.planned for r in by_cell)
    for y in years:
        t = visit_totals(y, cell_ids)
        out[y].made, out[y].confirmed, out[y].cells_visited = t.made, t.confirmed, t.cells
    for i in inspections_of(years, cell_ids):
        out[i.year].inspections_planned += 1
        out[i.year].inspections_done += i.status == "done"
    for y, counts in rec_counts(years, cell_ids, today=today).items():
        row = out[y]
        row.recs, row.recs_verified, row.recs_done = counts.total, counts.count("verified"), counts.count("done")
        row.recs_open, row.recs_overdue = counts.count("open") + counts.count("in_progress"), counts.overdue
    return out


VISIT_COLUMNS = ["Năm", "Lượt giám sát theo kế hoạch", "Lượt đã giám sát", "Biên bản đã ký", "Chi bộ được giám sát",
                 "Chi bộ được chọn kiểm tra", "Cuộc kiểm tra đã hoàn thành"]
REC_COLUMNS = ["Năm", "Kiến nghị đưa ra", "Đã kiểm chứng (khép lại)", "Chi bộ báo đã xong, chờ kiểm chứng",
               "Chưa thực hiện hoặc đang thực hiện", "Trong đó quá hạn"]


def visit_year_rows(per_year: dict[int, SupervisionYear], years: list[int]) -> list[list]:
    """Visits and inspections per year (rows under VISIT_COLUMNS)."""
    return [[y, per_year[y].planned, per_year[y].made, per_year[y].confirmed, per_year[y].cells_visited,
             per_year[y].inspections_planned, per_year[y].inspections_done] for y in years]


def rec_year_rows(per_year: dict[int, SupervisionYear], years: list[int]) -> list[list]:
    """Recommendations per year of the visit (rows under REC_COLUMNS; states as of today)."""
    return [[y, per_year[y].recs, per_year[y].recs_verified, per_year[y].recs_done, per_year[y].recs_open,
             per_year[y].recs_overdue] for y in years]


# (label, value of a year) for year on year, in the shape of consolidation.years_table.
YOY_ROWS = [
    ("Lượt giám sát đã thực hiện", lambda s: s.made),
    ("Chi bộ được giám sát", lambda s: s.cells_visited),
    ("Kiến nghị đưa ra", lambda s: s.recs),
    ("Kiến nghị đã kiểm chứng (khép lại)", lambda s: s.recs_verified),
]


def yoy_rows(per_year: dict[int, SupervisionYear], years: list[int], base: list[int]) -> list[list]:
    """Each supervision figure over the years, with the change of the last year against each baseline."""
    target = years[-1]
    rows = []
    for label, get in YOY_ROWS:
        now = get(per_year[target])
        rows.append([label] + [get(per_year[y]) for y in years] + [now - get(per_year[b]) for b in base if b != target])
    return rows


def supervisor_names(ids: Iterable[str]) -> dict[str, str]:
    """Account id -> the name shown."""
    ids = list(set(ids))
    out = {}
    for start in range(0, len(ids), 500):
        out.update({u.id: u.full_name or u.username for u in
                    User.select(User.id, User.full_name, User.username).where(User.id.in_(ids[start:start + 500]))})
    return out


__all__ = ["REC_FILTERS", "ReportRecommendation", "ReportVisit", "coverage", "inspections_of", "plan_lines", "rec_facts",
           "score_facts",
           "supervision_years", "visit_facts"]
