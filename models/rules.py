"""Rule sets: the thresholds a meeting is judged by, as dated, versioned data.

The rule set in force is chosen by the meeting's date; each meeting keeps the id of the one it was
held under. Parameters live in a JSON document so a Party committee can add its own set without a
developer. `SEED_RULE_SETS` holds the two national guidelines known today.
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
    "full_members_needing_committee": 9,
    "max_committee_size": 7,
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
        if RuleSet.get_or_none(RuleSet.id == spec["id"]) or RuleSet.get_or_none(RuleSet.code == spec["code"]):
            continue
        RuleSet.create(
            id=spec["id"], code=spec["code"], title=spec["title"],
            effective_from=spec["effective_from"], effective_to=spec["effective_to"],
            params_json=json.dumps(spec["params"], ensure_ascii=False),
        )
        made += 1
    return made
