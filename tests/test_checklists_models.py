"""Checklist templates as versioned data: immutability of published versions, new versions as
copies, answers pinned to their version, seeding with fixed ids, travel to field nodes, rule sets."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from models import ChangeLog, db
from models.base import SYNCED_MODELS, ValidationError
from sync.merge import apply_record
from models.checklist_seed import seed_checklists, seed_id
from models.checklists import (
    AnswerSet,
    ChecklistTemplate,
    TemplateItem,
    TemplateSection,
    TemplateVersion,
    answer_set_for,
    new_draft,
    publish,
    publish_errors,
    published_for_kind,
    retire,
    set_answer,
    version_tree,
)
from models.meetings import Meeting, set_attendance
from models.rules import RuleSet, rule_set_for, rule_set_from_form, form_from_rule_set
from models.scoring import score_answer_set


@pytest.fixture
def ctx(app):
    """An open database connection inside the app context, with the seeded checklists."""
    with app.app_context(), db.connection_context():
        seed_checklists()
        yield app


def regular():
    """The seeded regular-meeting template."""
    return ChecklistTemplate.get(ChecklistTemplate.code == "thuong-ky-100")


def test_seed_is_idempotent_and_uses_fixed_ids(ctx):
    """Seeding twice makes nothing new; ids derive from codes so every node agrees."""
    assert seed_checklists() == 0
    assert ChecklistTemplate.select().count() == 5
    assert regular().id == seed_id("thuong-ky-100")
    item = TemplateItem.get(TemplateItem.id == seed_id("thuong-ky-100", "v1", "B6"))
    assert item.type == "computed" and item.computed_source == "attendance_rate"
    assert {t.kind for t in ChecklistTemplate.select()} == {"chuan_bi", "thuong_ky", "chuyen_de", "giam_sat", "kiem_tra"}


def test_published_version_refuses_edits(ctx):
    """Items, sections and the version itself cannot change once published."""
    version = published_for_kind("thuong_ky")
    item = TemplateItem.get((TemplateItem.version == version.id) & (TemplateItem.code == "C1"))
    item.points = 10
    with pytest.raises(ValidationError, match="đã ban hành"):
        item.save()
    with pytest.raises(ValidationError):
        item.soft_delete()
    section = TemplateSection.get(TemplateSection.version == version.id)
    section.title = "Khác"
    with pytest.raises(ValidationError):
        section.save()
    with pytest.raises(ValidationError):
        TemplateSection.create(version=version.id, title="Phần mới")
    version.total_points = 50
    with pytest.raises(ValidationError):
        version.save()
    fresh = TemplateVersion.get_by_id(version.id)
    assert fresh.total_points == 100
    assert TemplateItem.get_by_id(item.id).points == 4


def test_new_version_is_a_copy_and_publishing_it_keeps_old_answers(ctx, org):
    """Last year's answers stay on v1 and keep their score; a new meeting's sheet uses v2."""
    old_meeting = Meeting.create(cell=org.cell.id, held_on=dt.date(2024, 3, 5), starts_at=dt.time(14),
                                 ends_at=dt.time(16))
    old_set = answer_set_for(old_meeting, "thuong_ky")
    v1 = TemplateVersion.get_by_id(old_set.version_id)
    for item in TemplateItem.live().where((TemplateItem.version == v1.id) & (TemplateItem.type == "yes_no")):
        set_answer(old_set, item, "1")
    before = score_answer_set(old_set)

    draft = new_draft(regular())
    assert draft.number == 2 and draft.parent_id == v1.id and draft.status == "draft"
    tree = version_tree(draft)
    assert [len(items) for _s, items in tree] == [len(items) for _s, items in version_tree(v1)]
    c1 = next(i for _s, items in tree for i in items if i.code == "C1")
    c1.text = "Thông tin thời sự (sửa đổi 2026)"
    c1.save()
    publish(draft)
    retire(v1)

    assert TemplateVersion.get_by_id(v1.id).status == "retired"
    assert published_for_kind("thuong_ky").id == draft.id
    new_set = answer_set_for(org.meeting, "thuong_ky")
    assert new_set.version_id == draft.id
    again = AnswerSet.get_by_id(old_set.id)
    assert again.version_id == v1.id
    after = score_answer_set(again)
    assert (after.total, after.maximum) == (before.total, before.maximum)
    assert next(r for r in after.items if r.code == "C1").text.startswith("Thông tin thời sự; phổ biến")


def test_only_one_draft_at_a_time(ctx):
    """A second draft would fork the numbering; the editor sends the user to the existing one."""
    new_draft(regular())
    with pytest.raises(ValidationError, match="bản nháp"):
        new_draft(regular())


def test_publish_validation_messages(ctx):
    """Points that do not add up, an empty section and a duplicated code each block publishing."""
    draft = new_draft(regular())
    TemplateSection.create(version=draft.id, position=9, title="Phần trống")
    item = TemplateItem.get((TemplateItem.version == draft.id) & (TemplateItem.code == "C2"))
    item.points = 7
    item.save()
    problems = publish_errors(draft)
    assert "Phần “Phần trống” chưa có tiêu chí nào." in problems
    assert "Tổng điểm các tiêu chí là 103, khác tổng điểm của phiếu (100)." in problems
    with pytest.raises(ValidationError):
        publish(draft)
    other = TemplateItem.get((TemplateItem.version == draft.id) & (TemplateItem.code == "C3"))
    other.code = "C2"
    with pytest.raises(ValidationError, match="C2 đã có"):
        other.save()


@pytest.mark.parametrize("fields, key", [
    ({"type": "text", "points": 2}, "points"),
    ({"type": "score", "points": 0}, "points"),
    ({"type": "oops"}, "type"),
    ({"type": "computed", "computed_source": "weather"}, "computed_source"),
    ({"type": "single_choice", "choices_json": "[]"}, "choices"),
    ({"code": "có dấu"}, "code"),
    ({"text": "  "}, "text"),
])
def test_item_validation(ctx, fields, key):
    """Each malformed item is refused with a message on the right field."""
    draft = new_draft(regular())
    section = version_tree(draft)[0][0]
    values = {"version": draft.id, "section": section.id, "code": "X1", "text": "Tiêu chí", "type": "yes_no",
              "points": 1, **fields}
    with pytest.raises(ValidationError) as info:
        TemplateItem.create(**values)
    assert key in info.value.errors


def test_answers_validate_against_the_item(ctx, org):
    """A score above the maximum, N/A on a mandatory item, or an unknown choice is refused."""
    answers = answer_set_for(org.meeting, "thuong_ky")
    items = {i.code: i for i in TemplateItem.live().where(TemplateItem.version == answers.version_id)}
    with pytest.raises(ValidationError, match="tối đa là 5"):
        set_answer(answers, items["C10"], "7")
    with pytest.raises(ValidationError, match="không áp dụng"):
        set_answer(answers, items["A1"], None, na=True)
    set_answer(answers, items["C9"], None, na=True)
    set_answer(answers, items["C10"], "4,5")
    score = score_answer_set(answers)
    assert score.maximum == 98
    assert next(r for r in score.items if r.code == "C10").awarded == 4.5


def test_score_uses_meeting_facts_and_pinned_rule_set(ctx, org):
    """Attendance and duration come from the meeting record; its pinned rule set judges them."""
    meeting = org.meeting
    meeting.ends_at = dt.time(15, 0)  # 60 minutes
    meeting.save()
    for member in org.members[:6]:
        set_attendance(meeting, member.id, "present")
    answers = answer_set_for(meeting, "thuong_ky")
    result = score_answer_set(answers)
    reasons = {f.code: f.reason for f in result.failed}
    assert reasons["D5"] == "Thời lượng 60 phút — chưa đạt (tối thiểu 90 phút)."
    assert "B6" not in reasons  # 6 of 7 counted = 85,7% > 85%
    assert "B5" not in reasons


def test_templates_travel_to_every_node_and_apply_in_any_order(ctx):
    """The outbox has every template record with scope '*'; a field node applies them even when a
    published version arrives before its items (immutability is a local-write rule)."""
    rows = list(ChangeLog.select().where(ChangeLog.table.in_(
        ["checklist_template", "template_version", "template_section", "template_item"])).order_by(ChangeLog.seq))
    assert rows and {r.scope for r in rows} == {"*"}
    latest = {}
    for row in rows:
        latest[(row.table, row.record_id)] = row
    payloads = [(r.table, SYNCED_MODELS[r.table].get_by_id(r.record_id).to_wire()) for r in latest.values()]
    # Wipe the template tables as a fresh field node would have them, then apply.
    for table in ("template_item", "template_section", "template_version", "checklist_template"):
        db.execute_sql(f"DELETE FROM {table}")
    order = {"checklist_template": 0, "template_version": 1, "template_section": 2, "template_item": 3}
    with db.atomic():
        for table, payload in sorted(payloads, key=lambda p: order[p[0]]):
            assert apply_record(SYNCED_MODELS[table], payload, origin="central")
    assert TemplateItem.select().count() == sum(1 for t, _ in payloads if t == "template_item")
    assert published_for_kind("thuong_ky").status == "published"


def test_rule_sets_have_the_issue_parameters(ctx):
    """Both seeded rule sets carry every parameter the issue lists, chosen by date."""
    old, new = rule_set_for(dt.date(2025, 10, 27)), rule_set_for(dt.date(2025, 10, 28))
    assert (old.code, new.code) == ("12-HD/BTCTW", "42-HD/BTCTW")
    for rules in (old, new):
        p = rules.params
        assert (p["meeting_min_minutes"], p["combined_min_minutes"], p["attendance_threshold_pct"]) == (90, 120, 85)
        assert (p["max_consecutive_excused"], p["thematic_per_quarter"], p["probation_months"]) == (3, 1, 12)
        assert [b["min"] for b in p["score_bands"]] == [90, 70, 50, 0]
        assert p["annual_rating_bands"] == {"excellent": 90, "good": 70, "complete": 50}
        assert p["excellent_quota_pct_of_good"] == 20 and p["absence_review_months"] == 3


def test_committee_rule_set_from_form_is_chosen_for_its_cells(ctx, org):
    """A provincial set added through the form wins over the national one for that committee only."""
    form = form_from_rule_set(RuleSet.get(RuleSet.code == "42-HD/BTCTW"))
    form.update(code="QD-27-TU", title="Biểu 1, QĐ 27-QĐ/TU", effective_from="01/01/2026",
                organisation=org.organisation.id, band_tot="95")
    rules, errors = rule_set_from_form(form)
    assert errors == {}
    rules.save()
    assert rule_set_for(dt.date(2026, 2, 1), org.organisation.id).code == "QD-27-TU"
    assert rule_set_for(dt.date(2026, 2, 1)).code == "42-HD/BTCTW"
    assert rules.params["score_bands"][0]["min"] == 95
    meeting = Meeting.create(cell=org.cell.id, held_on=dt.date(2026, 2, 5))
    assert meeting.rule_set_id == rules.id


@pytest.mark.parametrize("changes, field", [
    ({"code": ""}, "code"),
    ({"code": "42-HD/BTCTW"}, "code"),
    ({"effective_from": "32/13/2026"}, "effective_from"),
    ({"effective_to": "01/01/2020"}, "effective_to"),
    ({"attendance_threshold_pct": "120"}, "attendance_threshold_pct"),
    ({"meeting_min_minutes": "abc"}, "meeting_min_minutes"),
    ({"band_kha": "95"}, "band_kha"),
    ({"band_kem": "10"}, "band_kem"),
    ({"annual_good": "95"}, "annual_good"),
])
def test_rule_set_form_validation(ctx, changes, field):
    """Each bad value is refused with a Vietnamese message on its own field."""
    form = form_from_rule_set(RuleSet.get(RuleSet.code == "42-HD/BTCTW"))
    form.update({"code": "MOI", "title": "Bộ mới", "effective_from": "01/01/2026", **changes})
    rules, errors = rule_set_from_form(form)
    assert rules is None and field in errors
    assert any(ord(ch) > 127 for ch in errors[field])
