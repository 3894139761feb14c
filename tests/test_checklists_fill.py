"""Filling a sheet for a meeting: one tap per answer with the score bar updated in place, roles, the
supervisor's score beside the cell's, and old meetings keeping the version they were scored with."""
from __future__ import annotations

import datetime as dt
import re

from models import db
from models.checklists import (
    AnswerSet,
    TemplateItem,
    TemplateVersion,
    new_draft,
    publish,
    published_for_kind,
    retire,
    version_tree,
)
from models.meetings import Meeting


def item_id(app, answer_set_id, code, kind="thuong_ky"):
    """The id of an item of the answer set's version (the published one while the sheet is not started)."""
    with app.app_context(), db.connection_context():
        answer_set = AnswerSet.get_or_none(AnswerSet.id == answer_set_id)
        version_id = answer_set.version_id if answer_set else published_for_kind(kind).id
        return TemplateItem.get((TemplateItem.version == version_id) & (TemplateItem.code == code)).id


def open_sheet(client, meeting_id, kind="thuong_ky", role="self"):
    """GET the sheet page and return (html, answer set id)."""
    html = client.get(f"/meetings/{meeting_id}/sheets/{kind}?role={role}").get_data(as_text=True)
    match = re.search(r'/answer-sets/([0-9a-f-]{36})/items/', html)
    return html, match.group(1) if match else None


def test_secretary_fills_the_sheet_tap_by_tap(seeded, app, client, auth):
    """Each tap answers the question fragment and an out-of-band score bar; bad values get 422."""
    auth.login("bithu1")
    html, set_id = open_sheet(client, seeded.meeting.id)
    assert "Phiếu chấm điểm sinh hoạt chi bộ thường kỳ (100 điểm)" in html and "phiên bản 1" in html
    assert 'data-testid="score-total">0/100' in html
    auth.token(f"/meetings/{seeded.meeting.id}/sheets/thuong_ky")
    tap = auth.htmx_post(f"/answer-sets/{set_id}/items/{item_id(app, set_id, 'A1')}", data={"value": "1"})
    body = tap.get_data(as_text=True)
    assert tap.status_code == 200
    assert 'id="q-' in body and 'aria-pressed="true"' in body and "3/3 điểm" in body
    assert 'hx-swap-oob="true"' in body and 'data-testid="score-total">3/100' in body
    score = auth.htmx_post(f"/answer-sets/{set_id}/items/{item_id(app, set_id, 'C10')}", data={"value": "4"})
    assert 'data-testid="score-total">7/100' in score.get_data(as_text=True)
    too_high = auth.htmx_post(f"/answer-sets/{set_id}/items/{item_id(app, set_id, 'C10')}", data={"value": "9"})
    assert too_high.status_code == 422 and "Điểm tối đa là 5." in too_high.get_data(as_text=True)
    na = auth.htmx_post(f"/answer-sets/{set_id}/items/{item_id(app, set_id, 'C9')}", data={"na": "1"})
    assert 'data-testid="score-total">7/98' in na.get_data(as_text=True)
    # A reload shows the same answers: every tap was saved.
    html, again = open_sheet(client, seeded.meeting.id)
    assert again == set_id and 'data-testid="score-total">7/98' in html


def test_member_reads_but_cannot_fill(seeded, app, client, auth):
    """A party member sees 'not scored yet' and cannot write; once scored, they can read it."""
    auth.login("dangvien1")
    html, set_id = open_sheet(client, seeded.meeting.id)
    assert set_id is None and "Phiếu này chưa được chấm." in html
    auth.logout()
    auth.login("bithu1")
    _html, set_id = open_sheet(client, seeded.meeting.id)
    # Opening the sheet wrote nothing; the member still sees it unscored until the first tap.
    auth.logout()
    auth.login("dangvien1")
    assert "Phiếu này chưa được chấm." in open_sheet(client, seeded.meeting.id)[0]
    auth.logout()
    auth.login("bithu1")
    auth.token(f"/meetings/{seeded.meeting.id}/sheets/thuong_ky")
    assert auth.htmx_post(f"/answer-sets/{set_id}/items/{item_id(app, set_id, 'A1')}",
                          data={"value": "1"}).status_code == 200
    auth.logout()
    auth.login("dangvien1")
    html, _ = open_sheet(client, seeded.meeting.id)
    assert "disabled" in html
    auth.token("/")
    assert auth.htmx_post(f"/answer-sets/{set_id}/items/{item_id(app, set_id, 'A1')}",
                          data={"value": "1"}).status_code == 403
    auth.logout()
    auth.login("bithu2")
    assert client.get(f"/meetings/{seeded.meeting.id}/sheets/thuong_ky").status_code == 403


def test_supervisor_scores_beside_the_cell(seeded, app, client, auth):
    """The supervisor's own sheet shows the cell's self-score beside it."""
    auth.login("bithu1")
    _html, self_id = open_sheet(client, seeded.meeting.id)
    auth.token("/")
    auth.htmx_post(f"/answer-sets/{self_id}/items/{item_id(app, self_id, 'A1')}", data={"value": "1"})
    auth.logout()
    auth.login("btv")
    html, sup_id = open_sheet(client, seeded.meeting.id, role="supervisor")
    assert sup_id != self_id and "Cấp ủy viên cấp trên chấm" in html
    assert "Chi ủy, Bí thư chi bộ chấm: 3/100" in html
    assert "Chi ủy, Bí thư chi bộ chấm: 3/3" in html
    auth.token("/")
    answer = auth.htmx_post(f"/answer-sets/{sup_id}/items/{item_id(app, sup_id, 'A1')}", data={"value": "0"})
    assert answer.status_code == 200 and 'data-testid="score-total">0/100' in answer.get_data(as_text=True)
    html, _ = open_sheet(client, seeded.meeting.id, kind="giam_sat", role="supervisor")
    assert "Phiếu giám sát của cấp ủy viên cấp trên" in html and "Danh mục kiểm tra (không chấm điểm)" in html


def test_old_meeting_keeps_its_version_after_a_new_one_is_published(seeded, app, client, auth):
    """Last year's meeting still shows v1 and its score; a new meeting's sheet is made with v2."""
    with app.app_context(), db.connection_context():
        last_year = Meeting.create(cell=seeded.cell.id, held_on=dt.date(2025, 3, 6),
                                   starts_at=dt.time(14), ends_at=dt.time(16))
    auth.login("bithu1")
    _html, old_set = open_sheet(client, last_year.id)
    auth.token("/")
    for code in ("A1", "A3", "C1"):
        auth.htmx_post(f"/answer-sets/{old_set}/items/{item_id(app, old_set, code)}", data={"value": "1"})
    before, _ = open_sheet(client, last_year.id)
    total_before = re.search(r'data-testid="score-total">([^<]+)<', before).group(1)
    with app.app_context(), db.connection_context():
        v1 = published_for_kind("thuong_ky")
        draft = new_draft(v1.template)
        c1 = next(i for _s, items in version_tree(draft) for i in items if i.code == "C1")
        c1.text = "Thông tin thời sự, quán triệt Chỉ thị 50-CT/TW"
        c1.save()
        publish(draft)
        retire(TemplateVersion.get_by_id(v1.id))
    after, again = open_sheet(client, last_year.id)
    assert again == old_set and "phiên bản 1" in after and "đã có phiên bản mới" in after
    assert re.search(r'data-testid="score-total">([^<]+)<', after).group(1) == total_before == "15/100"
    assert "Thông tin thời sự; phổ biến, quán triệt văn bản cấp trên" in after
    fresh, new_set = open_sheet(client, seeded.meeting.id)
    assert "phiên bản 2" in fresh and "Chỉ thị 50-CT/TW" in fresh
    auth.htmx_post(f"/answer-sets/{new_set}/items/{item_id(app, new_set, 'A1')}", data={"value": "1"})
    with app.app_context(), db.connection_context():
        assert AnswerSet.get_by_id(new_set).version_id == draft.id


def test_multi_choice_toggles_and_datetime_text_answers(seeded, app, client, auth):
    """A committee's own sheet with multi-choice, date/time and text items fills tap by tap."""
    import json

    from models.checklists import ChecklistTemplate, TemplateSection

    with app.app_context(), db.connection_context():
        template = ChecklistTemplate.create(code="bieu-rieng", name="Biểu riêng của Đảng ủy", kind="thuong_ky")
        draft = new_draft(template, total_points=6)
        section = TemplateSection.create(version=draft.id, title="Nội dung", position=1)
        choices = [{"value": "1", "label": "Thời sự", "points": 2}, {"value": "2", "label": "Nghị quyết", "points": 2},
                   {"value": "3", "label": "Tự phê bình", "points": 2}]
        TemplateItem.create(version=draft.id, section=section.id, position=1, code="M1", text="Nội dung đã sinh hoạt",
                            type="multi_choice", points=6, choices_json=json.dumps(choices, ensure_ascii=False))
        TemplateItem.create(version=draft.id, section=section.id, position=2, code="M2", text="Giờ khai mạc",
                            type="datetime", points=0)
        TemplateItem.create(version=draft.id, section=section.id, position=3, code="M3", text="Thư ký", type="text",
                            points=0, required=True)
        publish(draft)
    auth.login("bithu1")
    html, set_id = open_sheet(client, seeded.meeting.id)
    assert "Biểu riêng của Đảng ủy" in html
    auth.token("/")
    url = f"/answer-sets/{set_id}/items/{item_id(app, set_id, 'M1')}"
    auth.htmx_post(url, data={"toggle": "1"})
    both = auth.htmx_post(url, data={"toggle": "3"})
    assert 'data-testid="score-total">4/6' in both.get_data(as_text=True)
    one = auth.htmx_post(url, data={"toggle": "1"})
    assert 'data-testid="score-total">2/6' in one.get_data(as_text=True)
    when = auth.htmx_post(f"/answer-sets/{set_id}/items/{item_id(app, set_id, 'M2')}", data={"value": "05/01/2026 14:00"})
    # Typed and shown dd/mm/yyyy HH:MM (no browser picker, which shows mm/dd/yyyy in English).
    assert 'value="05/01/2026 14:00"' in when.get_data(as_text=True) and 'type="datetime-local"' not in when.get_data(as_text=True)
    bad = auth.htmx_post(f"/answer-sets/{set_id}/items/{item_id(app, set_id, 'M2')}", data={"value": "chiều nay"})
    assert bad.status_code == 422 and "M2: Ngày giờ không hợp lệ (dd/mm/yyyy HH:MM)." in bad.get_data(as_text=True)
    text = auth.htmx_post(f"/answer-sets/{set_id}/items/{item_id(app, set_id, 'M3')}", data={"value": "Trần Thị Bình"})
    assert "1 mục bắt buộc chưa trả lời" not in text.get_data(as_text=True)
