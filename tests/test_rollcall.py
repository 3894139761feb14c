"""Roll call over HTTP: one tap cycles the state, the rate updates, bad input changes nothing."""
import pytest

from models import Attendance, db


@pytest.fixture
def secretary(client, auth, org):
    """Logged in as the first cell's secretary."""
    response = auth.login("bithu1")
    assert response.status_code == 303
    return org


def _tap(auth, org, member, **data):
    return auth.htmx_post(f"/meetings/{org.meeting.id}/attendance/{member.id}", data=data)


def test_meeting_page_lists_members_and_marks_exempted(client, secretary):
    """The roll call shows every member; the exempted one is shown but not counted."""
    html = client.get(f"/meetings/{secretary.meeting.id}").get_data(as_text=True)
    for member in secretary.members:
        assert member.full_name in html
    assert "Miễn SH" in html and "Không tính tỷ lệ" in html
    assert "0/7" in html  # 8 on the roll, the exempted one not counted


def test_tap_cycles_present_excused_unexcused_present(client, auth, secretary):
    """Each tap moves the tile to the next state and the summary changes with it."""
    member = secretary.members[0]
    states = []
    for _ in range(4):
        response = _tap(auth, secretary, member)
        assert response.status_code == 200
        html = response.get_data(as_text=True)
        states.append(html.split('data-testid="tile-state">')[1].split("<")[0])
        assert 'id="rollcall-summary"' in html and 'hx-swap-oob="true"' in html
    assert states == ["Có mặt", "Vắng có lý do", "Vắng không lý do", "Có mặt"]


def test_excused_reason_is_kept(client, auth, secretary):
    """Choosing a reason chip stores the reason with the excused absence."""
    member = secretary.members[1]
    response = _tap(auth, secretary, member, status="excused", reason="Đi công tác")
    assert "Đi công tác" in response.get_data(as_text=True)
    with db.connection_context():
        row = Attendance.get(Attendance.member == member.id)
    assert (row.status, row.reason) == ("excused", "Đi công tác")


def test_rate_crosses_the_threshold(client, auth, secretary):
    """6 of 7 present is 85,7%: above 85% passes; 5 of 7 (71,4%) does not (judged once started)."""
    auth.htmx_post(f"/meetings/{secretary.meeting.id}/start")
    counted = [m for m in secretary.members if m.status != "exempted"]
    for member in counted[:6]:
        html = _tap(auth, secretary, member).get_data(as_text=True)
    assert "6/7" in html and "85,7%" in html and "đạt" in html and "chưa đạt" not in html
    html = _tap(auth, secretary, counted[0]).get_data(as_text=True)  # present -> excused
    assert "5/7" in html and "71,4%" in html and "chưa đạt" in html


@pytest.mark.parametrize("case", ["unknown_member", "other_cell_member", "bad_status", "exempted_member"])
def test_bad_input_is_refused_and_changes_nothing(client, auth, secretary, case):
    """Unknown member, another cell's member, an unknown status or an exempted member: 422, no row."""
    from models import Member

    member_id = secretary.members[0].id
    data = {}
    if case == "unknown_member":
        member_id = "00000000-0000-7000-8000-000000000000"
    elif case == "other_cell_member":
        with db.connection_context():
            member_id = Member.get(Member.cell == secretary.other_cell.id).id
    elif case == "bad_status":
        data = {"status": "ngu_gat"}
    else:
        member_id = secretary.members[7].id
    response = auth.htmx_post(f"/meetings/{secretary.meeting.id}/attendance/{member_id}", data=data)
    assert response.status_code == 422
    assert "Chưa lưu" in response.get_data(as_text=True)
    with db.connection_context():
        assert Attendance.select().count() == 0


def test_other_cells_secretary_cannot_take_roll_call(client, auth, org):
    """A secretary of another cell gets 403 and nothing is written."""
    auth.login("bithu2")
    response = auth.htmx_post(f"/meetings/{org.meeting.id}/attendance/{org.members[0].id}")
    assert response.status_code == 403
    with db.connection_context():
        assert Attendance.select().count() == 0


def test_post_without_csrf_token_is_refused(client, auth, secretary):
    """An htmx post without the CSRF header is refused."""
    response = client.post(f"/meetings/{secretary.meeting.id}/attendance/{secretary.members[0].id}",
                           headers={"HX-Request": "true"})
    assert response.status_code == 400
    with db.connection_context():
        assert Attendance.select().count() == 0


def test_expired_login_during_htmx_redirects_cleanly(client, org):
    """Without a session an htmx tap answers HX-Redirect to the login page, with the way back."""
    response = client.get(f"/meetings/{org.meeting.id}", headers={"HX-Request": "true",
                          "HX-Current-URL": f"http://x/meetings/{org.meeting.id}"})
    assert response.status_code == 200
    assert response.headers["HX-Redirect"].startswith("/login?next=")
    assert org.meeting.id in response.headers["HX-Redirect"]


def test_closed_meeting_roll_call_is_read_only(client, auth, secretary):
    """After a meeting closed, a tap is refused with a message and nothing changes."""
    from models import Meeting

    with db.connection_context():
        meeting = Meeting.get_by_id(secretary.meeting.id)
        meeting.status = "closed"
        meeting.save()
    html = client.get(f"/meetings/{meeting.id}").get_data(as_text=True)
    assert "điểm danh chỉ xem" in html
    response = auth.htmx_post(f"/meetings/{meeting.id}/attendance/{secretary.members[0].id}")
    assert response.status_code == 422
    assert "đã khóa" in response.get_data(as_text=True)
    with db.connection_context():
        assert Attendance.select().count() == 0


def test_home_page_leads_to_the_next_meetings_roll_call(client, secretary):
    """The secretary's home shows the next open meeting with a one-tap way into its roll call."""
    html = client.get("/").get_data(as_text=True)
    assert "Buổi tới: " + secretary.meeting.held_on.strftime("%d/%m/%Y") in html
    assert f'href="/meetings/{secretary.meeting.id}"' in html


def test_meeting_page_links_every_step(client, secretary):
    """The step bar links preparation, roll call and scoring of the same meeting."""
    html = client.get(f"/meetings/{secretary.meeting.id}").get_data(as_text=True)
    for label in ("Chuẩn bị", "Điểm danh", "Chấm điểm"):
        assert label in html
    assert f"/meetings/{secretary.meeting.id}/sheets/thuong_ky" in html
