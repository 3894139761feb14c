"""Rule sets: the thresholds a meeting is judged by, as dated, versioned data.

The rule set in force is chosen by the meeting's date; each meeting keeps the id of the one it was
held under. Parameters live in a JSON document so a Party committee can add its own set without a
developer. `SEED_RULE_SETS` holds the two national guidelines known today. `PARAM_SPECS` names every
parameter with its Vietnamese label and kind; `rule_set_from_form()` turns the admin form into a
validated RuleSet (every error keyed by form field, in Vietnamese), so the screen stays thin.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

from peewee import CharField, DateField, ForeignKeyField, TextField

from .base import SyncedModel, ValidationError, register
from .org import Organisation


@register
class RuleSet(SyncedModel):
    """A dated set of thresholds (minutes, attendance, bands…) judged against meetings."""

    code = CharField(max_length=60, unique=True)
    title = CharField(max_length=200)
    effective_from = DateField()
    effective_to = DateField(null=True)
    organisation = ForeignKeyField(Organisation, null=True, backref="rule_sets", on_delete="RESTRICT")
    params_json = TextField(default="{}")

    class Meta:
        table_name = "rule_set"

    @property
    def params(self) -> dict[str, Any]:
        """The parameters as a dict."""
        return json.loads(self.params_json or "{}")

    def param(self, name: str) -> Any:
        """One parameter; a KeyError names the missing parameter rather than guessing a default."""
        return self.params[name]

    def clean(self) -> None:
        """Code, title and a valid date range required; params must be a JSON object."""
        errors = {}
        if not (self.code or "").strip():
            errors["code"] = "Vui lòng nhập mã bộ quy tắc."
        if not (self.title or "").strip():
            errors["title"] = "Vui lòng nhập tên bộ quy tắc."
        if self.effective_to and self.effective_from and self.effective_to < self.effective_from:
            errors["effective_to"] = "Ngày hết hiệu lực phải sau ngày bắt đầu hiệu lực."
        try:
            if not isinstance(json.loads(self.params_json or "{}"), dict):
                raise ValueError
        except ValueError:
            errors["params_json"] = "Tham số phải là một đối tượng JSON."
        if errors:
            raise ValidationError(errors)


def rule_set_for(day: dt.date, organisation_id: str | None = None) -> RuleSet | None:
    """The rule set in force on `day`: the committee's own if it has one, else the national one."""
    query = RuleSet.live().where(
        (RuleSet.effective_from <= day)
        & (RuleSet.effective_to.is_null() | (RuleSet.effective_to >= day))
    )
    candidates = list(query.order_by(RuleSet.effective_from.desc()))
    own = [r for r in candidates if organisation_id and r.organisation_id == organisation_id]
    national = [r for r in candidates if r.organisation_id is None]
    return (own or national or [None])[0]


_COMMON = {
    "meeting_min_minutes": 90,
    "combined_min_minutes": 120,
    "attendance_threshold_pct": 85,
    "attendance_must_exceed": True,
    "max_consecutive_excused": 3,
    "thematic_per_quarter": 1,
    "score_bands": [
        {"code": "tot", "label": "Tốt", "min": 90},
        {"code": "kha", "label": "Khá", "min": 70},
        {"code": "trung_binh", "label": "Trung bình", "min": 50},
        {"code": "kem", "label": "Kém", "min": 0},
    ],
    "probation_months": 12,
    "absence_review_months": 3,
    # [I] Inferred from "nhiều đảng viên phát biểu" and local sheets; editable per committee.
    "speakers_min_pct": 50,
    "self_criticism_min": 1,
    # Phú Thọ: an annual "Tốt" needs at least 7 meetings rated Tốt and all others Khá or better.
    "annual_tot_min_good_meetings": 7,
    "full_members_needing_committee": 9,
    "max_committee_size": 7,
    # [I] A resolution is adopted when more than half of the full members present vote for it.
    "vote_pass_pct": 50,
}

SEED_RULE_SETS = [
    {
        "id": "0190a000-0000-7000-8000-000000000012",
        "code": "12-HD/BTCTW",
        "title": "12-HD/BTCTW (06/7/2018)",
        "effective_from": dt.date(2018, 7, 6),
        "effective_to": dt.date(2025, 10, 27),
        "params": {**_COMMON, "annual_rating_bands": {"excellent": 90, "good": 70, "complete": 50},
                   "excellent_quota_pct_of_good": 20, "rating_regulation": "124-QĐ/TW"},
    },
    {
        "id": "0190a000-0000-7000-8000-000000000042",
        "code": "42-HD/BTCTW",
        "title": "42-HD/BTCTW (28/10/2025)",
        "effective_from": dt.date(2025, 10, 28),
        "effective_to": None,
        "params": {**_COMMON, "annual_rating_bands": {"excellent": 90, "good": 70, "complete": 50},
                   "excellent_quota_pct_of_good": 20, "rating_regulation": "366-QĐ/TW"},
    },
]


def seed_rule_sets() -> int:
    """Create the national rule sets that are missing (fixed ids, so every node agrees). Return count."""
    made = 0
    for spec in SEED_RULE_SETS:
        existing = RuleSet.get_or_none(RuleSet.id == spec["id"])
        if existing is not None:
            # Parameters added in a later release are filled in; values already there are kept.
            params = existing.params
            missing = {k: v for k, v in spec["params"].items() if k not in params}
            if missing:
                existing.params_json = json.dumps({**params, **missing}, ensure_ascii=False)
                existing.save()
            continue
        if RuleSet.get_or_none(RuleSet.code == spec["code"]):
            continue
        RuleSet.create(
            id=spec["id"], code=spec["code"], title=spec["title"],
            effective_from=spec["effective_from"], effective_to=spec["effective_to"],
            params_json=json.dumps(spec["params"], ensure_ascii=False),
        )
        made += 1
    return made


# name -> (Vietnamese label, kind). Kinds: int, pct (0–100), bool, bands, annual, text.
PARAM_SPECS: dict[str, tuple[str, str]] = {
    "meeting_min_minutes": ("Thời lượng tối thiểu một buổi sinh hoạt (phút)", "int"),
    "combined_min_minutes": ("Thời lượng tối thiểu khi kết hợp thường kỳ với chuyên đề (phút)", "int"),
    "attendance_threshold_pct": ("Ngưỡng tỷ lệ đảng viên dự (%), không tính đảng viên miễn sinh hoạt", "pct"),
    "attendance_must_exceed": ("Tỷ lệ dự phải vượt ngưỡng (“trên”, không tính bằng)", "bool"),
    "max_consecutive_excused": ("Số lần vắng có lý do liên tiếp tối đa trong năm", "int"),
    "thematic_per_quarter": ("Số buổi sinh hoạt chuyên đề tối thiểu mỗi quý", "int"),
    "speakers_min_pct": ("Tỷ lệ đảng viên có mặt phát biểu tối thiểu (%)", "pct"),
    "self_criticism_min": ("Số ý kiến tự phê bình, phê bình tối thiểu", "int"),
    "score_bands": ("Xếp loại buổi sinh hoạt theo điểm (% tổng điểm)", "bands"),
    "annual_tot_min_good_meetings": ("Số buổi xếp loại Tốt tối thiểu trong năm để chi bộ đạt Tốt", "int"),
    "annual_rating_bands": ("Mức xếp loại cuối năm (điểm tối thiểu)", "annual"),
    "excellent_quota_pct_of_good": ("Số Hoàn thành xuất sắc tối đa so với số Hoàn thành tốt (%)", "pct"),
    "rating_regulation": ("Văn bản đánh giá, xếp loại cuối năm", "text"),
    "probation_months": ("Thời gian dự bị (tháng)", "int"),
    "absence_review_months": ("Số tháng bỏ sinh hoạt phải xem xét", "int"),
    "full_members_needing_committee": ("Số đảng viên chính thức tối thiểu để bầu chi ủy", "int"),
    "max_committee_size": ("Số chi ủy viên tối đa", "int"),
    "vote_pass_pct": ("Biểu quyết thông qua khi số tán thành vượt tỷ lệ này của đảng viên chính thức có mặt (%)", "pct"),
}
ANNUAL_LEVELS = {
    "excellent": "Hoàn thành xuất sắc nhiệm vụ",
    "good": "Hoàn thành tốt nhiệm vụ",
    "complete": "Hoàn thành nhiệm vụ",
}
BAND_CODES = ("tot", "kha", "trung_binh", "kem")
BAND_LABELS = {"tot": "Tốt", "kha": "Khá", "trung_binh": "Trung bình", "kem": "Kém"}


def band_for(percentage: float | None, bands: list[dict]) -> dict | None:
    """The band a percentage falls in: the one with the highest minimum not above it."""
    if percentage is None:
        return None
    for band in sorted(bands, key=lambda b: b["min"], reverse=True):
        if percentage >= band["min"]:
            return band
    return None


def form_from_rule_set(rules: RuleSet | None) -> dict[str, str]:
    """The admin form's fields (all text) filled from a rule set's parameters, or empty."""
    params = rules.params if rules else {}
    form = {"code": "", "title": "", "effective_from": "", "effective_to": "", "organisation": "",
            "based_on": rules.id if rules else ""}
    for name, (_label, kind) in PARAM_SPECS.items():
        value = params.get(name)
        if kind == "bands":
            mins = {b["code"]: b["min"] for b in value or []}
            for code in BAND_CODES:
                form[f"band_{code}"] = _num_text(mins.get(code, ""))
        elif kind == "annual":
            for level in ANNUAL_LEVELS:
                form[f"annual_{level}"] = _num_text((value or {}).get(level, ""))
        elif kind == "bool":
            form[name] = "1" if value else ""
        else:
            form[name] = _num_text(value) if value is not None else ""
    return form


def _num_text(value: Any) -> str:
    """A number as the form shows it: 85 rather than 85.0."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _parse_date(text: str) -> dt.date:
    """dd/mm/yyyy (as shown) or ISO yyyy-mm-dd (as a date input sends)."""
    text = (text or "").strip()
    if "/" in text:
        day, month, year = (int(p) for p in text.split("/"))
        return dt.date(year, month, day)
    return dt.date.fromisoformat(text)


def _parse_number(text: str, low: float, high: float | None) -> float:
    """A number within [low, high]; accepts a Vietnamese decimal comma."""
    value = float((text or "").strip().replace(",", "."))
    if value < low or (high is not None and value > high):
        raise ValueError
    return value


def rule_set_from_form(form: dict[str, str]) -> tuple[RuleSet | None, dict[str, str]]:
    """Build a new (unsaved) RuleSet from the admin form; return it, or None and the errors by field."""
    errors: dict[str, str] = {}
    params: dict[str, Any] = {}
    base = RuleSet.get_or_none(RuleSet.id == form.get("based_on")) if form.get("based_on") else None
    if base:
        params.update(base.params)
    for name, (label, kind) in PARAM_SPECS.items():
        if kind == "bands":
            bands, mins = [], []
            for code in BAND_CODES:
                try:
                    value = _parse_number(form.get(f"band_{code}", ""), 0, 100)
                except ValueError:
                    errors[f"band_{code}"] = f"Điểm tối thiểu mức {BAND_LABELS[code]} phải là số từ 0 đến 100."
                    continue
                mins.append(value)
                bands.append({"code": code, "label": BAND_LABELS[code], "min": _int_if_whole(value)})
            if len(mins) == len(BAND_CODES):
                if any(a <= b for a, b in zip(mins, mins[1:])):
                    errors["band_kha"] = "Điểm tối thiểu phải giảm dần: Tốt > Khá > Trung bình > Kém."
                elif mins[-1] != 0:
                    errors["band_kem"] = "Mức Kém phải bắt đầu từ 0 để mọi điểm đều được xếp loại."
            params[name] = bands
        elif kind == "annual":
            levels = {}
            for level, level_label in ANNUAL_LEVELS.items():
                try:
                    levels[level] = _int_if_whole(_parse_number(form.get(f"annual_{level}", ""), 0, 100))
                except ValueError:
                    errors[f"annual_{level}"] = f"Điểm tối thiểu mức “{level_label}” phải là số từ 0 đến 100."
            if len(levels) == 3 and not levels["excellent"] > levels["good"] > levels["complete"]:
                errors["annual_good"] = "Điểm tối thiểu phải giảm dần: xuất sắc > tốt > hoàn thành."
            params[name] = levels
        elif kind == "bool":
            params[name] = bool(form.get(name))
        elif kind == "text":
            params[name] = (form.get(name) or "").strip()
        else:
            try:
                value = _parse_number(form.get(name, ""), 0, 100 if kind == "pct" else None)
                if kind == "int" and not value.is_integer():
                    raise ValueError
                params[name] = _int_if_whole(value)
            except ValueError:
                errors[name] = (f"“{label}” phải là số từ 0 đến 100." if kind == "pct"
                                else f"“{label}” phải là số nguyên không âm.")
    rules = RuleSet(code=(form.get("code") or "").strip(), title=(form.get("title") or "").strip(),
                    organisation=form.get("organisation") or None,
                    params_json=json.dumps(params, ensure_ascii=False))
    try:
        rules.effective_from = _parse_date(form.get("effective_from", ""))
    except (ValueError, TypeError):
        errors["effective_from"] = "Vui lòng nhập ngày bắt đầu hiệu lực (dd/mm/yyyy)."
    if (form.get("effective_to") or "").strip():
        try:
            rules.effective_to = _parse_date(form["effective_to"])
        except (ValueError, TypeError):
            errors["effective_to"] = "Ngày hết hiệu lực không hợp lệ (dd/mm/yyyy)."
    if rules.code and RuleSet.get_or_none(RuleSet.code == rules.code):
        errors["code"] = "Mã bộ quy tắc này đã có."
    if rules.organisation_id and not Organisation.get_or_none(
            (Organisation.id == rules.organisation_id) & Organisation.deleted_at.is_null()):
        errors["organisation"] = "Tổ chức đảng không tồn tại."
    try:
        rules.clean()
    except ValidationError as exc:
        for key, message in exc.errors.items():
            errors.setdefault(key, message)
    return (None, errors) if errors else (rules, {})


def _int_if_whole(value: float) -> int | float:
    """Store 85 rather than 85.0 so the JSON reads like the document."""
    return int(value) if float(value).is_integer() else value
