"""Holding a meeting over HTTP: start and end, roles, guests, contributions, votes, conclusion,
tasks, last meeting's tasks; bad input answers 422 with a message and changes nothing."""
import datetime as dt

import pytest

from models import Attendance, Contribution, Meeting, Member, Task, TaskReview, Vote, db
from models.meeting_record import contribution_summary


@pytest.fixture
def secretary(client, auth, org):
    """Logged in as the first cell's secretary."""
    assert auth.login("bithu1").status_code == 303
    auth.token(f"/meetings/{org.meeting.id}")
    return org


def _post(auth, org, path, **data):
    return auth.htmx_post(f"/meetings/{org.meeting.id}/{path}", data=data)


def _present(org, *members):
    with db.connection_context():
        for m in members:
            Attendance.create(meeting=org.meeting.id, member=m.id, status="present")


def _meeting(org):
    with db.connection_context():
        return Meeting.get_by_id(org.meeting.id)


def test_start_then_end_records_times_and_status(client, auth, secretary, monkeypatch):
    """"Bắt đầu" then "Kết thúc": both times stored, status moves on, the buttons follow."""
    html = _post(auth, secretary, "start").get_data(as_text=True)
    assert 'data-testid="started-at"' in html and 'data-testid="end"' in html
    m = _meeting(secretary)
    assert m.status == "in_progress" and m.started_at is not None
    _post(auth, secretary, "times", started_at="14:00", ended_at="")
    monkeypatch.setattr("blueprints.meetings.local_now", lambda: dt.time(15, 42, 10))
    assert _post(auth, secretary, "end").status_code == 200
    m = _meeting(secretary)
    assert m.status == "ended" and m.ended_at == dt.time(15, 42, 10)


def test_a_meeting_that_runs_past_midnight_ends_the_next_day(client, auth, secretary, monkeypatch):
    """Started 23:40, "Kết thúc" tapped at 00:10: accepted, 30 minutes long, the minutes name the next day."""
    from models.meetings import duration_minutes
    from models.minutes import minutes_data, minutes_sections

    _post(auth, secretary, "start")
    _post(auth, secretary, "times", started_at="23:40", ended_at="")
    monkeypatch.setattr("blueprints.meetings.local_now", lambda: dt.time(0, 10, 5))
    response = _post(auth, secretary, "end")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert 'data-testid="ended-next-day">(ngày hôm sau)' in response.get_data(as_text=True)
    m = _meeting(secretary)
    assert m.status == "ended" and m.ended_at == dt.time(0, 10, 5)
    assert round(duration_minutes(m)) == 30
    with db.connection_context():
        text = " ".join(" ".join(lines) for _, lines in minutes_sections(minutes_data(m)))
    next_day = m.held_on + dt.timedelta(days=1)
    assert (f"kết thúc vào lúc 00 giờ 10 phút ngày {next_day.day:02d} tháng {next_day.month:02d} "
            f"năm {next_day.year}.") in text, text
    # Typed times past midnight are read the same way; an end that would make the meeting last more than
    # 8 hours is a typing slip ("14:00 → 01:30" meant 15:30), refused with what was typed kept.
    assert _post(auth, secretary, "times", started_at="21:30", ended_at="01:15").status_code == 200
    assert round(duration_minutes(_meeting(secretary))) == 225
    for typed in ("01:30", "13:30"):
        refused = _post(auth, secretary, "times", started_at="14:00", ended_at=typed)
        assert refused.status_code == 422 and f'value="{typed}"' in refused.get_data(as_text=True)
    assert round(duration_minutes(_meeting(secretary))) == 225  # nothing changed


def test_end_before_start_is_refused(client, auth, secretary):
    """Typed times with the end before the start: 422, message, nothing stored."""
    _post(auth, secretary, "start")
    response = _post(auth, secretary, "times", started_at="14:00", ended_at="13:30")
    assert response.status_code == 422
    assert "Giờ kết thúc phải sau giờ bắt đầu" in response.get_data(as_text=True)
    assert 'value="13:30"' in response.get_data(as_text=True)  # what was typed is kept
    assert _meeting(secretary).ended_at is None


def test_end_without_start_is_refused(client, auth, secretary):
    """"Kết thúc" before "Bắt đầu" says what to do first."""
    response = _post(auth, secretary, "end")
    assert response.status_code == 422
    assert "Bắt đầu" in response.get_data(as_text=True)


def test_rollcall_shows_no_red_verdict_before_start(client, auth, secretary):
    """Before "Bắt đầu" a low rate is not judged; after it, it is."""
    _present(secretary, secretary.members[0])
    html = client.get(f"/meetings/{secretary.meeting.id}").get_data(as_text=True)
    assert "chưa bắt đầu" in html and "chưa đạt" not in html
    _post(auth, secretary, "start")
    html = client.get(f"/meetings/{secretary.meeting.id}").get_data(as_text=True)
    assert "chưa đạt" in html


def test_all_present_then_tap_absent_and_late(client, auth, secretary):
    """"Tất cả có mặt" marks the 7 counted members; a tap then makes one absent; late is noted."""
    response = _post(auth, secretary, "attendance-all")
    assert response.status_code == 204 and response.headers["HX-Redirect"]
    with db.connection_context():
        assert Attendance.select().where(Attendance.status == "present").count() == 7
    html = client.get(f"/meetings/{secretary.meeting.id}").get_data(as_text=True)
    assert "7/7" in html and 'data-testid="legend"' in html and "dự bị" in html
    a, b = secretary.members[0], secretary.members[1]
    _post(auth, secretary, f"attendance/{a.id}")  # present -> excused
    html = _post(auth, secretary, f"attendance/{b.id}", mode="late").get_data(as_text=True)
    assert "Đến muộn" in html and "6/7" in html and "đến muộn 1" in html


def test_contribution_counts_and_share(client, auth, secretary):
    """Tap a present member, then a kind: counts per kind and the share of speakers update."""
    a, b, c = secretary.members[:3]
    _present(secretary, a, b, c)
    html = client.get(f"/meetings/{secretary.meeting.id}/hold?member={a.id}&section=speak",
                      headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'data-testid="kind-sheet"' in html and a.full_name in html
    html = _post(auth, secretary, "contributions", member=a.id, kind="tu_phe_binh", summary="Nhận khuyết điểm").get_data(as_text=True)
    assert 'data-testid="count-tu_phe_binh">1<' in html and "1/3" in html and "33,3%" in html
    html = _post(auth, secretary, "contributions", member=b.id, kind="y_kien").get_data(as_text=True)
    assert "2/3" in html and "Nhận khuyết điểm" in html


def test_retried_contribution_records_once(client, auth, secretary):
    """The same key sent twice (a retry after the Wi-Fi dropped) records one contribution."""
    a = secretary.members[0]
    _present(secretary, a)
    key = "0190a000-0000-7000-8000-0000000000aa"
    for _ in range(2):
        assert _post(auth, secretary, "contributions", member=a.id, kind="y_kien", key=key).status_code == 200
    with db.connection_context():
        assert Contribution.select().count() == 1


@pytest.mark.parametrize("case", ["absent", "other_cell", "bad_kind"])
def test_bad_contribution_is_refused(client, auth, secretary, case):
    """A contribution by an absent member, another cell's member or of an unknown kind: 422, none stored."""
    a = secretary.members[0]
    member_id, kind = a.id, "y_kien"
    if case == "absent":
        with db.connection_context():
            Attendance.create(meeting=secretary.meeting.id, member=a.id, status="excused")
    elif case == "other_cell":
        with db.connection_context():
            member_id = Member.get(Member.cell == secretary.other_cell.id).id
    else:
        _present(secretary, a)
        kind = "chat_van_vu"
    response = _post(auth, secretary, "contributions", member=member_id, kind=kind)
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert "Chưa lưu" in text
    if case == "absent":
        assert "không có mặt" in text
    with db.connection_context():
        assert Contribution.select().count() == 0


def test_undo_contribution(client, auth, secretary):
    """"Hoàn tác" removes the last contribution and the counts fall back."""
    a = secretary.members[0]
    _present(secretary, a)
    _post(auth, secretary, "contributions", member=a.id, kind="phe_binh")
    with db.connection_context():
        row = Contribution.get()
    html = _post(auth, secretary, f"contributions/{row.id}/delete").get_data(as_text=True)
    assert 'data-testid="count-phe_binh">0<' in html


def test_vote_counts_only_full_members_present(client, auth, secretary):
    """Eligible = full members present (the probationary one does not vote); a valid vote is stored."""
    full = [m for m in secretary.members if m.status == "full"][:3]
    probationary = next(m for m in secretary.members if m.status == "probationary")
    _present(secretary, *full, probationary)
    html = client.get(f"/meetings/{secretary.meeting.id}/conclusion").get_data(as_text=True)
    assert 'data-testid="eligible">3<' in html
    html = _post(auth, secretary, "votes", subject="Thông qua nghị quyết", in_favour="3", against="0", abstain="0").get_data(as_text=True)
    assert "tán thành 3/3" in html and "thông qua" in html


@pytest.mark.parametrize("counts,message", [
    (("4", "0", "0"), "vượt số đảng viên chính thức có mặt (3)"),
    (("2", "1", "1"), "vượt số đảng viên chính thức có mặt (3)"),
    (("-1", "0", "0"), "số nguyên không âm"),
    (("ba", "0", "0"), "số nguyên không âm"),
])
def test_bad_vote_is_refused(client, auth, secretary, counts, message):
    """More votes than eligible members, or not a number: 422 with the message, nothing stored."""
    full = [m for m in secretary.members if m.status == "full"][:3]
    _present(secretary, *full)
    in_favour, against, abstain = counts
    response = _post(auth, secretary, "votes", subject="Nghị quyết", in_favour=in_favour, against=against, abstain=abstain)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    with db.connection_context():
        assert Vote.select().count() == 0


def test_conclusion_roles_guests_and_tasks(client, auth, secretary):
    """The resolution text, chair and secretary, a guest and a task with an assignee and due date."""
    a, b = secretary.members[:2]
    assert _post(auth, secretary, "conclusion", conclusion_kind="nghi_quyet", conclusion="Tập trung chống buôn lậu.").status_code == 200
    assert _post(auth, secretary, "roles", chair=a.id, secretary=b.id, place="Hội trường Đội 1").status_code == 200
    html = _post(auth, secretary, "guests", name="Lê Văn Trên", position="Ủy viên BTV", kind="superior").get_data(as_text=True)
    assert "Lê Văn Trên" in html and "Đại biểu cấp trên" in html
    due = (dt.date.today() + dt.timedelta(days=20)).strftime("%d/%m/%Y")
    html = _post(auth, secretary, "tasks", text="Kiểm tra chợ Long Hòa", assignee=b.id, due_on=due).get_data(as_text=True)
    assert "Kiểm tra chợ Long Hòa" in html and due in html
    m = _meeting(secretary)
    assert (m.chair_id, m.secretary_id, m.place) == (a.id, b.id, "Hội trường Đội 1")
    assert m.conclusion == "Tập trung chống buôn lậu."


def test_bad_task_date_is_refused(client, auth, secretary):
    """A due date that is not dd/mm/yyyy: 422 and no task."""
    response = _post(auth, secretary, "tasks", text="Việc", due_on="31/02/2026")
    assert response.status_code == 422 and "dd/mm/yyyy" in response.get_data(as_text=True)
    with db.connection_context():
        assert Task.select().count() == 0


def test_next_meeting_evaluates_last_meetings_tasks(client, auth, secretary):
    """A task of an earlier meeting is listed at the next one; "carried over" copies it forward."""
    with db.connection_context():
        earlier = Meeting.create(cell=secretary.cell.id, held_on=dt.date.today() - dt.timedelta(days=40),
                                 kind="regular")
        task = Task.create(meeting=earlier.id, text="Rà soát hồ sơ", assignee=secretary.members[1].id)
    html = client.get(f"/meetings/{secretary.meeting.id}/conclusion").get_data(as_text=True)
    assert "Rà soát hồ sơ" in html and 'data-testid="earlier-task"' in html
    html = _post(auth, secretary, f"reviews/{task.id}", outcome="carried").get_data(as_text=True)
    assert 'aria-pressed="true">Chuyển sang kỳ sau' in html
    with db.connection_context():
        assert TaskReview.get().outcome == "carried"
        carried = Task.get(Task.meeting == secretary.meeting.id)
        assert carried.carried_from_id == task.id
    _post(auth, secretary, f"reviews/{task.id}", outcome="done")
    with db.connection_context():
        assert Task.live().where(Task.meeting == secretary.meeting.id).count() == 0


def test_meeting_before_its_day_refuses_roll_call(client, auth, secretary):
    """Roll call opens only on or after the meeting day."""
    with db.connection_context():
        future = Meeting.create(cell=secretary.cell.id, held_on=dt.date.today() + dt.timedelta(days=45),
                                kind="regular")
    html = client.get(f"/meetings/{future.id}").get_data(as_text=True)
    assert "Chưa đến ngày sinh hoạt" in html
    response = auth.htmx_post(f"/meetings/{future.id}/attendance/{secretary.members[0].id}")
    assert response.status_code == 422 and "Chưa đến ngày sinh hoạt" in response.get_data(as_text=True)


def test_contribution_summary_feeds_scoring(secretary):
    """The scoring sheet's participation and self-criticism items read the recorded contributions."""
    from models.meeting_record import add_contribution
    from models.scoring import computed_values

    a, b, c, d = secretary.members[:4]
    _present(secretary, a, b, c, d)
    with db.connection_context():
        m = Meeting.get_by_id(secretary.meeting.id)
        add_contribution(m, a.id, "y_kien")
        add_contribution(m, a.id, "tu_phe_binh")
        add_contribution(m, b.id, "phe_binh")
        facts = computed_values(m)
        s = contribution_summary(m)
    assert (s.speakers, s.present, s.total, s.self_criticism) == (2, 4, 3, 2)
    assert facts["speakers"] == 50.0 and facts["self_criticism_count"] == 2


def test_model_meeting_lessons_after_signing(client, auth, secretary):
    """A model meeting: the flag is set while open; lessons may still be written after signing."""
    assert _post(auth, secretary, "model", is_model="1", lessons="").status_code == 200
    with db.connection_context():
        m = Meeting.get_by_id(secretary.meeting.id)
        assert m.is_model
        m.status = "closed"
        m.save()
    assert _post(auth, secretary, "model", is_model="1", lessons="Chuẩn bị kỹ dự thảo").status_code == 200
    response = _post(auth, secretary, "model", is_model="", lessons="Chuẩn bị kỹ dự thảo")
    assert response.status_code == 422 and "mở bản sửa đổi" in response.get_data(as_text=True)
    m = _meeting(secretary)
    assert m.is_model and m.lessons == "Chuẩn bị kỹ dự thảo"


def test_chair_from_another_cell_is_refused(client, auth, secretary):
    """A chair who is not on the cell's roll: 422 in the status line, nothing stored."""
    with db.connection_context():
        stranger = Member.get(Member.cell == secretary.other_cell.id)
    response = _post(auth, secretary, "roles", chair=stranger.id, secretary="", place="")
    assert response.status_code == 422 and "Chọn một đảng viên của chi bộ" in response.get_data(as_text=True)
    assert _meeting(secretary).chair_id is None
