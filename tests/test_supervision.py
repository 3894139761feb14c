"""Supervision (issue 11): plan and coverage, the on-site record, recommendations and their
follow-up, bad input refused with a message and nothing changed, the write policy, annual
inspection and model meetings."""
from __future__ import annotations

import datetime as dt
import itertools

import pytest

from models import Meeting, User, db
from models.checklists import answer_set_for, set_answer, version_items
from models.policy import PolicyViolation, check_remote_change
from models.supervision import (
    AnnualInspection,
    ModelMeeting,
    Recommendation,
    RecommendationEvent,
    SupervisionAssignment,
    SupervisionVisit,
    add_event,
    add_recommendation,
    derive_state,
    save_visit,
    self_score,
    start_visit,
    state_of,
)
from tests.conftest import PASSWORD, csrf_token_from


def login(client, username):
    """Log in through the form."""
    page = client.get("/login")
    if page.status_code != 200:  # someone is logged in: log out through the form first
        client.post("/logout", data={"csrf_token": csrf_token_from(client.get("/cells/").get_data(as_text=True))})
        page = client.get("/login")
    token = csrf_token_from(page.get_data(as_text=True))
    response = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token})
    assert response.status_code in (302, 303)


def post(client, page, action, data):
    """Post a form with the CSRF token of `page`."""
    token = csrf_token_from(client.get(page).get_data(as_text=True))
    return client.post(action, data={**data, "csrf_token": token})


def count(model):
    """Live rows of a table."""
    return model.select().where(model.deleted_at.is_null()).count()


@pytest.fixture
def visit_page(seeded):
    """The on-site page of the organisation's meeting held today."""
    return f"/supervision/meetings/{seeded.meeting.id}/visit"


def test_supervision_is_reachable_from_the_menu(client, seeded):
    """Every role finds "Giám sát" in the menu; it leads to their own view."""
    for username, lands in (("admin", "/supervision/plan"), ("btv", "/supervision/mine"),
                            ("bithu1", f"/supervision/cells/{seeded.cell.id}")):
        login(client, username)
        html = client.get("/").get_data(as_text=True) if username != "admin" else client.get("/cells/").get_data(as_text=True)
        assert 'href="/supervision/"' in html
        response = client.get("/supervision/")
        assert response.headers["Location"].endswith(lands)
        assert client.get(lands).status_code == 200


def test_automatic_plan_then_hand_adjustment_and_coverage(app, client, seeded):
    """The admin generates the year's plan, moves one line to another member; coverage counts it."""
    year = dt.date.today().year
    with app.app_context(), db.connection_context():
        second = User(username="btv.lan", role="supervisor", full_name="Trần Thị Lan")
        second.set_password(PASSWORD)
        second.save()
        btv = User.get(User.username == "btv")
    login(client, "admin")
    page = f"/supervision/plan?year={year}"
    response = post(client, page, f"/supervision/plan/generate?year={year}", {"frequency": "4", "members": [btv.id, second.id]})
    assert response.status_code == 303
    with app.app_context(), db.connection_context():
        lines = list(SupervisionAssignment.live().where(SupervisionAssignment.year == year))
        assert len(lines) == 2 * 4  # two cells, four visits each
        per_member = {u: sum(1 for line in lines if line.supervisor_id == u) for u in (btv.id, second.id)}
        assert per_member == {btv.id: 4, second.id: 4}
        line = next(line for line in lines if line.supervisor_id == btv.id)
    html = client.get(page).get_data(as_text=True)
    assert "Trần Thị Lan" in html and "Độ bao phủ" in html
    response = post(client, page, f"/supervision/plan/{line.id}",
                    {"supervisor": second.id, "month": str(line.month), "planned_on": ""})
    assert response.status_code == 303
    with app.app_context(), db.connection_context():
        assert SupervisionAssignment.get_by_id(line.id).supervisor_id == second.id
    # A bad frequency: a message, and the plan is untouched.
    response = post(client, page, f"/supervision/plan/generate?year={year}", {"frequency": "40"})
    assert response.status_code == 422
    assert "từ 1 đến 12" in response.get_data(as_text=True)
    with app.app_context(), db.connection_context():
        assert SupervisionAssignment.live().where(SupervisionAssignment.year == year).count() == 8


def test_the_cell_sees_who_comes_and_the_supervisor_sees_my_visits(app, client, seeded):
    """A plan line shows on the cell's view and in the supervisor's "my visits"."""
    today = dt.date.today()
    with app.app_context(), db.connection_context():
        btv = User.get(User.username == "btv")
        SupervisionAssignment.create(cell=seeded.cell.id, supervisor=btv.id, year=today.year, month=today.month)
    login(client, "bithu1")
    html = client.get(f"/supervision/cells/{seeded.cell.id}").get_data(as_text=True)
    assert f"Tháng {today.month}/{today.year}: đồng chí btv" in html
    login(client, "btv")
    html = client.get("/supervision/mine").get_data(as_text=True)
    assert f"Tháng {today.month}/{today.year} · Chi bộ Một" in html
    assert f"/supervision/meetings/{seeded.meeting.id}/visit" in html


def fill_self_score(meeting):
    """The cell scores its own meeting: every yes/no item answered yes."""
    sheet = answer_set_for(meeting, "thuong_ky", "self")
    for item in version_items(sheet.version):
        if item.type == "yes_no":
            set_answer(sheet, item, "1")
    return self_score(meeting)


def test_on_site_record_with_score_difference_and_recommendation(app, client, seeded, visit_page):
    """The supervisor starts, fills and signs the record; the page shows the counts, the score gap
    (highlighted) and the recommendation; the sheet of the template in force carries the answers."""
    with app.app_context(), db.connection_context():
        cell_score = fill_self_score(seeded.meeting)
    assert cell_score is not None and abs(cell_score - 50) >= 5, cell_score
    login(client, "btv")
    assert "Bắt đầu ghi biên bản giám sát" in client.get(visit_page).get_data(as_text=True)
    assert post(client, visit_page, visit_page, {"action": "start"}).status_code == 303
    response = post(client, visit_page, visit_page, {"action": "save", "verified_present": "5", "score": "50",
                                                     "strengths": "Chuẩn bị chu đáo", "weaknesses": "Ít phát biểu",
                                                     "remarks": "Cần phát huy dân chủ"})
    assert response.status_code == 303
    with app.app_context(), db.connection_context():
        visit = SupervisionVisit.get()
    deadline = (dt.date.today() + dt.timedelta(days=30)).strftime("%d/%m/%Y")
    response = post(client, visit_page, f"/supervision/visits/{visit.id}/recommendations",
                    {"text": "Bổ sung sổ nghị quyết", "deadline": deadline})
    assert response.status_code == 303
    response = post(client, visit_page, visit_page, {"action": "confirm", "verified_present": "5", "score": "50",
                                                     "strengths": "Chuẩn bị chu đáo", "weaknesses": "Ít phát biểu",
                                                     "remarks": "Cần phát huy dân chủ"})
    assert response.status_code == 303
    html = client.get(visit_page).get_data(as_text=True)
    difference = round(50 - cell_score, 1)
    assert f"{difference:+.1f} điểm" in html
    assert 'status--bad" data-testid="score-difference"' in html  # more than 5 points apart
    assert "Bổ sung sổ nghị quyết" in html and "Chưa thực hiện" in html
    assert "Đã ký xác nhận" in html
    assert 'data-testid="attendance-gap"' in html  # 5 counted on site, none marked in the roll call
    assert 'data-testid="visit-sheet"' in html and 'data-code="S7"' in html and 'data-code="S17.gs"' not in html
    with app.app_context(), db.connection_context():
        from models.checklists import AnswerSet, answers_by_code

        answers = answers_by_code(AnswerSet.get_by_id(visit.answer_set_id))
        assert answers["S17.gs"].value == 50 and answers["S6"].value == 5
        assert "Bổ sung sổ nghị quyết" in answers["S19"].value
    # Signed: no further edit, of the record or of its sheet.
    response = post(client, visit_page, visit_page, {"action": "save", "score": "90"})
    assert response.status_code == 422
    assert "đã ký xác nhận" in response.get_data(as_text=True)
    with app.app_context(), db.connection_context():
        from models.checklists import TemplateItem
        s7 = TemplateItem.get((TemplateItem.code == "S7") & (TemplateItem.version == AnswerSet.get_by_id(visit.answer_set_id).version_id))
    response = post(client, visit_page, f"/answer-sets/{visit.answer_set_id}/items/{s7.id}", {"value": "1"})
    assert response.status_code == 403 and "đã ký xác nhận" in response.get_data(as_text=True)


def test_a_visit_to_a_meeting_not_yet_held_is_refused(app, client, seeded):
    """Bad input: a meeting next week has no visit record yet; nothing is written."""
    with app.app_context(), db.connection_context():
        later = Meeting.create(cell=seeded.cell.id, held_on=dt.date.today() + dt.timedelta(days=7), kind="thematic")
    page = f"/supervision/meetings/{later.id}/visit"
    login(client, "btv")
    html = client.get(page).get_data(as_text=True)
    assert "Buổi sinh hoạt chưa diễn ra" in html and "Bắt đầu ghi biên bản" not in html
    response = post(client, page, page, {"action": "start"})
    assert response.status_code == 422
    assert "Buổi sinh hoạt chưa diễn ra" in response.get_data(as_text=True)
    with app.app_context(), db.connection_context():
        assert count(SupervisionVisit) == 0


def test_a_deadline_before_the_visit_is_refused(app, client, seeded, visit_page):
    """Bad input: a deadline before the meeting day; the message shows, what was typed stays."""
    with app.app_context(), db.connection_context():
        visit = start_visit(seeded.meeting, User.get(User.username == "btv"))
    login(client, "btv")
    earlier = (dt.date.today() - dt.timedelta(days=1)).strftime("%d/%m/%Y")
    response = post(client, visit_page, f"/supervision/visits/{visit.id}/recommendations",
                    {"text": "Khắc phục ngay", "deadline": earlier})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "không được trước ngày giám sát" in html and earlier in html and "Khắc phục ngay" in html
    response = post(client, visit_page, f"/supervision/visits/{visit.id}/recommendations",
                    {"text": "Khắc phục ngay", "deadline": "31/02/2026"})
    assert response.status_code == 422 and "Thời hạn không hợp lệ" in response.get_data(as_text=True)
    with app.app_context(), db.connection_context():
        assert count(Recommendation) == 0 and count(RecommendationEvent) == 0


def test_a_cell_user_cannot_edit_the_supervisors_record(app, client, seeded, visit_page):
    """Bad input: the cell's secretary posting to the record gets a clear refusal; nothing changes."""
    with app.app_context(), db.connection_context():
        visit = start_visit(seeded.meeting, User.get(User.username == "btv"))
        save_visit(visit, {"score": "70", "strengths": "Tốt"})
        before = SupervisionVisit.get_by_id(visit.id).hlc
    login(client, "bithu1")
    html = client.get(visit_page).get_data(as_text=True)
    assert "Tốt" in html and 'data-testid="visit-form"' not in html
    response = post(client, visit_page, visit_page, {"action": "save", "score": "100", "strengths": "Xuất sắc"})
    assert response.status_code == 403
    assert "Biên bản giám sát là của người giám sát" in response.get_data(as_text=True)
    response = post(client, visit_page, f"/supervision/visits/{visit.id}/recommendations",
                    {"text": "Tự đặt", "deadline": "01/01/2099"})
    assert response.status_code == 403
    with app.app_context(), db.connection_context():
        stored = SupervisionVisit.get_by_id(visit.id)
        assert (stored.score, stored.strengths, stored.hlc) == (70, "Tốt", before)
        assert count(Recommendation) == 0


def test_follow_up_the_cell_marks_done_the_supervisor_verifies(app, client, seeded):
    """The cell moves its recommendation to done; only the supervisor verifies; overdue is flagged."""
    with app.app_context(), db.connection_context():
        btv = User.get(User.username == "btv")
        visit = start_visit(seeded.meeting, btv)
        rec = add_recommendation(visit, "Họp chi ủy trước mỗi kỳ", dt.date.today(), btv)
        late = add_recommendation(visit, "Nộp báo cáo", dt.date.today(), btv)
    page = f"/supervision/cells/{seeded.cell.id}"
    login(client, "bithu1")
    # The secretary cannot verify: a message, no event.
    response = post(client, page, f"/supervision/recommendations/{rec.id}/events", {"state": "verified"})
    assert response.status_code == 422
    assert "Chi bộ không chuyển được kiến nghị" in response.get_data(as_text=True)
    assert post(client, page, f"/supervision/recommendations/{rec.id}/events",
                {"state": "done", "note": "Đã họp ngày 02", "next": page}).status_code == 303
    html = client.get(page).get_data(as_text=True)
    assert "Chi bộ báo đã xong" in html
    login(client, "btv")
    assert post(client, "/supervision/recommendations", f"/supervision/recommendations/{rec.id}/events",
                {"state": "verified"}).status_code == 303
    with app.app_context(), db.connection_context():
        assert state_of(Recommendation.get_by_id(rec.id)) == "verified"
        assert [e.state for e in RecommendationEvent.select().where(RecommendationEvent.recommendation == rec.id)
                .order_by(RecommendationEvent.hlc)] == ["open", "done", "verified"]
    # A member of the cell reads but moves nothing.
    login(client, "dangvien1")
    response = post(client, page, f"/supervision/recommendations/{late.id}/events", {"state": "done"})
    assert response.status_code == 403
    # Overdue: the deadline passed (tomorrow, seen from the day after).
    from models.supervision import recommendation_rows
    with app.app_context(), db.connection_context():
        rows = {r.rec.id: r for r in recommendation_rows(today=dt.date.today() + dt.timedelta(days=1))}
        assert rows[late.id].overdue and not rows[rec.id].overdue


def test_derived_state_is_the_same_in_every_arrival_order():
    """Concurrent moves from the cell and the supervisor: one result whatever order they arrive in."""
    events = [("001:000001:central", "e1", "open", "supervisor"),
              ("002:000001:doi-1", "e2", "in_progress", "cell"),
              ("003:000000:doi-1", "e3", "done", "cell"),
              ("003:000001:central", "e4", "in_progress", "supervisor"),  # sent back, concurrently
              ("004:000000:doi-1", "e5", "done", "cell"),
              ("005:000000:central", "e6", "verified", "supervisor")]
    results = {derive_state(order) for order in itertools.permutations(events)}
    assert results == {"verified"}
    # A move the side may not make changes nothing (the cell cannot verify).
    assert derive_state([("1", "a", "open", "supervisor"), ("2", "b", "verified", "cell")]) == "open"
    # A verification stamped before the cell's "done" arrived does not count.
    assert derive_state([("1", "a", "open", "supervisor"), ("2", "b", "verified", "supervisor"),
                         ("3", "c", "done", "cell")]) == "done"


@pytest.mark.parametrize("table,create,fields", [
    ("supervision_assignment", True, {}),
    ("annual_inspection", True, {}),
    ("model_meeting", True, {}),
    ("recommendation_event", False, {"state": "verified"}),
    ("supervision_visit", False, {"meeting_id": "x"}),
])
def test_write_policy_for_field_nodes(app, seeded, table, create, fields):
    """A field node may not create central's plans, nor edit an event or move a visit to another meeting."""
    from models.base import SYNCED_MODELS

    model = SYNCED_MODELS[table]
    with app.app_context(), db.connection_context():
        before = {"id": "r1", "owner": "doi-1", "deleted_at": None}
        after = {**before, **fields}
        with pytest.raises(PolicyViolation):
            if create:
                check_remote_change("doi-1", model, None, model(**after), set(after))
            else:
                check_remote_change("doi-1", model, model(**before), model(**after), set(fields))


def test_annual_inspection_plan_and_record(app, client, seeded):
    """The admin selects a cell, records the sheet, findings and conclusion; bad values change nothing."""
    year = dt.date.today().year
    login(client, "admin")
    page = f"/supervision/inspections?year={year}"
    response = post(client, page, page, {"cell": seeded.cell.id, "planned_on": f"15/11/{year}",
                                         "inspectors": "Đồng chí Hùng, Phó Bí thư"})
    assert response.status_code == 303
    with app.app_context(), db.connection_context():
        inspection = AnnualInspection.get()
        assert inspection.answer_set_id is not None
    again = post(client, page, page, {"cell": seeded.cell.id, "planned_on": ""})
    assert again.status_code == 422 and "đã có trong kế hoạch kiểm tra" in again.get_data(as_text=True)
    view = f"/supervision/inspections/{inspection.id}"
    html = client.get(view).get_data(as_text=True)
    assert "K1. Số buổi sinh hoạt thường kỳ" in html and "Buổi sinh hoạt thường kỳ đã tổ chức" in html
    response = post(client, view, view, {"item-K1": "mười", "findings": "Sổ sách đầy đủ", "finish": "1",
                                         "conclusion": "Đạt"})
    assert response.status_code == 422 and "Vui lòng nhập một số" in response.get_data(as_text=True)
    response = post(client, view, view, {"item-K1": "12", "findings": "Sổ sách đầy đủ", "finish": "1", "conclusion": ""})
    assert response.status_code == 422 and "ghi kết luận" in response.get_data(as_text=True)
    with app.app_context(), db.connection_context():
        assert AnnualInspection.get_by_id(inspection.id).findings == ""
    response = post(client, view, view, {"item-K1": "12", "item-K5": "1", "findings": "Sổ sách đầy đủ",
                                         "finish": "1", "conclusion": "Chi bộ sinh hoạt nền nếp", "done_on": ""})
    assert response.status_code == 303
    html = client.get(view).get_data(as_text=True)
    assert "Đã kiểm tra" in html and "Chi bộ sinh hoạt nền nếp" in html
    login(client, "bithu1")
    assert post(client, f"/supervision/inspections?year={year}", view, {"conclusion": "Tự sửa"}).status_code == 403


def test_model_meeting_programme(app, client, seeded):
    """A model meeting with an observing cell; held only on or after its day; listed per year."""
    year = dt.date.today().year
    login(client, "admin")
    page = f"/supervision/model-meetings?year={year}"
    response = post(client, page, page, {"cell": seeded.cell.id, "planned_on": dt.date.today().strftime("%d/%m/%Y"),
                                         "topic": "Sinh hoạt chuyên đề mẫu", "observers": [seeded.other_cell.id]})
    assert response.status_code == 303
    self_observe = post(client, page, page, {"cell": seeded.cell.id, "planned_on": f"01/12/{year}",
                                             "observers": [seeded.cell.id]})
    assert self_observe.status_code == 422 and "không tự dự quan sát" in self_observe.get_data(as_text=True)
    with app.app_context(), db.connection_context():
        model = ModelMeeting.get()
        later = ModelMeeting.create(cell=seeded.other_cell.id, year=year + 1, planned_on=dt.date(year + 1, 3, 1))
    view = f"/supervision/model-meetings/{model.id}"
    response = post(client, view, view, {"held": "1", "lessons": "Chuẩn bị kỹ dự thảo nghị quyết",
                                         "attended": [seeded.other_cell.id]})
    assert response.status_code == 303
    future = f"/supervision/model-meetings/{later.id}"
    response = post(client, future, future, {"held": "1", "lessons": "Sớm quá"})
    assert response.status_code == 422 and "chưa diễn ra" in response.get_data(as_text=True)
    html = client.get(page).get_data(as_text=True)
    assert "Đã tổ chức" in html and "CB02" in html
    assert "Chuẩn bị kỹ dự thảo nghị quyết" in client.get(view).get_data(as_text=True)


@pytest.mark.sqlite_only  # the demo load is the same code on both; on PostgreSQL it costs ~50 s of CI
def test_demo_has_a_rotation_plan_and_visits(app):
    """The demo: five Standing Committee accounts, the year's plan, two visits with recommendations."""
    from models.demo import load_demo
    from models.supervision import coverage, recommendation_rows

    with app.app_context(), db.connection_context():
        load_demo(today=dt.date(2026, 11, 25), start_year=2025)
        assert User.select().where(User.role == "supervisor").count() == 5
        by_cell, by_member = coverage(2026)
        assert [r.planned for r in by_cell] == [4] * 8
        assert max(r.planned for r in by_member) - min(r.planned for r in by_member) <= 1
        assert sum(r.made for r in by_cell) == 2
        states = sorted(r.state for r in recommendation_rows())
        assert states == ["open", "open", "open", "verified"]
        own = [line for line in SupervisionAssignment.select()
               if line.supervisor.cell_id == line.cell_id]
        assert own == []


MATRIX_ROLES = ("admin", "btv", "bithu1", "dangvien1")


@pytest.mark.parametrize("role", MATRIX_ROLES)
def test_role_matrix_of_the_supervision_screens(client, seeded, role):
    """Each role gets exactly the answer it should on every supervision screen."""
    meeting, cell, other = seeded.meeting.id, seeded.cell.id, seeded.other_cell.id
    expected = [
        ("/supervision/plan", {"admin": 200, "btv": 200, "bithu1": 403, "dangvien1": 403}),
        ("/supervision/mine", {"admin": 403, "btv": 200, "bithu1": 403, "dangvien1": 403}),
        (f"/supervision/cells/{cell}", dict.fromkeys(MATRIX_ROLES, 200)),
        (f"/supervision/cells/{other}", {"admin": 200, "btv": 200, "bithu1": 403, "dangvien1": 403}),
        (f"/supervision/meetings/{meeting}/visit", dict.fromkeys(MATRIX_ROLES, 200)),
        ("/supervision/recommendations", dict.fromkeys(MATRIX_ROLES, 200)),
        ("/supervision/inspections", dict.fromkeys(MATRIX_ROLES, 200)),
        ("/supervision/model-meetings", dict.fromkeys(MATRIX_ROLES, 200)),
        ("/supervision/meetings/khong-co/visit", dict.fromkeys(MATRIX_ROLES, 404)),
    ]
    login(client, role)
    for path, answers in expected:
        assert client.get(path).status_code == answers[role], path
    response = post(client, "/supervision/recommendations", "/supervision/plan/generate", {"frequency": "4"})
    assert response.status_code == (303 if role == "admin" else 403)


def test_the_record_is_written_only_where_the_meeting_is_held(app, client, seeded, visit_page):
    """At central, a meeting held by a field node gets no visit record: a message, nothing written."""
    with app.app_context(), db.connection_context():
        cell = seeded.cell
        cell.node_id = "doi-1"
        cell.save()
    login(client, "btv")
    html = client.get(visit_page).get_data(as_text=True)
    assert "Bắt đầu ghi biên bản" not in html
    response = post(client, visit_page, visit_page, {"action": "start"})
    assert response.status_code == 403
    assert "do nút khác quản lý" in response.get_data(as_text=True)
    sheet = client.get(f"/meetings/{seeded.meeting.id}/sheets/giam_sat?role=supervisor").get_data(as_text=True)
    assert "Phiếu này chưa được chấm" in sheet
    with app.app_context(), db.connection_context():
        assert count(SupervisionVisit) == 0
