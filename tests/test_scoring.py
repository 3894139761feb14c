"""Scoring engine: every seeded sheet scored from answers, N/A handling, bands from the rule set,
and a property test (random answers keep the score within [0, max] and the band matches the rule set)."""
from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import db
from models.checklist_seed import SEED_TEMPLATES, seed_checklists
from models.checklists import ChecklistTemplate, published_version, version_items
from models.rules import band_for, rule_set_for
from models.scoring import AnswerValue, judge_computed, score_sheet


@pytest.fixture
def sheets(app):
    """Seeded templates: code -> (items of the published version, total points); plus the 42-HD params."""
    with app.app_context(), db.connection_context():
        seed_checklists()
        out = {}
        for spec in SEED_TEMPLATES:
            template = ChecklistTemplate.get(ChecklistTemplate.code == spec["code"])
            version = published_version(template)
            out[spec["code"]] = (version_items(version), version.total_points)
        params = rule_set_for(dt.date(2026, 1, 15)).params
        old_params = rule_set_for(dt.date(2024, 1, 15)).params
    return out, params, old_params


def perfect_answers(items):
    """Answers that earn every point of a sheet."""
    answers = {}
    for item in items:
        if item.type == "yes_no":
            answers[item.code] = AnswerValue(True)
        elif item.type == "score":
            answers[item.code] = AnswerValue(item.points)
        elif item.type == "count":
            answers[item.code] = AnswerValue(int(item.min_value or 1))
        elif item.type in ("single_choice", "multi_choice"):
            best = max(item.choices, key=lambda c: c["points"])
            answers[item.code] = AnswerValue(best["value"] if item.type == "single_choice" else [best["value"]])
        elif item.type == "text":
            answers[item.code] = AnswerValue("Nguyễn Văn An, Bí thư")
        elif item.type == "datetime":
            answers[item.code] = AnswerValue("2026-01-05T14:00")
    return answers


GOOD_FACTS = {"attendance_rate": 92.0, "unexcused_count": 0, "present_count": 22, "duration_minutes": 120,
              "on_schedule": True, "combined": False, "speakers": 60.0, "self_criticism_count": 3}


@pytest.mark.parametrize("code", [spec["code"] for spec in SEED_TEMPLATES])
def test_every_seeded_sheet_scores_full_marks_and_nothing_fails(sheets, code):
    """A meeting that did everything right scores the whole sheet and lists no failed criterion."""
    by_code, params, _old = sheets
    items, total = by_code[code]
    result = score_sheet(items, perfect_answers(items), GOOD_FACTS, params)
    assert result.total == total
    assert result.maximum == total
    assert result.failed == []
    if total:
        assert result.percentage == 100 and result.band["label"] == "Tốt"
    else:
        assert result.percentage is None and result.band is None


@pytest.mark.parametrize("code", [spec["code"] for spec in SEED_TEMPLATES])
def test_every_seeded_sheet_with_no_answers_scores_zero_and_lists_required(sheets, code):
    """An empty sheet scores 0 and names every required item as unanswered."""
    by_code, params, _old = sheets
    items, total = by_code[code]
    result = score_sheet(items, {}, {}, params)
    assert result.total == 0
    required = [i.code for i in items if i.required]
    assert result.unanswered_required == required
    if total:
        assert result.band["label"] == "Kém"
        assert {f.code for f in result.failed} == {i.code for i in items if i.points > 0} | set(required)


def test_regular_sheet_parts_add_up_to_the_phu_tho_split(sheets):
    """Preparation 15, attendance 20, conduct 45, closing 20."""
    from models.checklists import version_tree

    with db.connection_context():
        template = ChecklistTemplate.get(ChecklistTemplate.code == "thuong-ky-100")
        tree = version_tree(published_version(template))
    assert [sum(i.points for i in items) for _s, items in tree] == [15, 20, 45, 20]


def test_regular_sheet_failures_carry_reasons_from_the_rule_set(sheets):
    """Low attendance, a short meeting and a 'no' answer each appear with a Vietnamese reason."""
    by_code, params, _old = sheets
    items, _total = by_code["thuong-ky-100"]
    answers = perfect_answers(items)
    answers["C1"] = AnswerValue(False)
    answers["C10"] = AnswerValue(3)
    facts = {**GOOD_FACTS, "attendance_rate": 80.0, "duration_minutes": 75}
    result = score_sheet(items, answers, facts, params)
    reasons = {f.code: f.reason for f in result.failed}
    assert result.total == 100 - 10 - 5 - 4 - 2
    assert result.band["label"] == "Khá"
    assert reasons["B6"] == "Tỷ lệ dự 80% — chưa đạt (trên 85%)."
    assert reasons["D5"] == "Thời lượng 75 phút — chưa đạt (tối thiểu 90 phút)."
    assert reasons["C1"] == "Trả lời: Không."
    assert reasons["C10"] == "Đạt 3/5 điểm."


def test_exactly_85_percent_fails_because_the_rule_says_over(sheets):
    """12-HD says 'trên 85%': 85% itself does not pass; a rule set saying 'at least' would pass it."""
    _by_code, params, _old = sheets
    assert judge_computed("attendance_rate", 85.0, params, {})[0] is False
    assert judge_computed("attendance_rate", 85.0, {**params, "attendance_must_exceed": False}, {})[0] is True


def test_combined_meeting_needs_120_minutes(sheets):
    """A regular meeting combined with a thematic one is judged by the longer minimum."""
    _by_code, params, _old = sheets
    assert judge_computed("duration_minutes", 100, params, {"combined": False})[0] is True
    passed, reason = judge_computed("duration_minutes", 100, params, {"combined": True})
    assert passed is False and "120 phút" in reason


def test_not_applicable_items_leave_the_maximum(sheets):
    """C5, C9 and C12 answered N/A: the maximum drops by their points and the percentage stays 100."""
    by_code, params, _old = sheets
    items, _total = by_code["thuong-ky-100"]
    answers = perfect_answers(items)
    for code in ("C5", "C9", "C12"):
        answers[code] = AnswerValue(None, na=True)
    result = score_sheet(items, answers, GOOD_FACTS, params)
    assert result.maximum == 100 - 2 - 2 - 2
    assert result.total == result.maximum
    assert result.percentage == 100
    assert result.failed == []


def test_na_is_ignored_on_items_that_do_not_allow_it(sheets):
    """Marking a mandatory criterion N/A cannot shrink the maximum."""
    by_code, params, _old = sheets
    items, _total = by_code["thuong-ky-100"]
    answers = perfect_answers(items)
    answers["A1"] = AnswerValue(None, na=True)
    result = score_sheet(items, answers, GOOD_FACTS, params)
    assert result.maximum == 100 and result.total == 97
    assert "A1" in {f.code for f in result.failed}


def test_computed_item_without_meeting_data_can_be_typed_by_hand(sheets):
    """Speakers are not tallied on this node yet: a typed share is judged by the rule set instead."""
    by_code, params, _old = sheets
    items, _total = by_code["thuong-ky-100"]
    answers = perfect_answers(items)
    facts = {**GOOD_FACTS, "speakers": None, "self_criticism_count": None}
    missing = score_sheet(items, answers, facts, params)
    assert {f.code: f.reason for f in missing.failed}["C7"] == "Chưa có dữ liệu."
    answers["C7"] = AnswerValue(40)
    answers["C8"] = AnswerValue(2)
    typed = score_sheet(items, answers, facts, params)
    assert {f.code for f in typed.failed} == {"C7"}
    assert typed.total == 94


def test_band_follows_the_rule_set_not_a_constant(sheets):
    """A committee's own bands (Tốt from 95) change the verdict of the same answers."""
    by_code, params, _old = sheets
    items, _total = by_code["thuong-ky-100"]
    answers = perfect_answers(items)
    answers["C10"] = AnswerValue(2)  # 97 points
    assert score_sheet(items, answers, GOOD_FACTS, params).band["code"] == "tot"
    strict = {**params, "score_bands": [{"code": "tot", "label": "Tốt", "min": 98},
                                        {"code": "kha", "label": "Khá", "min": 75},
                                        {"code": "trung_binh", "label": "Trung bình", "min": 50},
                                        {"code": "kem", "label": "Kém", "min": 0}]}
    assert score_sheet(items, answers, GOOD_FACTS, strict).band["code"] == "kha"


def test_missing_parameter_is_named_not_guessed(sheets):
    """A committee rule set without a threshold makes the item fail with the parameter's name."""
    passed, reason = judge_computed("speakers", 70, {}, {})
    assert passed is False and "speakers_min_pct" in reason


def answer_strategy(item):
    """Any answer an item could receive, including N/A and no answer."""
    base = {
        "yes_no": st.booleans(),
        "count": st.integers(min_value=0, max_value=50),
        "score": st.floats(min_value=0, max_value=max(item.points, 0.0), allow_nan=False),
        "single_choice": st.sampled_from([c["value"] for c in item.choices] or ["1"]),
        "multi_choice": st.lists(st.sampled_from([c["value"] for c in item.choices] or ["1"]), unique=True),
        "text": st.text(max_size=20),
        "datetime": st.just("2026-01-05T14:00"),
        "computed": st.one_of(st.none(), st.floats(min_value=0, max_value=300, allow_nan=False), st.booleans()),
    }[item.type]
    return st.one_of(st.none(), st.builds(AnswerValue, base, st.booleans()))


FACTS = st.fixed_dictionaries({
    "attendance_rate": st.one_of(st.none(), st.floats(min_value=0, max_value=100, allow_nan=False)),
    "unexcused_count": st.one_of(st.none(), st.integers(min_value=0, max_value=10)),
    "present_count": st.integers(min_value=0, max_value=40),
    "duration_minutes": st.one_of(st.none(), st.floats(min_value=0, max_value=300, allow_nan=False)),
    "on_schedule": st.booleans(),
    "combined": st.booleans(),
    "speakers": st.one_of(st.none(), st.floats(min_value=0, max_value=100, allow_nan=False)),
    "self_criticism_count": st.one_of(st.none(), st.integers(min_value=0, max_value=10)),
})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_random_answers_stay_in_range_and_band_matches_rules(sheets, data):
    """For any answers to any seeded sheet: 0 ≤ total ≤ max ≤ sheet total, and the band is the rule set's."""
    by_code, params, old_params = sheets
    code = data.draw(st.sampled_from(sorted(by_code)))
    rules = data.draw(st.sampled_from([params, old_params]))
    items, sheet_total = by_code[code]
    answers = {}
    for item in items:
        answer = data.draw(answer_strategy(item))
        if answer is not None:
            answers[item.code] = answer
    result = score_sheet(items, answers, data.draw(FACTS), rules)
    assert 0 <= result.total <= result.maximum + 1e-9
    assert result.maximum <= sheet_total + 1e-9
    assert all(0 <= r.awarded <= r.possible + 1e-9 for r in result.items)
    if result.maximum > 0:
        expected = band_for(100 * result.total / result.maximum, rules["score_bands"])
        assert result.band == expected
        assert result.band is not None
        above = [b for b in rules["score_bands"] if b["min"] > result.band["min"]]
        assert all(result.percentage < b["min"] for b in above)
    else:
        assert result.band is None


@pytest.mark.parametrize("points, level", [(95, "excellent"), (90, "excellent"), (89.9, "good"), (70, "good"),
                                           (69, "complete"), (50, "complete"), (49.5, "not_complete")])
def test_annual_level_follows_366_bands(sheets, points, level):
    """366-QĐ/TW: 90 / 70 / 50 from the rule set."""
    from models.scoring import annual_level

    _by_code, params, _old = sheets
    assert annual_level(points, params) == level


def test_excellent_quota_and_annual_tot_come_from_the_rule_set(sheets):
    """At most 20% of 'good' may be 'excellent'; 7 Tốt meetings and none below Khá make an annual Tốt."""
    from models.scoring import excellent_quota, meets_annual_tot

    _by_code, params, _old = sheets
    assert [excellent_quota(n, params) for n in (0, 4, 5, 14, 15)] == [0, 0, 1, 2, 3]
    assert excellent_quota(10, {**params, "excellent_quota_pct_of_good": 30}) == 3
    year = ["tot"] * 7 + ["kha"] * 5
    assert meets_annual_tot(year, params) is True
    assert meets_annual_tot(["tot"] * 6 + ["kha"] * 6, params) is False
    assert meets_annual_tot(["tot"] * 11 + ["trung_binh"], params) is False
