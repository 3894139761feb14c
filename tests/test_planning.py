"""Planning and compliance: the year's regular meetings, one per cell-month, moves with a reason,
the rule set's thresholds, central's monthly orientation, the cell page one year at a time."""
import datetime as dt
import json

import pytest

from models import Cell, Meeting, RuleSet, db
from models.planning import Orientation, day_warning, move_meeting, plan_year, year_compliance
from models.base import ValidationError


@pytest.fixture
def secretary(client, auth, org):
    """Logged in as the first cell's secretary."""
    assert auth.login("bithu1").status_code == 303
    auth.token(f"/cells/{org.cell.id}")
    return org


def test_plan_year_makes_one_regular_meeting_a_month(org):
    """Twelve meetings on the fixed day; planning again adds none (the fixture's month is skipped)."""
    year = dt.date.today().year + 1
    with db.connection_context():
        cell = Cell.get_by_id(org.cell.id)
        made = plan_year(cell, year)
        assert [m.held_on for m in made] == [dt.date(year, month, 5) for month in range(1, 13)]
        assert plan_year(cell, year) == []


def test_second_regular_meeting_in_a_month_is_refused(client, auth, secretary):
    """The form answers 422 with the message; nothing is created (the fixture has one this month)."""
    other_day = dt.date.today().replace(day=1 if dt.date.today().day != 1 else 2)
    response = auth.htmx_post(f"/cells/{secretary.cell.id}/meetings/new",
                              data={"held_on": other_day.strftime("%d/%m/%Y"), "kind": "regular", "starts_at": "14:00"})
    assert response.status_code == 422
    assert "mỗi tháng chỉ một buổi thường kỳ" in response.get_data(as_text=True)
    with db.connection_context():
        assert Meeting.select().where(Meeting.cell == secretary.cell.id).count() == 1


def test_same_day_meeting_is_refused_and_a_thematic_one_is_accepted(client, auth, secretary):
    """Any second meeting on the same day is refused; a thematic meeting another day is fine and navigates."""
    today = dt.date.today()
    response = auth.htmx_post(f"/cells/{secretary.cell.id}/meetings/new",
                              data={"held_on": today.strftime("%d/%m/%Y"), "kind": "thematic"})
    assert response.status_code == 422 and "mỗi ngày chỉ một buổi" in response.get_data(as_text=True)
    other = today + dt.timedelta(days=1)
    response = auth.htmx_post(f"/cells/{secretary.cell.id}/meetings/new",
                              data={"held_on": other.strftime("%d/%m/%Y"), "kind": "thematic"})
    assert response.status_code == 204 and response.headers["HX-Redirect"].startswith("/meetings/")


def test_move_needs_a_reason_and_keeps_the_first_date(org):
    """A move without a reason is refused; with one the new date is kept beside the original."""
    with db.connection_context():
        m = Meeting.create(cell=org.cell.id, kind="regular", held_on=dt.date(2031, 5, 5))
        with pytest.raises(ValidationError):
            move_meeting(m, dt.date(2031, 5, 7), "")
        move_meeting(m, dt.date(2031, 5, 7), "Trùng đợt kiểm tra liên ngành")
        m = Meeting.get_by_id(m.id)
    assert (m.held_on, m.moved_from, m.move_reason) == (dt.date(2031, 5, 7), dt.date(2031, 5, 5), "Trùng đợt kiểm tra liên ngành")
    assert day_warning(dt.date(2031, 9, 2)).startswith("Rơi vào ngày lễ")
    assert "Chủ nhật" in day_warning(dt.date(2031, 5, 4))


def test_compliance_uses_the_rule_set(org):
    """A missing month, a quarter without a thematic meeting, too short, low attendance, off schedule;
    relaxing the rule set's thresholds removes the duration and attendance flags."""
    with db.connection_context():
        cell = Cell.get_by_id(org.cell.id)
        meetings = []
        for month in (1, 2, 4):  # March missing
            day = 9 if month == 4 else 5
            m = Meeting.create(cell=cell.id, kind="regular", held_on=dt.date(2024, month, day), status="closed",
                               starts_at=dt.time(14, 0), ends_at=dt.time(15, 0 if month == 2 else 45))
            meetings.append(m)
        tallies = {meetings[0].id: {"present": 5, "excused": 2}, meetings[1].id: {"present": 7}}
        result = year_compliance(cell, 2024, meetings, tallies, today=dt.date(2024, 5, 20))
        assert result.missing_months == [3] and result.short_quarters == [1]
        assert any("dưới mức tối thiểu 90 phút" in f for f in result.flags[meetings[1].id])
        assert any("chưa đạt ngưỡng 85%" in f for f in result.flags[meetings[0].id])
        assert any("Không đúng ngày cố định" in f for f in result.flags[meetings[2].id])
        rules = RuleSet.get_by_id(meetings[0].rule_set_id)
        rules.params_json = json.dumps({**rules.params, "meeting_min_minutes": 60, "attendance_threshold_pct": 70})
        rules.save()
        relaxed = year_compliance(cell, 2024, meetings, tallies, today=dt.date(2024, 5, 20))
        assert meetings[0].id not in relaxed.flags and meetings[1].id not in relaxed.flags


def test_orientation_shows_on_that_months_meeting_pages(client, auth, org):
    """Written at central, the month's orientation appears on the cell's meeting page of that month only."""
    assert auth.login("admin").status_code == 303
    today = dt.date.today()
    auth.token("/orientations")
    response = client.post("/orientations", data={"csrf_token": auth.csrf, "month": str(today.month),
                                                  "year": str(today.year), "text": "Quán triệt Chỉ thị 50-CT/TW"})
    assert response.status_code == 303
    response = client.post("/orientations", data={"csrf_token": auth.csrf, "month": "13", "year": "2026", "text": ""})
    assert response.status_code == 422 and "Tháng phải từ 1 đến 12" in response.get_data(as_text=True)
    html = client.get(f"/meetings/{org.meeting.id}").get_data(as_text=True)
    assert "Quán triệt Chỉ thị 50-CT/TW" in html
    with db.connection_context():
        later = Meeting.create(cell=org.cell.id, kind="thematic", held_on=today + dt.timedelta(days=40))
        assert Orientation.select().count() == 1
    assert "Quán triệt Chỉ thị 50-CT/TW" not in client.get(f"/meetings/{later.id}").get_data(as_text=True)


def test_cell_page_shows_one_year(client, auth, secretary):
    """The cell page lists the chosen year's meetings with links to the other years."""
    with db.connection_context():
        old = Meeting.create(cell=secretary.cell.id, kind="regular", held_on=dt.date(2019, 3, 5), status="closed")
    html = client.get(f"/cells/{secretary.cell.id}").get_data(as_text=True)
    assert old.held_on.strftime("%d/%m/%Y") not in html and "?year=2019" in html
    html = client.get(f"/cells/{secretary.cell.id}?year=2019").get_data(as_text=True)
    assert "05/03/2019" in html and "Tháng 4/2019 không có buổi sinh hoạt thường kỳ" in html


def test_scoring_opens_on_the_meeting_day(client, auth, seeded):
    """Before the day the scoring sheet is read-only and an answer is refused; preparation is open."""
    from models.checklists import answer_set_for, published_for_kind, version_items

    assert auth.login("bithu1").status_code == 303
    with db.connection_context():
        future = Meeting.create(cell=seeded.cell.id, kind="thematic", held_on=dt.date.today() + dt.timedelta(days=3))
        answer_set = answer_set_for(future, "chuyen_de")
        item = next(i for i in version_items(published_for_kind("chuyen_de")) if i.type == "yes_no")
    auth.token(f"/meetings/{future.id}/sheets/chuan_bi")
    response = auth.htmx_post(f"/answer-sets/{answer_set.id}/items/{item.id}", data={"value": "1"})
    assert response.status_code == 422 and "Chưa đến ngày sinh hoạt" in response.get_data(as_text=True)
    html = client.get(f"/meetings/{future.id}/sheets/chuan_bi").get_data(as_text=True)
    assert "disabled" not in html.split('class="sheet sheet--fill"')[1][:3000]


def test_lunar_holidays_are_flagged_from_the_table():
    """Tết (eve to the fifth day) and Giỗ Tổ Hùng Vương fall on different solar days each year."""
    from models.holidays import HUNG_KINGS, TET
    assert set(TET) == set(HUNG_KINGS) == set(range(2019, 2036))
    assert day_warning(dt.date(2026, 2, 17)) == "Rơi vào ngày lễ (Tết Nguyên đán)."
    assert day_warning(dt.date(2026, 2, 16)) == "Rơi vào ngày lễ (Tết Nguyên đán)."  # New Year's Eve
    assert day_warning(dt.date(2031, 1, 22)) == "Rơi vào ngày lễ (Tết Nguyên đán)."
    assert day_warning(dt.date(2025, 4, 7)) == "Rơi vào ngày lễ (Giỗ Tổ Hùng Vương)."
    assert day_warning(dt.date(2026, 4, 7)) == "" and day_warning(dt.date(2026, 2, 24)) == ""


def test_a_planned_meeting_on_tet_offers_the_move_and_a_move_needs_a_reason(client, auth, secretary):
    """The meeting page says why the day needs moving; moving without a reason says so and keeps the day."""
    with db.connection_context():
        meeting = Meeting.create(cell=secretary.cell.id, kind="thematic", held_on=dt.date(2030, 2, 2))
    html = client.get(f"/meetings/{meeting.id}").get_data(as_text=True)
    assert "Tết Nguyên đán" in html and 'name="move_reason"' in html
    response = auth.htmx_post(f"/meetings/{meeting.id}/move", data={"held_on": "08/02/2030", "move_reason": ""})
    assert response.status_code == 422 and "lý do dời ngày" in response.get_data(as_text=True)
    with db.connection_context():
        assert Meeting.get_by_id(meeting.id).held_on == dt.date(2030, 2, 2)
    response = auth.htmx_post(f"/meetings/{meeting.id}/move", data={"held_on": "08/02/2030", "move_reason": "Nghỉ Tết"})
    assert response.status_code == 204
    with db.connection_context():
        assert Meeting.get_by_id(meeting.id).held_on == dt.date(2030, 2, 8)


def test_thematic_meeting_planned_by_topic_and_quarter(client, auth, secretary):
    """From the cell page: a topic and a quarter give a thematic meeting on a free working day of it."""
    html = client.get(f"/cells/{secretary.cell.id}?year=2030").get_data(as_text=True)
    assert 'data-testid="thematic-topic"' in html
    bad = auth.htmx_post(f"/cells/{secretary.cell.id}/plan/thematic", data={"year": "2030", "quarter": "1", "topic": ""})
    assert bad.status_code == 422 and "chủ đề" in bad.get_data(as_text=True)
    wrong = auth.htmx_post(f"/cells/{secretary.cell.id}/plan/thematic",
                           data={"year": "2030", "quarter": "1", "topic": "Nghị quyết", "held_on": "10/05/2030"})
    assert wrong.status_code == 422 and "không thuộc quý 1/2030" in wrong.get_data(as_text=True)
    response = auth.htmx_post(f"/cells/{secretary.cell.id}/plan/thematic",
                              data={"year": "2030", "quarter": "2", "topic": "Học tập Chỉ thị 05"})
    assert response.status_code == 204 and "year=2030" in response.headers["HX-Redirect"]
    with db.connection_context():
        made = Meeting.get((Meeting.cell == secretary.cell.id) & (Meeting.kind == "thematic"))
    assert made.title == "Học tập Chỉ thị 05" and made.held_on == dt.date(2030, 5, 15)  # a Wednesday
    page = client.get(f"/cells/{secretary.cell.id}?year=2030").get_data(as_text=True)
    assert "15/05/2030" in page
