"""Consolidation: the numbers central (and a field node, for its own cells) reports over many cells
and years, kept fast at national scale by a local rollup.

Design: `ReportMeeting` holds one row per live meeting with the facts the dashboards count (held,
on the cell's fixed day, minutes, roll-call counts, contributions by kind, speakers, self and
supervisor score with band) and the verdicts of the meeting's own rule set (duration, attendance).
It is derived data, never synced: `rebuild()` refills it with one set-based INSERT … SELECT plus one
UPDATE per rule set for the verdicts (thresholds read from each rule set's parameters), and
`refresh()` keeps it current by reading the change log (`ChangeLog`, every captured or applied change
in commit order) since the seq it last saw: the meetings those changes touch are recomputed by the
same statements restricted to their ids. Two smaller sums sit on top and are re-summed for the
cells and years a refresh touched: `ReportCellYear` (whole years, per cell: year on year, the pack)
and `ReportMonth` (every cell's month: the national dashboard). Scores come from `models.scoring` (`score_answer_set`, or
`score_sheet` over answers loaded in bulk for a full rebuild). A restore (generation change) or a
changed rule set or sheet triggers a full rebuild. The drill-down views and the tests recompute
the same numbers from the records with the cell pages' functions (`attendance_rate`, `rate_passes`,
`duration_minutes`, `meeting_flags`, `year_compliance`, `contribution_summary`), so every figure is
reproducible from the records it counts.
Supervision's figures are counted from its own tables (models/supervision_report.py); `refresh()` and
`rebuild()` also keep that module's cache of recommendations' derived states (`ReportRecommendation`)
and its visit rollup (`ReportVisit`: each visit's year, month, cell, scores, signed or not).
`AnnualRating` records the level the committee decided for a cell or a member in a year; it is a
central-only table (the superior committee decides at central, 366-QĐ/TW), not synced.
"""
from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

from peewee import (BlobField, BooleanField, Case, CharField, DateField, DateTimeField, FloatField, IntegerField,
                    PostgresqlDatabase, fn)

from .base import BaseModel, ChangeLog, db, local_today, new_id, utcnow, write_transaction
from .meetings import REGULAR_KINDS
from .rules import BAND_CODES, BAND_LABELS, ANNUAL_LEVELS, RuleSet, rule_set_for

if TYPE_CHECKING:
    from .report_export import Table

HELD = ("in_progress", "ended", "closed")
THEMATIC_KINDS = ("thematic", "combined")
# Changes to these tables can move any meeting's verdict or score: rebuild everything.
FULL_REBUILD_TABLES = ("rule_set", "checklist_template", "template_version", "template_section", "template_item")
# Tables whose rows carry a meeting_id column (their changes touch that meeting's row).
MEETING_CHILD_TABLES = ("attendance", "contribution", "meeting_guest", "answer_set")
# Past this many changes since the last refresh, one full rebuild is cheaper than per-meeting work.
INCREMENTAL_LIMIT = 20000
LOCK_KEY = 7_212_012
# From this many answer sets on, scores are computed in bulk (answers loaded per chunk, score_sheet).
_BULK_MIN = 200


class ReportMeeting(BaseModel):
    """One meeting's counted facts and verdicts (local derived data, rebuilt from the records)."""

    meeting_id = CharField(primary_key=True, max_length=36)
    cell_id = CharField(max_length=36)
    year = IntegerField()
    month = IntegerField()
    held_on = DateField()
    kind = CharField(max_length=20)
    status = CharField(max_length=20)
    held = BooleanField(default=False)
    is_model = BooleanField(default=False)
    rule_set_id = CharField(max_length=36, null=True)
    on_schedule = BooleanField(default=False)
    minutes = FloatField(null=True)
    duration_ok = BooleanField(null=True)
    marked = IntegerField(default=0)
    present = IntegerField(default=0)
    excused = IntegerField(default=0)
    unexcused = IntegerField(default=0)
    attendance_ok = BooleanField(null=True)
    contributions = IntegerField(default=0)
    c_y_kien = IntegerField(default=0)
    c_tu_phe_binh = IntegerField(default=0)
    c_phe_binh = IntegerField(default=0)
    c_de_xuat = IntegerField(default=0)
    speakers = IntegerField(default=0)
    self_pct = FloatField(null=True)
    self_band = CharField(max_length=20, null=True)
    sup_pct = FloatField(null=True)
    sup_band = CharField(max_length=20, null=True)

    class Meta:
        table_name = "report_meeting"
        indexes = ((("year", "cell_id"), False), (("cell_id", "year", "month"), False))


class ReportCellYear(BaseModel):
    """A cell's year summed from report_meeting (year-on-year over every cell reads this, not meetings).

    Its metric columns are added below from `_metric_columns()`, so it always sums the same numbers."""

    cell_id = CharField(max_length=36)
    year = IntegerField()

    class Meta:
        table_name = "report_cell_year"
        primary_key = False
        indexes = ((("year", "cell_id"), True),)


class ReportMonth(BaseModel):
    """Every cell's month together (the national dashboard's chart and month totals read 12 rows)."""

    year = IntegerField()
    month = IntegerField()
    regular = FloatField(default=0)
    on_schedule = FloatField(default=0)
    present = FloatField(default=0)
    marked = FloatField(default=0)

    class Meta:
        table_name = "report_month"
        primary_key = False
        indexes = ((("year", "month"), True),)


class ReportState(BaseModel):
    """Where the rollup stands: the last change-log seq it has read and the database generation."""

    key = CharField(primary_key=True, max_length=40)
    value = CharField(max_length=80)

    class Meta:
        table_name = "report_state"


class ReportJob(BaseModel):
    """A report built in the background (the five-year pack): progress, then the files."""

    id = CharField(primary_key=True, max_length=36, default=new_id)
    user_id = CharField(max_length=36)
    title = CharField(max_length=300, default="")
    params_json = CharField(max_length=1000, default="{}")
    status = CharField(max_length=20, default="running")
    done = IntegerField(default=0)
    total = IntegerField(default=1)
    error = CharField(max_length=500, default="")
    xlsx = BlobField(null=True)
    pdf = BlobField(null=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "report_job"


class AnnualRating(BaseModel):
    """The annual level decided for a cell or a member (central only: the superior committee decides)."""

    id = CharField(primary_key=True, max_length=36, default=new_id)
    year = IntegerField()
    subject_kind = CharField(max_length=10)  # "cell" | "member"
    subject_id = CharField(max_length=36)
    cell_id = CharField(max_length=36, index=True)
    proposed_level = CharField(max_length=20, default="")
    decided_level = CharField(max_length=20, default="")
    decided_by = CharField(max_length=120, default="")
    decided_at = DateTimeField(default=utcnow)
    note = CharField(max_length=300, default="")

    class Meta:
        table_name = "annual_rating"
        indexes = ((("year", "subject_kind", "subject_id"), True),)


# -- keeping the rollup current -------------------------------------------------------------------

def _pg() -> bool:
    return isinstance(db.obj, PostgresqlDatabase)


def _state(key: str) -> str | None:
    row = ReportState.get_or_none(ReportState.key == key)
    return row.value if row else None


def _set_state(key: str, value: str) -> None:
    ReportState.insert(key=key, value=value).on_conflict(
        conflict_target=[ReportState.key], update={ReportState.value: value}).execute()


def _generation() -> str:
    from .migrations import database_identity

    db_id, generation = database_identity()
    return f"{db_id}/{generation}"


def _facts_sql(where_ids: bool) -> str:
    """The set-based statement that fills report_meeting from the records (SQLite or PostgreSQL)."""
    if _pg():
        year, month, day = ("CAST(EXTRACT(YEAR FROM m.held_on) AS INTEGER)",
                            "CAST(EXTRACT(MONTH FROM m.held_on) AS INTEGER)",
                            "CAST(EXTRACT(DAY FROM m.held_on) AS INTEGER)")

        def span(start, end):  # held_span(): an end earlier than the start is the next day
            return f"MOD(CAST(EXTRACT(EPOCH FROM ({end} - {start})) AS NUMERIC) + 86400, 86400) / 60.0"
    else:
        year, month, day = ("CAST(substr(m.held_on, 1, 4) AS INTEGER)", "CAST(substr(m.held_on, 6, 2) AS INTEGER)",
                            "CAST(substr(m.held_on, 9, 2) AS INTEGER)")

        def span(start, end):  # held_span(): an end earlier than the start is the next day
            return (f"((CAST(strftime('%s', '2000-01-01 ' || {end}) AS INTEGER) "
                    f"- CAST(strftime('%s', '2000-01-01 ' || {start}) AS INTEGER) + 86400) % 86400) / 60.0")
    # duration_minutes(): the tapped times when either exists, else the planned ones.
    minutes = (f"CASE WHEN m.started_at IS NOT NULL OR m.ended_at IS NOT NULL "
               f"THEN {span('m.started_at', 'm.ended_at')} ELSE {span('m.starts_at', 'm.ends_at')} END")
    held = "m.status IN ('in_progress', 'ended', 'closed')"
    p = db.obj.param
    ids = f" AND m.id IN (SELECT value FROM {'unnest(' + p + '::text[]) AS value' if _pg() else 'json_each(' + p + ')'})" if where_ids else ""
    child_ids = ids.replace("m.id", "meeting_id")
    return f"""
INSERT INTO report_meeting (meeting_id, cell_id, year, month, held_on, kind, status, held, is_model, rule_set_id,
    on_schedule, minutes, marked, present, excused, unexcused, contributions, c_y_kien, c_tu_phe_binh, c_phe_binh,
    c_de_xuat, speakers)
SELECT m.id, m.cell_id, {year}, {month}, m.held_on, m.kind, m.status, {held}, m.is_model, m.rule_set_id,
    {day} = c.meeting_day, {minutes},
    COALESCE(a.marked, 0), COALESCE(a.present, 0), COALESCE(a.excused, 0), COALESCE(a.unexcused, 0),
    COALESCE(k.total, 0), COALESCE(k.y_kien, 0), COALESCE(k.tu_phe_binh, 0), COALESCE(k.phe_binh, 0),
    COALESCE(k.de_xuat, 0), COALESCE(s.speakers, 0)
FROM meeting m
JOIN cell c ON c.id = m.cell_id
LEFT JOIN (SELECT meeting_id, COUNT(*) AS marked,
                  SUM(CASE WHEN status = 'present' THEN 1 ELSE 0 END) AS present,
                  SUM(CASE WHEN status = 'excused' THEN 1 ELSE 0 END) AS excused,
                  SUM(CASE WHEN status = 'unexcused' THEN 1 ELSE 0 END) AS unexcused
           FROM attendance WHERE deleted_at IS NULL{child_ids} GROUP BY meeting_id) a ON a.meeting_id = m.id
LEFT JOIN (SELECT meeting_id, COUNT(*) AS total,
                  SUM(CASE WHEN kind = 'y_kien' THEN 1 ELSE 0 END) AS y_kien,
                  SUM(CASE WHEN kind = 'tu_phe_binh' THEN 1 ELSE 0 END) AS tu_phe_binh,
                  SUM(CASE WHEN kind = 'phe_binh' THEN 1 ELSE 0 END) AS phe_binh,
                  SUM(CASE WHEN kind = 'de_xuat' THEN 1 ELSE 0 END) AS de_xuat
           FROM contribution WHERE deleted_at IS NULL{child_ids} GROUP BY meeting_id) k ON k.meeting_id = m.id
LEFT JOIN (SELECT x.meeting_id, COUNT(DISTINCT x.member_id) AS speakers
           FROM contribution x JOIN attendance y ON y.meeting_id = x.meeting_id AND y.member_id = x.member_id
                AND y.status = 'present' AND y.deleted_at IS NULL
           WHERE x.deleted_at IS NULL{ids.replace('m.id', 'x.meeting_id')} GROUP BY x.meeting_id) s ON s.meeting_id = m.id
WHERE m.deleted_at IS NULL{ids}"""


def _ids_param(ids: list[str]):
    return ids if _pg() else json.dumps(ids)


def _verdicts(ids: list[str] | None) -> None:
    """Judge duration and attendance by each meeting's own rule set (one UPDATE per rule set)."""
    p = db.obj.param
    restrict = ""
    if ids is not None:
        restrict = (f" AND meeting_id IN (SELECT value FROM "
                    f"{'unnest(' + p + '::text[]) AS value' if _pg() else 'json_each(' + p + ')'})")
    for rules in RuleSet.select():
        params = rules.params
        try:
            plain, combined = float(params["meeting_min_minutes"]), float(params["combined_min_minutes"])
            threshold = float(params["attendance_threshold_pct"])
        except (KeyError, TypeError, ValueError):
            continue  # a rule set without these thresholds judges nothing (as meeting_flags would not)
        # rate_passes(): "over the threshold" unless the rule set says "at least".
        compare = ">" if params.get("attendance_must_exceed", True) else ">="
        sql = (f"UPDATE report_meeting SET "
               f"duration_ok = CASE WHEN minutes IS NULL OR NOT held THEN NULL "
               f"WHEN kind = 'combined' THEN minutes >= {p} ELSE minutes >= {p} END, "
               f"attendance_ok = CASE WHEN marked = 0 THEN NULL ELSE present * 100.0 / marked {compare} {p} END "
               f"WHERE rule_set_id = {p}{restrict}")
        args = [combined, plain, threshold, rules.id] + ([_ids_param(ids)] if ids is not None else [])
        db.execute_sql(sql, args)


def _scores(meeting_ids: list[str] | None) -> None:
    """Fill the self and supervisor score of each meeting from its answer sets (models.scoring)."""
    from .checklists import Answer, AnswerSet, ChecklistTemplate, TemplateItem, TemplateVersion, version_items
    from .scoring import AnswerValue, score_answer_set, score_sheet

    query = (AnswerSet.live().join(TemplateVersion).join(ChecklistTemplate)
             .where(AnswerSet.meeting.is_null(False) & (ChecklistTemplate.kind != "chuan_bi"))
             .select(AnswerSet.id, AnswerSet.meeting, AnswerSet.role, AnswerSet.version, AnswerSet.created_at,
                     ChecklistTemplate.kind.alias("tkind"))
             .order_by(AnswerSet.created_at))
    if meeting_ids is not None:
        if not meeting_ids:
            return
        query = query.where(AnswerSet.meeting.in_(meeting_ids))
    # The meeting's self score comes from its meeting sheet, the supervisor's from any sheet they filled.
    chosen: dict[tuple[str, str], Any] = {}
    for row in query.objects():
        role = "self" if row.role == "self" else "supervisor"
        if role == "self" and row.tkind not in ("thuong_ky", "chuyen_de"):
            continue
        chosen[(row.meeting_id, role)] = row  # the newest wins
    if not chosen:
        return
    facts, prepared = {}, set()
    if len(chosen) >= _BULK_MIN:
        wanted = ReportMeeting.select()
        sets = (AnswerSet.live().join(TemplateVersion).join(ChecklistTemplate)
                .where((ChecklistTemplate.kind == "chuan_bi") & (AnswerSet.role == "self")).select(AnswerSet.meeting))
        if meeting_ids is not None:  # at most a recompute chunk: an IN list is fine
            wanted = wanted.where(ReportMeeting.meeting_id.in_(meeting_ids))
            sets = sets.where(AnswerSet.meeting.in_(meeting_ids))
        facts = {r.meeting_id: r for r in wanted.namedtuples()}
        prepared = {m for (m,) in sets.tuples()}
    items_cache: dict[str, list] = {}
    params_cache: dict[str, dict] = {r.id: r.params for r in RuleSet.select()}
    results: dict[tuple[str, str], Any] = {}
    bulk = []
    for key, row in chosen.items():
        fact = facts.get(key[0])
        version_id = row.version_id
        if version_id not in items_cache:
            items_cache[version_id] = version_items(TemplateVersion.get_by_id(version_id))
        codes = {i.code for i in items_cache[version_id]}
        # Prefilled answers (preparation sheet, secretary, delegates) and open meetings: the exact path.
        simple = (fact is not None and fact.status == "closed" and key[0] not in prepared
                  and not ({"B8", "B10"} & codes and key[1] == "self"))
        if simple:
            bulk.append((key, row, fact))
        else:
            results[key] = score_answer_set(AnswerSet.get_by_id(row.id))
    for start in range(0, len(bulk), 2000):
        chunk = bulk[start:start + 2000]
        answers: dict[str, dict] = defaultdict(dict)
        for set_id, code, value_json, na in (Answer.live().join(TemplateItem)
                                             .where(Answer.answer_set.in_([b[1].id for b in chunk]))
                                             .select(Answer.answer_set, TemplateItem.code, Answer.value_json, Answer.na)
                                             .tuples()):
            answers[set_id][code] = AnswerValue(json.loads(value_json or "null"), bool(na))
        for key, row, fact in chunk:
            results[key] = score_sheet(items_cache[row.version_id], answers.get(row.id, {}), facts_of(fact),
                                       params_cache.get(fact.rule_set_id) or {})
    updates: dict[str, list] = defaultdict(lambda: [None, None, None, None])
    for (meeting_id, role), sheet in results.items():
        at = 0 if role == "self" else 2
        updates[meeting_id][at] = sheet.percentage
        updates[meeting_id][at + 1] = sheet.band["code"] if sheet.band else None
    p = db.obj.param
    rows = [values + [meeting_id] for meeting_id, values in updates.items()]
    # One prepared statement for every row (a rebuild writes hundreds of thousands of scores).
    cursor = db.cursor()
    cursor.executemany(f"UPDATE report_meeting SET self_pct = {p}, self_band = {p}, sup_pct = {p}, sup_band = {p} "
                       f"WHERE meeting_id = {p}", rows)


def facts_of(row) -> dict[str, Any]:
    """The computed facts of a signed meeting from its rollup row (what `computed_values` reads)."""
    marked = row.marked > 0
    return {
        "attendance_rate": 100.0 * row.present / row.marked if marked else None,
        "present_count": row.present if marked else None,
        "unexcused_count": row.unexcused if marked else None,
        "duration_minutes": row.minutes,
        "on_schedule": bool(row.on_schedule),
        "combined": row.kind == "combined",
        "speakers": (100.0 * row.speakers / row.present if row.present else None) if row.contributions else None,
        "self_criticism_count": row.c_tu_phe_binh + row.c_phe_binh if row.contributions else None,
    }


def _lock() -> None:
    if _pg():
        db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))


def rebuild() -> int:
    """Refill the whole rollup from the records; return the number of meeting rows."""
    with write_transaction():
        _lock()
        top = ChangeLog.select(fn.MAX(ChangeLog.seq)).scalar() or 0
        ReportMeeting.delete().execute()
        db.execute_sql(_facts_sql(False))
        _verdicts(None)
        _scores(None)
        _summarise(None)
        _summarise_months(None)
        _recommendations().rebuild_recommendations()
        _set_state("recommendations", "1")
        _recommendations().rebuild_visits()
        _set_state("visits", "1")
        _set_state("seq", str(top))
        _set_state("generation", _generation())
    return ReportMeeting.select().count()


def _recommendations():
    """models.supervision_report, where recommendations' derived states are cached (imported late)."""
    from . import supervision_report

    return supervision_report


def affected_meetings(changes: Iterable[tuple[str, str]]) -> set[str] | None:
    """The meetings a batch of (table, record id) changes touches; None when everything must be redone."""
    by_table: dict[str, set[str]] = defaultdict(set)
    for table, record_id in changes:
        if table in FULL_REBUILD_TABLES:
            return None
        by_table[table].add(record_id)
    meetings = set(by_table.get("meeting", ()))

    def chunks(ids):
        ids = list(ids)
        for i in range(0, len(ids), 500):
            yield ids[i:i + 500]

    from .checklists import Answer, AnswerSet
    from .meetings import Meeting

    for table in MEETING_CHILD_TABLES:
        model = {"attendance": None, "contribution": None, "meeting_guest": None, "answer_set": AnswerSet}[table]
        for chunk in chunks(by_table.get(table, ())):
            if model is None:
                from .base import SYNCED_MODELS

                model = SYNCED_MODELS[table]
            meetings |= {m for (m,) in model.select(model.meeting).where(model.id.in_(chunk)).tuples() if m}
    for chunk in chunks(by_table.get("answer", ())):
        meetings |= {m for (m,) in AnswerSet.select(AnswerSet.meeting).join(Answer, on=(Answer.answer_set == AnswerSet.id))
                     .where(Answer.id.in_(chunk)).tuples() if m}
    for chunk in chunks(by_table.get("cell", ())):
        meetings |= {m for (m,) in Meeting.select(Meeting.id).where(Meeting.cell.in_(chunk)).tuples()}
    return meetings


def recompute(meeting_ids: Iterable[str]) -> None:
    """Recompute the rollup rows of these meetings (inside the caller's transaction)."""
    ids = list(meeting_ids)
    cells: set[str] = set()
    years: set[int] = set()
    for start in range(0, len(ids), 5000):
        chunk = ids[start:start + 5000]
        for c, y in ReportMeeting.select(ReportMeeting.cell_id, ReportMeeting.year).where(
                ReportMeeting.meeting_id.in_(chunk)).tuples():
            cells.add(c)
            years.add(y)
        ReportMeeting.delete().where(ReportMeeting.meeting_id.in_(chunk)).execute()
        db.execute_sql(_facts_sql(True), [_ids_param(chunk)] * 4)
        _verdicts(chunk)
        _scores(chunk)
        for c, y in ReportMeeting.select(ReportMeeting.cell_id, ReportMeeting.year).where(
                ReportMeeting.meeting_id.in_(chunk)).tuples():
            cells.add(c)
            years.add(y)
    cells_list = sorted(cells)
    for start in range(0, len(cells_list), 5000):
        _summarise(cells_list[start:start + 5000])
    if years:
        _summarise_months(sorted(years))


def _summarise_months(years: list[int] | None) -> None:
    """Re-sum report_month for these years (all with None) from report_meeting."""
    R = ReportMeeting
    delete = ReportMonth.delete()
    select = R.select(R.year, R.month, *_month_columns()).where(R.held == True)  # noqa: E712
    if years is not None:
        delete = delete.where(ReportMonth.year.in_(years))
        select = select.where(R.year.in_(years))
    delete.execute()
    ReportMonth.insert_from(select.group_by(R.year, R.month),
                            [ReportMonth.year, ReportMonth.month, ReportMonth.regular, ReportMonth.on_schedule,
                             ReportMonth.present, ReportMonth.marked]).execute()


def _month_columns():
    R = ReportMeeting
    return [_count(R.kind.in_(REGULAR_KINDS)).alias("regular"),
            _count(R.kind.in_(REGULAR_KINDS) & (R.on_schedule == True)).alias("on_schedule"),  # noqa: E712
            fn.SUM(R.present).alias("present"), fn.SUM(R.marked).alias("marked")]


def _summarise(cell_ids: list[str] | None) -> None:
    """Re-sum report_cell_year for these cells (all of them with None) from report_meeting."""
    R = ReportMeeting
    delete = ReportCellYear.delete()
    select = R.select(R.cell_id, R.year, *_metric_columns()).where(R.held == True)  # noqa: E712
    if cell_ids is not None:
        if not cell_ids:
            return
        delete = delete.where(ReportCellYear.cell_id.in_(cell_ids))
        select = select.where(R.cell_id.in_(cell_ids))
    delete.execute()
    fields = [ReportCellYear.cell_id, ReportCellYear.year] + [ReportCellYear._meta.fields[n] for n in METRIC_NAMES]
    ReportCellYear.insert_from(select.group_by(R.cell_id, R.year), fields).execute()


def refresh(full: bool = False) -> str:
    """Bring the rollup up to date: 'none' (nothing changed), 'incremental' or 'full'."""
    last, generation = _state("seq"), _state("generation")
    top = ChangeLog.select(fn.MAX(ChangeLog.seq)).scalar() or 0
    if not full and last is not None and int(last) == top and generation == _generation():
        return "none"
    # A database from before the recommendation cache existed fills it with one full rebuild.
    if full or last is None or int(last) > top or generation != _generation() \
            or top - int(last) > INCREMENTAL_LIMIT or _state("recommendations") is None \
            or _state("visits") is None:
        rebuild()
        return "full"
    with write_transaction():
        _lock()
        last = int(_state("seq") or 0)
        top = ChangeLog.select(fn.MAX(ChangeLog.seq)).scalar() or 0
        if last >= top:
            return "none"
        changes = list(ChangeLog.select(ChangeLog.table, ChangeLog.record_id)
                       .where((ChangeLog.seq > last) & (ChangeLog.seq <= top)).tuples())
        meetings = affected_meetings(changes)
        if meetings is None:
            full_needed = True
        else:
            full_needed = False
            recompute(meetings)
            recs = _recommendations()
            recs.recompute_recommendations(recs.affected_recommendations(changes))
            recs.recompute_visits(recs.affected_visits(changes, meetings))
            _set_state("seq", str(top))
    if full_needed:
        rebuild()
        return "full"
    return "incremental"


# -- filters and aggregates -------------------------------------------------------------------------

@dataclass
class Filters:
    """What a dashboard counts: a year and optionally a quarter or month, cells and a meeting kind."""

    year: int
    quarter: int | None = None
    month: int | None = None
    cell_ids: list[str] | None = None  # None = every cell the viewer may read
    kind: str | None = None

    def months(self) -> list[int]:
        """The months of the year this filter covers."""
        if self.month:
            return [self.month]
        if self.quarter:
            return [3 * self.quarter - 2, 3 * self.quarter - 1, 3 * self.quarter]
        return list(range(1, 13))

    def where(self, years: Iterable[int] | None = None):
        """The rollup condition (held meetings of the years, months, cells and kind)."""
        R = ReportMeeting
        cond = R.held == True  # noqa: E712 (peewee expression)
        years = list(years) if years is not None else [self.year]
        cond &= R.year.in_(years) if len(years) > 1 else (R.year == years[0])
        if self.month or self.quarter:
            cond &= R.month.in_(self.months())
        if self.cell_ids is not None:
            cond &= R.cell_id.in_(self.cell_ids) if self.cell_ids else (R.cell_id == "")
        if self.kind == "regular_kinds":
            cond &= R.kind.in_(REGULAR_KINDS)
        elif self.kind:
            cond &= R.kind == self.kind
        return cond


def _count(condition):
    return fn.SUM(Case(None, [(condition, 1)], 0))


def _metric_columns():
    R = ReportMeeting
    cols = [
        fn.COUNT(R.meeting_id).alias("meetings"),
        _count(R.kind.in_(REGULAR_KINDS)).alias("regular"),
        _count(R.kind.in_(THEMATIC_KINDS)).alias("thematic"),
        _count(R.is_model == True).alias("model"),  # noqa: E712
        _count(R.kind.in_(REGULAR_KINDS) & (R.on_schedule == True)).alias("on_schedule"),  # noqa: E712
        _count(R.duration_ok.is_null(False)).alias("duration_judged"),
        _count(R.duration_ok == True).alias("duration_ok"),  # noqa: E712
        _count(R.attendance_ok.is_null(False)).alias("attendance_judged"),
        _count(R.attendance_ok == True).alias("attendance_ok"),  # noqa: E712
        fn.SUM(R.marked).alias("marked"), fn.SUM(R.present).alias("present"),
        fn.SUM(R.excused).alias("excused"), fn.SUM(R.unexcused).alias("unexcused"),
        fn.SUM(R.contributions).alias("contributions"), fn.SUM(R.c_y_kien).alias("y_kien"),
        fn.SUM(R.c_tu_phe_binh).alias("tu_phe_binh"), fn.SUM(R.c_phe_binh).alias("phe_binh"),
        fn.SUM(R.c_de_xuat).alias("de_xuat"),
        _count(R.contributions > 0).alias("speak_recorded"),
        fn.SUM(Case(None, [(R.contributions > 0, R.speakers)], 0)).alias("speakers"),
        fn.SUM(Case(None, [(R.contributions > 0, R.present)], 0)).alias("speak_present"),
        _count(R.self_pct.is_null(False)).alias("self_scored"),
        fn.SUM(R.self_pct).alias("self_sum"),
        _count(R.sup_pct.is_null(False)).alias("sup_scored"),
        fn.SUM(R.sup_pct).alias("sup_sum"),
    ]
    for code in BAND_CODES:
        cols.append(_count(R.self_band == code).alias(f"self_{code}"))
        cols.append(_count(R.sup_band == code).alias(f"sup_{code}"))
    return cols


METRIC_NAMES = [c._alias for c in _metric_columns()]
for _name in METRIC_NAMES:
    ReportCellYear._meta.add_field(_name, FloatField(null=True))


@dataclass
class Metrics:
    """Counted numbers of a group of held meetings and the rates derived from them."""

    values: dict[str, float] = field(default_factory=dict)

    def __getitem__(self, key: str) -> float:
        return self.values.get(key) or 0

    @staticmethod
    def _share(part, whole) -> float | None:
        return 100.0 * part / whole if whole else None

    @property
    def attendance_rate(self) -> float | None:
        """Present over marked, all meetings together (%)."""
        return self._share(self["present"], self["marked"])

    @property
    def attendance_pass_rate(self) -> float | None:
        """Share of judged meetings whose attendance passed the rule set (%)."""
        return self._share(self["attendance_ok"], self["attendance_judged"])

    @property
    def duration_pass_rate(self) -> float | None:
        """Share of judged meetings long enough for their rule set (%)."""
        return self._share(self["duration_ok"], self["duration_judged"])

    @property
    def on_schedule_rate(self) -> float | None:
        """Share of regular meetings held on the cell's fixed day (%)."""
        return self._share(self["on_schedule"], self["regular"])

    @property
    def participation(self) -> float | None:
        """Share of present members who spoke, in meetings whose contributions were recorded (%)."""
        return self._share(self["speakers"], self["speak_present"])

    @property
    def contributions_per_member(self) -> float | None:
        """Contributions per present member, in meetings whose contributions were recorded."""
        return self["contributions"] / self["speak_present"] if self["speak_present"] else None

    @property
    def criticism(self) -> int:
        """Self-criticism and criticism together."""
        return int(self["tu_phe_binh"] + self["phe_binh"])

    @property
    def self_avg(self) -> float | None:
        """Mean self score (% of the sheet's maximum)."""
        return self["self_sum"] / self["self_scored"] if self["self_scored"] else None

    @property
    def sup_avg(self) -> float | None:
        """Mean supervisor score (% of the sheet's maximum)."""
        return self["sup_sum"] / self["sup_scored"] if self["sup_scored"] else None

    def bands(self, who: str = "self") -> dict[str, int]:
        """Band code -> meetings in that band."""
        return {code: int(self[f"{who}_{code}"]) for code in BAND_CODES}


def metrics(filters: Filters, group_by: tuple[str, ...] = (), years: Iterable[int] | None = None) -> dict:
    """Aggregate the rollup: {group key tuple: Metrics} (the key is () without grouping).

    Whole years of every kind grouped by year and/or cell read the per cell-year sums instead."""
    if not (filters.month or filters.quarter or filters.kind) and set(group_by) <= {"year", "cell_id"}:
        return _summary_metrics(filters, group_by, years)
    R = ReportMeeting
    columns = [getattr(R, g) for g in group_by]
    query = R.select(*columns, *_metric_columns()).where(filters.where(years))
    if columns:
        query = query.group_by(*columns)
    out = {}
    for row in query.dicts():
        key = tuple(row.pop(g) for g in group_by)
        out[key] = Metrics({k: float(v or 0) for k, v in row.items()})
    if not group_by and () not in out:
        out[()] = Metrics()
    return out


def month_series(filters: Filters, years: list[int] | None = None) -> dict:
    """Per month (or per (year, month) when `years` are given): regular meetings, those on the fixed
    day, present and marked (the dashboard's chart and month totals; four sums, not every metric)."""
    if filters.cell_ids is None and not filters.kind:
        # Every cell: the month sums kept with the rollup.
        M = ReportMonth
        cond = M.year.in_(years or [filters.year])
        if filters.month or filters.quarter:
            cond &= M.month.in_(filters.months())
        query = (M.select(M.year, M.month, M.regular, M.on_schedule, M.present, M.marked).where(cond))
    else:
        R = ReportMeeting
        query = (R.select(R.year, R.month, *_month_columns()).where(filters.where(years)).group_by(R.year, R.month))
    out = {}
    for row in query.dicts():
        year, month = row.pop("year"), row.pop("month")
        key = (year, month) if years else (month,)
        out[key] = Metrics({k: float(v or 0) for k, v in row.items()})
    return out


def _summary_metrics(filters: Filters, group_by: tuple[str, ...], years: Iterable[int] | None) -> dict:
    """metrics() over report_cell_year."""
    S = ReportCellYear
    years = list(years) if years is not None else [filters.year]
    cond = S.year.in_(years)
    if filters.cell_ids is not None:
        cond &= S.cell_id.in_(filters.cell_ids) if filters.cell_ids else (S.cell_id == "")
    columns = [getattr(S, g) for g in group_by]
    query = S.select(*columns, *[fn.SUM(getattr(S, n)).alias(n) for n in METRIC_NAMES]).where(cond)
    if columns:
        query = query.group_by(*columns)
    out = {}
    for row in query.dicts():
        key = tuple(row.pop(g) for g in group_by)
        if row["meetings"] is None:
            continue
        out[key] = Metrics({k: float(v or 0) for k, v in row.items()})
    if not group_by and () not in out:
        out[()] = Metrics()
    return out


# -- the compliance matrix (cells × months) --------------------------------------------------------

def judged_months(year: int, today: dt.date) -> list[int]:
    """Months of `year` already over (year_compliance never judges the current month)."""
    return [m for m in range(1, 13) if dt.date(year, m, 1) <= today and (year, m) != (today.year, today.month)]


def judged_quarters(year: int, today: dt.date) -> list[int]:
    """Quarters of `year` already over."""
    return [q for q in range(1, 5) if dt.date(year + (3 * q) // 12, (3 * q) % 12 + 1, 1) <= today]


def _active_in(cell, year: int, month: int) -> bool:
    """year_compliance's rule: a month before the cell existed is not judged."""
    return not (cell.active_from and dt.date(year, month, 28) < cell.active_from)


@dataclass
class MatrixCell:
    """One cell-month of the matrix: state (on_time/late/missing/pending/none) and warnings."""

    state: str
    short: int = 0
    low_attendance: int = 0


MATRIX_STATES = {"on_time": "Đúng lịch", "late": "Lệch ngày", "missing": "Thiếu", "pending": "Chưa đến",
                 "none": "—"}


def compliance_matrix(cells: list, year: int, today: dt.date, kind: str | None = None) -> dict:
    """Per cell: 12 MatrixCells (regular meeting held on schedule / late / missing) and per quarter
    whether the thematic minimum of the rule set in force was met."""
    R = ReportMeeting
    ids = [c.id for c in cells]
    out = {c.id: {"months": {}, "quarters": {}} for c in cells}
    if not ids:
        return out
    rows = (R.select(R.cell_id, R.month, fn.COUNT(R.meeting_id),
                     _count(R.on_schedule == True), _count(R.duration_ok == False),  # noqa: E712
                     _count(R.attendance_ok == False))  # noqa: E712
            .where((R.year == year) & (R.held == True) & R.kind.in_(REGULAR_KINDS) & R.cell_id.in_(ids))  # noqa: E712
            .group_by(R.cell_id, R.month).tuples())
    regular = {(c, m): (n, on, short, low) for c, m, n, on, short, low in rows}
    rows = (R.select(R.cell_id, R.month, fn.COUNT(R.meeting_id))
            .where((R.year == year) & (R.held == True) & R.kind.in_(THEMATIC_KINDS) & R.cell_id.in_(ids))  # noqa: E712
            .group_by(R.cell_id, R.month).tuples())
    thematic: dict[tuple, int] = defaultdict(int)
    for c, m, n in rows:
        thematic[(c, (m - 1) // 3 + 1)] += n
    months = set(judged_months(year, today))
    quarters = set(judged_quarters(year, today))
    required = {q: _thematic_required(year, q) for q in range(1, 5)}
    for cell in cells:
        for month in range(1, 13):
            n, on, short, low = regular.get((cell.id, month), (0, 0, 0, 0))
            if n:
                state = "on_time" if on else "late"
            elif month in months and _active_in(cell, year, month):
                state = "missing"
            elif month in months:
                state = "none"
            else:
                state = "pending"
            out[cell.id]["months"][month] = MatrixCell(state, int(short or 0), int(low or 0))
        for q in range(1, 5):
            end = dt.date(year + (3 * q) // 12, (3 * q) % 12 + 1, 1)
            if q not in quarters or (cell.active_from and end <= cell.active_from):
                out[cell.id]["quarters"][q] = None
            else:
                out[cell.id]["quarters"][q] = thematic[(cell.id, q)] >= required[q]
    return out


def _thematic_required(year: int, quarter: int) -> int:
    """The thematic minimum of the national rule set in force at the quarter's start."""
    rules = rule_set_for(dt.date(year, 3 * quarter - 2, 1))
    return int(rules.params.get("thematic_per_quarter", 0)) if rules else 0


def month_totals(cells: list, year: int, today: dt.date, cell_ids: list[str] | None = None,
                 by_month: dict | None = None) -> dict[int, dict[str, int]]:
    """Per month, over all the given cells: how many held on time, late, and how many are missing.

    With `by_month` (metrics grouped by month, all kinds) its regular meetings are counted instead of
    a second scan; they differ only if sync brought two regular meetings of one cell-month.
    """
    if by_month is not None:
        held = {m[0]: (int(v["regular"]), int(v["on_schedule"])) for m, v in by_month.items()}
        return _month_states(cells, year, today, held)
    R = ReportMeeting
    cond = (R.year == year) & (R.held == True) & R.kind.in_(REGULAR_KINDS)  # noqa: E712
    if cell_ids is not None:
        cond &= R.cell_id.in_(cell_ids) if cell_ids else (R.cell_id == "")
    # Cells, not meetings: a cell has one regular meeting a month (a synced duplicate counts once).
    rows = (R.select(R.month, fn.COUNT(R.cell_id.distinct()),
                     fn.COUNT(Case(None, [(R.on_schedule == True, R.cell_id)], None).distinct()))  # noqa: E712
            .where(cond).group_by(R.month).tuples())
    return _month_states(cells, year, today, {m: (int(n), int(on or 0)) for m, n, on in rows})


def _month_states(cells: list, year: int, today: dt.date, held: dict) -> dict[int, dict[str, int]]:
    """On time / late / missing per month from (held, on schedule) counts."""
    months = set(judged_months(year, today))
    out = {}
    for month in range(1, 13):
        n, on = held.get(month, (0, 0))
        active = sum(1 for c in cells if _active_in(c, year, month)) if month in months else 0
        out[month] = {"on_time": on, "late": n - on, "missing": max(active - n, 0) if month in months else 0}
    return out


def total_of(groups: dict) -> Metrics:
    """The sum of grouped metrics (every counted column adds up)."""
    total: dict[str, float] = defaultdict(float)
    for m in groups.values():
        for key, value in m.values.items():
            total[key] += value
    return Metrics(dict(total))


# -- drill-down: the meetings behind a number, recomputed from the records --------------------------

DRILL_METRICS = {
    "held": "Buổi sinh hoạt đã tổ chức",
    "regular": "Sinh hoạt thường kỳ",
    "thematic": "Sinh hoạt chuyên đề",
    "on_schedule": "Thường kỳ đúng ngày cố định",
    "late": "Thường kỳ lệch ngày cố định",
    "short": "Thời lượng dưới mức tối thiểu",
    "low_attendance": "Tỷ lệ dự chưa đạt",
    "model": "Buổi sinh hoạt mẫu",
    "speak_recorded": "Có ghi phát biểu",
    "self_scored": "Chi bộ tự chấm điểm",
    "sup_scored": "Cấp trên chấm điểm",
}
DRILL_METRICS.update({f"self_{c}": f"Tự chấm xếp loại {BAND_LABELS[c]}" for c in BAND_CODES})
DRILL_METRICS.update({f"sup_{c}": f"Cấp trên chấm xếp loại {BAND_LABELS[c]}" for c in BAND_CODES})


def drill_condition(metric: str):
    """The rollup condition that selects the meetings behind one metric."""
    R = ReportMeeting
    conditions = {
        "held": None, "regular": R.kind.in_(REGULAR_KINDS), "thematic": R.kind.in_(THEMATIC_KINDS),
        "on_schedule": R.kind.in_(REGULAR_KINDS) & (R.on_schedule == True),  # noqa: E712
        "late": R.kind.in_(REGULAR_KINDS) & (R.on_schedule == False),  # noqa: E712
        "short": R.duration_ok == False, "low_attendance": R.attendance_ok == False,  # noqa: E712
        "model": R.is_model == True, "speak_recorded": R.contributions > 0,  # noqa: E712
        "self_scored": R.self_pct.is_null(False), "sup_scored": R.sup_pct.is_null(False),
    }
    for code in BAND_CODES:
        conditions[f"self_{code}"] = R.self_band == code
        conditions[f"sup_{code}"] = R.sup_band == code
    if metric not in conditions:
        raise KeyError(metric)
    return conditions[metric]


def drill_meeting_ids(filters: Filters, metric: str, limit: int = 50, offset: int = 0) -> tuple[list[str], int]:
    """The ids (one page, by date) and the total count of the meetings behind a metric."""
    R = ReportMeeting
    cond = filters.where()
    extra = drill_condition(metric)
    if extra is not None:
        cond &= extra
    query = R.select(R.meeting_id).where(cond)
    total = query.count()
    ids = [m for (m,) in query.order_by(R.held_on, R.meeting_id).limit(limit).offset(offset).tuples()]
    return ids, total


def meeting_record_rows(meeting_ids: list[str], scores: bool = True) -> list[dict]:
    """Each meeting recomputed from its records with the cell pages' own functions."""
    from .checklists import AnswerSet, ChecklistTemplate, TemplateVersion
    from .meeting_record import contribution_summary
    from .meetings import Attendance, Meeting, attendance_rate, duration_minutes, rate_passes
    from .org import Cell
    from .planning import meeting_flags
    from .scoring import score_answer_set

    if not meeting_ids:
        return []
    meetings = list(Meeting.select().where(Meeting.id.in_(meeting_ids)).order_by(Meeting.held_on, Meeting.id))
    cells = {c.id: c for c in Cell.select().where(Cell.id.in_({m.cell_id for m in meetings}))}
    rules = {r.id: r for r in RuleSet.select()}
    marks: dict[str, dict] = defaultdict(dict)
    for row in Attendance.live().where(Attendance.meeting.in_(meeting_ids)):
        marks[row.meeting_id][row.member_id] = row
    sets = defaultdict(dict)
    if scores:
        for s in (AnswerSet.live().join(TemplateVersion).join(ChecklistTemplate)
                  .where(AnswerSet.meeting.in_(meeting_ids) & (ChecklistTemplate.kind != "chuan_bi"))
                  .select(AnswerSet, ChecklistTemplate.kind.alias("tkind")).order_by(AnswerSet.created_at).objects()):
            if s.role == "self" and s.tkind not in ("thuong_ky", "chuyen_de"):
                continue
            sets[s.meeting_id]["self" if s.role == "self" else "sup"] = s
    out = []
    for m in meetings:
        cell, rule = cells[m.cell_id], rules.get(m.rule_set_id)
        tally: dict[str, int] = defaultdict(int)
        for a in marks[m.id].values():
            tally[a.status] += 1
        rate = attendance_rate(tally.get("present", 0), sum(tally.values()))
        speak = contribution_summary(m, marks=marks[m.id])
        row = {"meeting": m, "cell": cell, "rules": rule, "minutes": duration_minutes(m),
               "present": tally.get("present", 0), "marked": sum(tally.values()), "excused": tally.get("excused", 0),
               "unexcused": tally.get("unexcused", 0), "rate": rate, "passes": rate_passes(rate, rule),
               "flags": meeting_flags(m, cell, rule, dict(tally)), "speak": speak}
        for who in ("self", "sup"):
            sheet = score_answer_set(sets[m.id][who]) if who in sets[m.id] else None
            row[f"{who}_pct"] = sheet.percentage if sheet else None
            row[f"{who}_band"] = (sheet.band or {}).get("code") if sheet else None
        out.append(row)
    return out


# -- annual rating evidence ------------------------------------------------------------------------

LEVEL_LABELS = {**ANNUAL_LEVELS, "not_complete": "Không hoàn thành nhiệm vụ"}


@dataclass
class MemberEvidence:
    """One member's year: attendance, contributions, tasks and the proposed level."""

    member: Any
    counted: int = 0
    present: int = 0
    excused: int = 0
    unexcused: int = 0
    contributions: dict[str, int] = field(default_factory=dict)
    tasks: int = 0
    tasks_done: int = 0
    points: float | None = None
    proposed: str = ""
    decided: str = ""

    @property
    def attendance_rate(self) -> float | None:
        """Present over the meetings the member was marked at (%)."""
        return 100.0 * self.present / self.counted if self.counted else None

    @property
    def task_rate(self) -> float | None:
        """Tasks judged done over tasks assigned (%)."""
        return 100.0 * self.tasks_done / self.tasks if self.tasks else None

    @property
    def contribution_total(self) -> int:
        """All contributions of the year."""
        return sum(self.contributions.values())


@dataclass
class CellEvidence:
    """A cell's year: its meeting series, its members' evidence, the proposal and the quota check."""

    cell: Any
    year: int
    rules: RuleSet | None
    metrics: Metrics
    meetings_judged: int
    bands: list[str]
    points: float | None
    proposed: str
    decided: str
    meets_tot: bool
    members: list[MemberEvidence]
    excellent_quota: int
    excellent_count: int

    @property
    def quota_exceeded(self) -> bool:
        """More members rated (or proposed) excellent than the rule set allows."""
        return self.excellent_count > self.excellent_quota


def rating_evidence(cell, year: int) -> CellEvidence:
    """The evidence for a cell's and its members' annual rating, with proposals by the rule set's bands.

    A member's suggested points are the mean of what the year records for them (attendance rate,
    share of tasks done, the cell's mean meeting score); the committee decides, this only proposes.
    """
    from .meeting_record import Contribution, Task, TaskReview
    from .meetings import Attendance, Meeting
    from .members import Member
    from .scoring import annual_level, excellent_quota, meets_annual_tot

    refresh()
    rules = rule_set_for(min(dt.date(year, 12, 31), local_today()), cell.organisation_id)
    params = rules.params if rules else {}
    m = metrics(Filters(year=year, cell_ids=[cell.id]))[()]
    bands = [b for (b,) in ReportMeeting.select(ReportMeeting.self_band)
             .where((ReportMeeting.cell_id == cell.id) & (ReportMeeting.year == year) & (ReportMeeting.held == True)  # noqa: E712
                    & ReportMeeting.kind.in_(REGULAR_KINDS) & ReportMeeting.self_band.is_null(False)).tuples()]
    cell_points = m.self_avg
    decided = {(r.subject_kind, r.subject_id): r.decided_level
               for r in AnnualRating.select().where((AnnualRating.year == year) & (AnnualRating.cell_id == cell.id))}
    first, after = dt.date(year, 1, 1), dt.date(year + 1, 1, 1)
    year_meetings = Meeting.live().select(Meeting.id).where(
        (Meeting.cell == cell.id) & (Meeting.held_on >= first) & (Meeting.held_on < after) & Meeting.status.in_(HELD))
    members = {mem.id: MemberEvidence(mem) for mem in Member.live().where(Member.cell == cell.id)
               .order_by(Member.full_name)}
    for member_id, status, n in (Attendance.live().select(Attendance.member, Attendance.status, fn.COUNT(Attendance.id))
                                 .where(Attendance.meeting.in_(year_meetings))
                                 .group_by(Attendance.member, Attendance.status).tuples()):
        ev = members.get(member_id)
        if ev is None:
            continue
        ev.counted += n
        if status in ("present", "excused", "unexcused"):
            setattr(ev, status, getattr(ev, status) + n)
    for member_id, kind, n in (Contribution.live().select(Contribution.member, Contribution.kind, fn.COUNT(Contribution.id))
                               .where(Contribution.meeting.in_(year_meetings))
                               .group_by(Contribution.member, Contribution.kind).tuples()):
        if member_id in members:
            members[member_id].contributions[kind] = n
    done_tasks = {t for (t,) in TaskReview.live().select(TaskReview.task).where(TaskReview.outcome == "done").tuples()}
    for task_id, assignee in (Task.live().select(Task.id, Task.assignee)
                              .where(Task.meeting.in_(year_meetings) & Task.assignee.is_null(False)).tuples()):
        if assignee in members:
            members[assignee].tasks += 1
            members[assignee].tasks_done += task_id in done_tasks
    listed = []
    for ev in members.values():
        if not ev.counted and not ev.tasks and not ev.contributions:
            continue
        parts = [p for p in (ev.attendance_rate, ev.task_rate, cell_points) if p is not None]
        ev.points = sum(parts) / len(parts) if parts else None
        if ev.points is not None and "annual_rating_bands" in params:
            ev.proposed = annual_level(ev.points, params)
        ev.decided = decided.get(("member", ev.member.id), "")
        listed.append(ev)
    levels = [ev.decided or ev.proposed for ev in listed]
    quota = excellent_quota(levels.count("good"), params) if "excellent_quota_pct_of_good" in params else 0
    proposed = annual_level(cell_points, params) if cell_points is not None and "annual_rating_bands" in params else ""
    return CellEvidence(
        cell=cell, year=year, rules=rules, metrics=m, meetings_judged=int(m["regular"]), bands=bands,
        points=cell_points, proposed=proposed, decided=decided.get(("cell", cell.id), ""),
        meets_tot=meets_annual_tot(bands, params) if "annual_tot_min_good_meetings" in params else False,
        members=listed, excellent_quota=quota, excellent_count=levels.count("excellent"))


def decide_levels(cell, year: int, levels: dict[tuple[str, str], str], by: str, proposals: dict) -> int:
    """Record the decided level of the cell and its members (empty = undecided). Return rows written."""
    written = 0
    with write_transaction():
        for (kind, subject_id), level in levels.items():
            AnnualRating.delete().where((AnnualRating.year == year) & (AnnualRating.subject_kind == kind)
                                        & (AnnualRating.subject_id == subject_id)).execute()
            if level:
                AnnualRating.create(year=year, subject_kind=kind, subject_id=subject_id, cell_id=cell.id,
                                    proposed_level=proposals.get((kind, subject_id), ""), decided_level=level,
                                    decided_by=by[:120])
                written += 1
    return written


# -- the five-year review pack ---------------------------------------------------------------------

@dataclass
class Pack:
    """What the five-year review needs, per year (and per cell when consolidated)."""

    title: str
    years: list[int]
    cells: list
    per_year: dict[int, Metrics]
    required: dict[int, int]
    missing: dict[int, int]
    thematic_quarters: dict[int, tuple[int, int]]
    per_cell: dict[tuple[str, int], Metrics]
    panels: list[dict] = field(default_factory=list)


def five_year_pack(cells: list, years: list[int], title: str, today: dt.date | None = None,
                   progress: Callable[[int, int], None] | None = None) -> Pack:
    """Gather the pack's tables from the rollup: per year and per cell × year."""
    today = today or local_today()
    ids = [c.id for c in cells]
    steps = len(years) + 2
    step = 0

    def tick():
        nonlocal step
        step += 1
        if progress:
            progress(step, steps)

    base = Filters(year=years[-1], cell_ids=ids if cell_ids_needed(cells) else None)
    # One scan per question over all five years (the per-year figures are sums of the months).
    by_year_month = month_series(base, years)
    found = metrics(base, group_by=("year",), years=years)
    tick()
    thematic_counts = _thematic_counts(base.cell_ids, years)
    required, missing, thematic, per_year = {}, {}, {}, {}
    for y in years:
        months_of = {(k[1],): v for k, v in by_year_month.items() if k[0] == y}
        per_year[y] = found.get((y,), Metrics())
        totals = month_totals(cells, y, today, by_month=months_of)
        judged = set(judged_months(y, today))
        required[y] = sum(1 for c in cells for mth in judged if _active_in(c, y, mth))
        missing[y] = sum(t["missing"] for t in totals.values())
        thematic[y] = _thematic_quarters(thematic_counts, cells, y, today)
        tick()
    per_cell = {(k[0], k[1]): v for k, v in metrics(base, group_by=("cell_id", "year"), years=years).items()}
    tick()
    pack = Pack(title, years, cells, per_year, required, missing, thematic, per_cell)
    for panel in PACK_PANELS:
        section = panel(pack)
        if section:
            pack.panels.append(section)
    return pack


def cell_ids_needed(cells: list) -> bool:
    """False when `cells` are all the live cells (the queries then need no list of ids)."""
    from .org import Cell

    return len(cells) != Cell.live().count()


def _thematic_counts(cell_ids: list[str] | None, years: list[int]) -> dict[tuple, int]:
    """(cell, year, quarter) -> thematic meetings held."""
    R = ReportMeeting
    cond = R.year.in_(years) & (R.held == True) & R.kind.in_(THEMATIC_KINDS)  # noqa: E712
    if cell_ids is not None:
        cond &= R.cell_id.in_(cell_ids)
    counts: dict[tuple, int] = defaultdict(int)
    for c, y, m, n in (R.select(R.cell_id, R.year, R.month, fn.COUNT(R.meeting_id)).where(cond)
                       .group_by(R.cell_id, R.year, R.month).tuples()):
        counts[(c, y, (m - 1) // 3 + 1)] += n
    return counts


def _thematic_quarters(counts: dict, cells: list, year: int, today: dt.date) -> tuple[int, int]:
    """(cell-quarters meeting the thematic minimum, cell-quarters judged) over the cells."""
    ok = judged = 0
    for q in judged_quarters(year, today):
        end = dt.date(year + (3 * q) // 12, (3 * q) % 12 + 1, 1)
        need = _thematic_required(year, q)
        for cell in cells:
            if cell.active_from and end <= cell.active_from:
                continue
            judged += 1
            ok += counts.get((cell.id, year, q), 0) >= need
    return ok, judged


def model_meeting_panel(pack: Pack) -> dict:
    """Model (demonstration) meetings per year (Meeting.is_model)."""
    return {"title": "Sinh hoạt chi bộ mẫu", "columns": ["Năm", "Số buổi sinh hoạt mẫu"],
            "rows": [[y, int(pack.per_year[y]["model"])] for y in pack.years]}


def supervisor_score_panel(pack: Pack) -> dict:
    """Meetings the superior committee scored, and their bands (answer sets with role 'supervisor')."""
    rows = []
    for y in pack.years:
        m = pack.per_year[y]
        rows.append([y, int(m["sup_scored"]), m.sup_avg] + [m.bands("sup")[c] for c in BAND_CODES])
    return {"title": "Cấp ủy cấp trên dự và chấm điểm",
            "columns": ["Năm", "Số buổi cấp trên chấm", "Điểm bình quân (%)"] + [BAND_LABELS[c] for c in BAND_CODES],
            "rows": rows}


def _supervision_years(pack: Pack):
    """The pack's supervision figures per year (computed once, kept on the pack)."""
    from .supervision_report import supervision_years

    if not hasattr(pack, "_supervision"):
        ids = [c.id for c in pack.cells] if cell_ids_needed(pack.cells) else None
        pack._supervision = supervision_years(pack.years, ids)
    return pack._supervision


def supervision_visits_panel(pack: Pack) -> dict:
    """Supervision visits planned and made, and annual inspections, per year (models.supervision_report)."""
    from .supervision_report import VISIT_COLUMNS, visit_year_rows

    return {"title": "Giám sát sinh hoạt chi bộ và kiểm tra hằng năm", "columns": VISIT_COLUMNS,
            "rows": visit_year_rows(_supervision_years(pack), pack.years)}


def supervision_recs_panel(pack: Pack) -> dict:
    """Recommendations made at each year's visits and how many are closed (verified), as of today."""
    from .supervision_report import REC_COLUMNS, rec_year_rows

    return {"title": "Kiến nghị sau giám sát và kết quả khắc phục", "columns": REC_COLUMNS,
            "rows": rec_year_rows(_supervision_years(pack), pack.years)}


# Sections of the pack (and of the dashboard) that other features add: each takes the pack and returns
# {"title", "columns", "rows"} or None. Supervision's come from its own small tables, not the rollup.
PACK_PANELS: list[Callable[[Pack], dict | None]] = [model_meeting_panel, supervisor_score_panel,
                                                    supervision_visits_panel, supervision_recs_panel]


# -- the tables every page, CSV, XLSX and PDF shows --------------------------------------------------

# (label, value of a Metrics, drill-down metric or None, unit)
METRIC_ROWS: list[tuple[str, Callable[[Metrics], Any], str | None, str]] = [
    ("Số buổi sinh hoạt đã tổ chức", lambda m: int(m["meetings"]), "held", ""),
    ("Sinh hoạt thường kỳ", lambda m: int(m["regular"]), "regular", ""),
    ("Sinh hoạt chuyên đề (kể cả kết hợp)", lambda m: int(m["thematic"]), "thematic", ""),
    ("Thường kỳ đúng ngày cố định (%)", lambda m: m.on_schedule_rate, "on_schedule", "%"),
    ("Buổi đủ thời lượng theo quy định (%)", lambda m: m.duration_pass_rate, "short", "%"),
    ("Tỷ lệ đảng viên dự (%)", lambda m: m.attendance_rate, None, "%"),
    ("Buổi đạt ngưỡng tỷ lệ dự (%)", lambda m: m.attendance_pass_rate, "low_attendance", "%"),
    ("Lượt vắng có lý do", lambda m: int(m["excused"]), None, ""),
    ("Lượt vắng không lý do", lambda m: int(m["unexcused"]), None, ""),
    ("Buổi có ghi phát biểu", lambda m: int(m["speak_recorded"]), "speak_recorded", ""),
    ("Đảng viên có mặt đã phát biểu (%)", lambda m: m.participation, "speak_recorded", "%"),
    ("Số ý kiến phát biểu", lambda m: int(m["contributions"]), "speak_recorded", ""),
    ("Ý kiến bình quân mỗi đảng viên có mặt", lambda m: m.contributions_per_member, "speak_recorded", ""),
    ("Ý kiến tự phê bình", lambda m: int(m["tu_phe_binh"]), "speak_recorded", ""),
    ("Ý kiến phê bình", lambda m: int(m["phe_binh"]), "speak_recorded", ""),
    ("Buổi chi bộ tự chấm điểm", lambda m: int(m["self_scored"]), "self_scored", ""),
    ("Điểm tự chấm bình quân (%)", lambda m: m.self_avg, "self_scored", "%"),
    ("Buổi cấp trên chấm điểm", lambda m: int(m["sup_scored"]), "sup_scored", ""),
    ("Điểm cấp trên chấm bình quân (%)", lambda m: m.sup_avg, "sup_scored", "%"),
    ("Buổi sinh hoạt mẫu", lambda m: int(m["model"]), "model", ""),
]


def totals_table(m: Metrics, title: str) -> "Table":
    """One group's numbers, one per row."""
    from .report_export import Table

    return Table(title, ["Chỉ tiêu", "Số liệu"], [[label, get(m)] for label, get, _d, _u in METRIC_ROWS])


def bands_table(m: Metrics, title: str) -> "Table":
    """Band distribution, self and supervisor."""
    from .report_export import Table

    rows = [["Chi bộ tự chấm"] + [m.bands("self")[c] for c in BAND_CODES],
            ["Cấp trên chấm"] + [m.bands("sup")[c] for c in BAND_CODES]]
    return Table(title, ["Người chấm"] + [BAND_LABELS[c] for c in BAND_CODES], rows)


def years_table(per_year: dict[int, Metrics], years: list[int], base: list[int], title: str) -> "Table":
    """Each metric over the years, with the change against each baseline year."""
    from .report_export import Table

    target = years[-1]
    columns = ["Chỉ tiêu"] + [f"Năm {y}" for y in years] + [f"{target} so với {b}" for b in base if b != target]
    rows = []
    for label, get, _d, _u in METRIC_ROWS:
        values = [get(per_year[y]) if y in per_year else None for y in years]
        now = get(per_year[target]) if target in per_year else None
        deltas = []
        for b in base:
            if b == target:
                continue
            then = get(per_year[b]) if b in per_year else None
            deltas.append(None if now is None or then is None else float(now) - float(then))
        rows.append([label] + values + deltas)
    return Table(title, columns, rows)


def per_cell_table(cells: list, per_cell: dict[tuple[str, int], Metrics], years: list[int], title: str) -> "Table":
    """Per cell and year: meetings held, attendance rate, participation, criticism, mean self score."""
    from .report_export import Table

    columns = ["Mã", "Chi bộ"]
    for y in years:
        columns += [f"{y}: số buổi", f"{y}: tỷ lệ dự (%)", f"{y}: phát biểu (%)", f"{y}: TPB, PB",
                    f"{y}: điểm tự chấm (%)"]
    rows = []
    for cell in cells:
        row: list[Any] = [cell.code, cell.name]
        for y in years:
            m = per_cell.get((cell.id, y), Metrics())
            row += [int(m["meetings"]), m.attendance_rate, m.participation, m.criticism, m.self_avg]
        rows.append(row)
    # On A4: code, name and each year's attendance rate.
    return Table(title, columns, rows, pdf_columns=[0, 1] + [2 + 5 * i + 1 for i in range(len(years))])


def matrix_table(cells: list, matrix: dict, year: int) -> "Table":
    """The compliance matrix as text: one row per cell, a state per month, thematic per quarter."""
    from .report_export import Table

    columns = ["Mã", "Chi bộ"] + [f"T{m}/{year}" for m in range(1, 13)] + [f"Chuyên đề Q{q}" for q in range(1, 5)]
    rows = []
    for cell in cells:
        entry = matrix[cell.id]
        row: list[Any] = [cell.code, cell.name]
        for month in range(1, 13):
            mc = entry["months"][month]
            text = MATRIX_STATES[mc.state]
            notes = (["thiếu thời lượng"] if mc.short else []) + (["tỷ lệ dự chưa đạt"] if mc.low_attendance else [])
            row.append(text + (f" ({', '.join(notes)})" if notes else ""))
        for q in range(1, 5):
            ok = entry["quarters"][q]
            row.append("—" if ok is None else "Đủ" if ok else "Thiếu")
        rows.append(row)
    return Table(f"Ma trận tuân thủ năm {year}", columns, rows)


def pack_tables(pack: Pack) -> list["Table"]:
    """The five-year review's tables in the order of the report."""
    from .report_export import Table

    years = pack.years
    held = Table("Sinh hoạt thường kỳ: số buổi phải tổ chức và đã tổ chức",
                 ["Năm", "Phải tổ chức (chi bộ × tháng)", "Đã tổ chức", "Thiếu", "Đúng ngày cố định (%)",
                  "Đủ thời lượng (%)"],
                 [[y, pack.required[y], int(pack.per_year[y]["regular"]), pack.missing[y],
                   pack.per_year[y].on_schedule_rate, pack.per_year[y].duration_pass_rate] for y in years])
    thematic = Table("Sinh hoạt chuyên đề theo quý",
                     ["Năm", "Số buổi chuyên đề", "Quý đạt tối thiểu", "Quý phải đạt"],
                     [[y, int(pack.per_year[y]["thematic"]), pack.thematic_quarters[y][0],
                       pack.thematic_quarters[y][1]] for y in years])
    attendance = Table("Đảng viên dự sinh hoạt",
                       ["Năm", "Lượt có mặt", "Lượt điểm danh", "Tỷ lệ dự (%)", "Vắng có lý do", "Vắng không lý do",
                        "Buổi đạt ngưỡng tỷ lệ dự (%)"],
                       [[y, int(pack.per_year[y]["present"]), int(pack.per_year[y]["marked"]),
                         pack.per_year[y].attendance_rate, int(pack.per_year[y]["excused"]),
                         int(pack.per_year[y]["unexcused"]), pack.per_year[y].attendance_pass_rate] for y in years])
    speak = Table("Phát biểu, tự phê bình và phê bình",
                  ["Năm", "Buổi có ghi phát biểu", "Đảng viên có mặt đã phát biểu (%)", "Số ý kiến",
                   "Ý kiến bình quân/đảng viên", "Tự phê bình", "Phê bình", "Đề xuất"],
                  [[y, int(pack.per_year[y]["speak_recorded"]), pack.per_year[y].participation,
                    int(pack.per_year[y]["contributions"]), pack.per_year[y].contributions_per_member,
                    int(pack.per_year[y]["tu_phe_binh"]), int(pack.per_year[y]["phe_binh"]),
                    int(pack.per_year[y]["de_xuat"])] for y in years])
    scores = Table("Chấm điểm và xếp loại buổi sinh hoạt (chi bộ tự chấm)",
                   ["Năm", "Số buổi chấm", "Điểm bình quân (%)"] + [BAND_LABELS[c] for c in BAND_CODES],
                   [[y, int(pack.per_year[y]["self_scored"]), pack.per_year[y].self_avg]
                    + [pack.per_year[y].bands("self")[c] for c in BAND_CODES] for y in years])
    tables = [held, thematic, attendance, speak, scores]
    tables += [Table(p["title"], p["columns"], p["rows"]) for p in pack.panels]
    if len(pack.cells) > 1:
        tables.append(per_cell_table(pack.cells, pack.per_cell, years, "Từng chi bộ qua các năm"))
    return tables
