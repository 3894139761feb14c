"""The scoring engine: answers + computed meeting facts → total, maximum, percentage, band, failures.

Design: `score_sheet()` is a pure function over plain inputs (the items, the answers keyed by item
code, the computed values keyed by source, and the rule set's parameters), so it is tested without
a database and any sheet version scores the same way on every node. Thresholds for computed items
(attendance, duration, speakers, self-criticism) and the bands come from the rule set, never from
constants here. N/A-aware: an item answered "not applicable" leaves the maximum. A computed item
whose meeting data is missing may be answered by hand; otherwise it scores 0 with "chưa có dữ liệu".
`computed_values(meeting)` gathers the facts from a meeting; `score_answer_set()` wires both to
stored records.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from .rules import band_for


@dataclass
class AnswerValue:
    """An answer as the engine sees it: a value, or not applicable."""

    value: Any = None
    na: bool = False


@dataclass
class ItemResult:
    """How one item scored, with the reason when it fell short."""

    code: str
    text: str
    awarded: float
    possible: float
    na: bool = False
    answered: bool = False
    passed: bool | None = None
    reason: str = ""


@dataclass
class SheetScore:
    """The result of scoring one sheet."""

    total: float = 0.0
    maximum: float = 0.0
    percentage: float | None = None
    band: dict | None = None
    items: list[ItemResult] = field(default_factory=list)
    failed: list[ItemResult] = field(default_factory=list)
    unanswered_required: list[str] = field(default_factory=list)

    @property
    def band_label(self) -> str:
        """The band's Vietnamese label, or a dash."""
        return self.band["label"] if self.band else "—"


def _num(value: float) -> str:
    """85 rather than 85.0, and a decimal comma."""
    value = round(float(value), 1)
    return str(int(value)) if value.is_integer() else str(value).replace(".", ",")


def judge_computed(source: str, value: Any, params: dict, facts: dict) -> tuple[bool | None, str]:
    """Judge one computed fact against the rule set: (passed, Vietnamese explanation)."""
    if value is None:
        return None, "Chưa có dữ liệu."
    try:
        if source == "attendance_rate":
            threshold = float(params["attendance_threshold_pct"])
            exceed = bool(params.get("attendance_must_exceed", True))
            ok = value > threshold if exceed else value >= threshold
            rule = f"{'trên' if exceed else 'tối thiểu'} {_num(threshold)}%"
            return ok, f"Tỷ lệ dự {_num(value)}% — {'đạt' if ok else 'chưa đạt'} ({rule})."
        if source == "duration_minutes":
            combined = bool(facts.get("combined"))
            minimum = float(params["combined_min_minutes" if combined else "meeting_min_minutes"])
            ok = value >= minimum
            return ok, f"Thời lượng {_num(value)} phút — {'đạt' if ok else 'chưa đạt'} (tối thiểu {_num(minimum)} phút)."
        if source == "speakers":
            minimum = float(params["speakers_min_pct"])
            ok = value >= minimum
            return ok, f"{_num(value)}% đảng viên có mặt phát biểu — {'đạt' if ok else 'chưa đạt'} (tối thiểu {_num(minimum)}%)."
        if source == "self_criticism_count":
            minimum = float(params["self_criticism_min"])
            ok = value >= minimum
            return ok, f"{_num(value)} ý kiến tự phê bình, phê bình — {'đạt' if ok else 'chưa đạt'} (tối thiểu {_num(minimum)})."
        if source == "unexcused_count":
            ok = value == 0
            return ok, "Không có đảng viên vắng không lý do." if ok else f"Có {_num(value)} đảng viên vắng không lý do."
        if source == "on_schedule":
            ok = bool(value)
            return ok, "Sinh hoạt đúng ngày cố định." if ok else "Không sinh hoạt đúng ngày cố định của chi bộ."
        if source == "present_count":
            return None, f"Có mặt {_num(value)} đảng viên."
    except KeyError as exc:
        return False, f"Bộ quy tắc thiếu tham số {exc.args[0]}."
    return None, "Nguồn dữ liệu tự tính không được hỗ trợ."


def score_item(item: Any, answer: AnswerValue | None, computed: dict, params: dict) -> ItemResult:
    """Score one item (any object with code, text, type, points, required, choices…)."""
    points = float(item.points or 0)
    result = ItemResult(code=item.code, text=item.text, awarded=0.0, possible=points)
    answer = answer or AnswerValue()
    if answer.na and getattr(item, "allow_na", False):
        result.na, result.possible, result.answered = True, 0.0, True
        return result
    value = answer.value
    kind = item.type
    if kind == "computed":
        fact = computed.get(item.computed_source)
        if fact is None:
            fact = value  # typed by hand when the meeting has no data for it
        passed, reason = judge_computed(item.computed_source, fact, params, computed)
        result.answered = fact is not None
        result.passed, result.reason = passed, reason
        result.awarded = points if passed else 0.0
        if passed is None and fact is not None:
            result.awarded, result.possible = 0.0, (points if points else 0.0)
            result.passed = None if not points else False
        return _finish(item, result)
    result.answered = value is not None and value != "" and value != []
    if not result.answered:
        result.reason = "Chưa trả lời."
        return _finish(item, result)
    if kind == "yes_no":
        result.awarded = points if value is True else 0.0
        result.passed = value is True
        if value is not True:
            result.reason = "Trả lời: Không."
    elif kind == "count":
        minimum = float(item.min_value) if getattr(item, "min_value", None) is not None else 1.0
        ok = float(value) >= minimum
        result.awarded = points if ok else 0.0
        result.passed = ok if points else None
        if points and not ok:
            result.reason = f"Số lượng {_num(value)}, chưa đạt tối thiểu {_num(minimum)}."
    elif kind == "score":
        result.awarded = max(0.0, min(points, float(value)))
        result.passed = result.awarded >= points
        if not result.passed:
            result.reason = f"Đạt {_num(result.awarded)}/{_num(points)} điểm."
    elif kind in ("single_choice", "multi_choice"):
        chosen = {str(v) for v in (value if isinstance(value, list) else [value])}
        got = sum(float(c.get("points") or 0) for c in item.choices if str(c.get("value")) in chosen)
        result.awarded = max(0.0, min(points, got))
        result.passed = result.awarded >= points if points else None
        if points and not result.passed:
            labels = ", ".join(str(c.get("label")) for c in item.choices if str(c.get("value")) in chosen)
            result.reason = f"Chọn “{labels}”: {_num(result.awarded)}/{_num(points)} điểm."
    return _finish(item, result)


def _finish(item: Any, result: ItemResult) -> ItemResult:
    """Mark a required item left unanswered as failed."""
    if not result.answered and getattr(item, "required", False) and not result.reason:
        result.reason = "Chưa trả lời."
    return result


def score_sheet(items: Iterable[Any], answers: dict[str, AnswerValue], computed: dict | None,
                params: dict) -> SheetScore:
    """Score a sheet: total, maximum (N/A items excluded), percentage, band from the rule set, failures."""
    computed = computed or {}
    sheet = SheetScore()
    for item in items:
        result = score_item(item, answers.get(item.code), computed, params)
        sheet.items.append(result)
        sheet.total += result.awarded
        sheet.maximum += result.possible
        if result.na:
            continue
        short = result.possible > 0 and result.awarded < result.possible
        missing_required = getattr(item, "required", False) and not result.answered
        if short or missing_required or result.passed is False:
            if not result.reason:
                result.reason = f"Đạt {_num(result.awarded)}/{_num(result.possible)} điểm."
            sheet.failed.append(result)
        if missing_required:
            sheet.unanswered_required.append(item.code)
    sheet.total = round(sheet.total, 2)
    sheet.maximum = round(sheet.maximum, 2)
    if sheet.maximum > 0:
        sheet.percentage = round(100.0 * sheet.total / sheet.maximum, 2)
        sheet.band = band_for(sheet.percentage, params.get("score_bands") or [])
    return sheet


def computed_values(meeting) -> dict[str, Any]:
    """The facts a meeting's record gives for computed items (None where the data is not kept yet)."""
    from .meeting_record import contribution_summary
    from .meetings import attendance_summary, duration_minutes
    from .org import Cell

    summary = attendance_summary(meeting)
    duration = duration_minutes(meeting)
    cell = Cell.get_by_id(meeting.cell_id)
    marked = summary.present + summary.excused + summary.unexcused
    speak = contribution_summary(meeting)
    return {
        "attendance_rate": summary.rate_pct if marked else None,
        "present_count": summary.present if marked else None,
        "unexcused_count": summary.unexcused if marked else None,
        "duration_minutes": duration,
        "on_schedule": meeting.held_on.day == cell.meeting_day,
        "combined": meeting.kind == "combined",
        # From the contributions tapped during the meeting; with none recorded (a meeting kept on
        # paper) they stay open to be typed by hand.
        "speakers": speak.share_pct if speak.total else None,
        "self_criticism_count": speak.self_criticism if speak.total else None,
    }


@dataclass
class Prefilled:
    """An answer the meeting's data gives (the preparation sheet, the meeting record), with its source."""

    value: Any = None
    na: bool = False
    source: str = ""


def prefilled_answers(answer_set, own: dict) -> dict[str, Prefilled]:
    """Answers a scoring sheet takes from what is already recorded, for items it has not answered:
    the preparation sheet's answers (same item codes: A1–A4, A6, A7), the meeting secretary (B10) and
    the superior delegates (B8). The sheet's own answer always wins."""
    from .checklists import AnswerSet, ChecklistTemplate, TemplateVersion, answers_by_code, version_items
    from .meeting_record import guests_of
    from .meetings import Meeting

    if not answer_set.meeting_id or answer_set.role != "self":
        return {}
    version = TemplateVersion.get_by_id(answer_set.version_id)
    if version.template.kind == "chuan_bi":
        return {}
    items = {item.code: item for item in version_items(version)}
    out: dict[str, Prefilled] = {}
    preparation = (AnswerSet.live().join(TemplateVersion).join(ChecklistTemplate)
                   .where((AnswerSet.meeting == answer_set.meeting_id) & (AnswerSet.role == "self")
                          & (ChecklistTemplate.kind == "chuan_bi")).first())
    if preparation is not None:
        for code, row in answers_by_code(preparation).items():
            item = items.get(code)
            if item is not None and code not in own and item.type == row.item.type:
                out[code] = Prefilled(row.value, row.na, "Lấy từ phiếu chuẩn bị của chi ủy.")
    meeting = Meeting.get_by_id(answer_set.meeting_id)
    if "B10" in items and "B10" not in own and meeting.secretary_id:
        out["B10"] = Prefilled(meeting.secretary.full_name, False, "Lấy từ diễn biến buổi sinh hoạt.")
    superiors = [g for g in guests_of(meeting) if g.kind == "superior"]
    if "B8" in items and "B8" not in own and superiors:
        text = "; ".join(f"{g.name}{(' — ' + g.position) if g.position else ''}" for g in superiors)
        out["B8"] = Prefilled(text, False, "Lấy từ danh sách đại biểu của buổi sinh hoạt.")
    return out


def answers_with_prefill(answer_set) -> dict[str, Any]:
    """The set's own answers (rows) plus the prefilled ones, keyed by item code."""
    from .checklists import answers_by_code

    own = answers_by_code(answer_set)
    return {**prefilled_answers(answer_set, own), **own}


def score_answer_set(answer_set) -> SheetScore:
    """Score a stored answer set with its own version's items and its meeting's rule set."""
    from .checklists import TemplateVersion, rule_set_of, version_items
    from .meetings import Meeting

    version = TemplateVersion.get_by_id(answer_set.version_id)
    rows = answers_with_prefill(answer_set)
    answers = {code: AnswerValue(row.value, row.na) for code, row in rows.items()}
    rules = rule_set_of(answer_set)
    computed = computed_values(Meeting.get_by_id(answer_set.meeting_id)) if answer_set.meeting_id else {}
    return score_sheet(version_items(version), answers, computed, rules.params if rules else {})


# -- annual review (366-QĐ/TW): levels and the quota, from the rule set ----------------------------

ANNUAL_LEVEL_ORDER = ("excellent", "good", "complete")


def annual_level(points: float, params: dict) -> str:
    """The annual rating level a 100-point result reaches by score alone ('not_complete' below all)."""
    bands = params["annual_rating_bands"]
    for level in ANNUAL_LEVEL_ORDER:
        if points >= float(bands[level]):
            return level
    return "not_complete"


def excellent_quota(good_count: int, params: dict) -> int:
    """How many may be rated excellent: at most the rule set's share of those rated good (rounded down)."""
    return int(good_count * float(params["excellent_quota_pct_of_good"]) // 100)


def meets_annual_tot(meeting_bands: list[str], params: dict) -> bool:
    """Phú Thọ: a year's meetings earn an annual 'Tốt' when all are Khá or better and enough are Tốt."""
    if not meeting_bands:
        return False
    good = all(code in ("tot", "kha") for code in meeting_bands)
    return good and meeting_bands.count("tot") >= int(params["annual_tot_min_good_meetings"])
