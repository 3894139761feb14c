"""Members over HTTP: list with search and filters, profile, add/edit with clear errors, status
changes with their decision, positions with terms, the audit trail, and scope (404/403)."""
from __future__ import annotations

import datetime as dt
import re

import pytest

from tests.conftest import received_from_central

from models import Member, MemberStatusChange, Position, db
from models.audit import AuditEntry
from models.meetings import Attendance, Meeting


def _member(member_id):
    with db.connection_context():
        return Member.get_by_id(member_id)


@pytest.fixture
def admin(client, auth, org):
    """Logged in as central's admin."""
    assert auth.login("admin").status_code == 303
    auth.token("/members")
    return org


@pytest.fixture
def secretary(client, auth, org):
    """Logged in as the first cell's secretary."""
    assert auth.login("bithu1").status_code == 303
    auth.token("/members")
    return org


def test_search_ignores_case_and_diacritics(client, admin):
    """"nguyen van an" finds Nguyễn Văn An; the htmx answer is only the result list."""
    response = client.get("/members?q=nguyen+van+an", headers={"HX-Request": "true", "HX-Target": "member-results"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "Nguyễn Văn An" in html and "Trần Thị Bình" not in html
    assert "<html" not in html and 'id="member-results"' in html
    assert "Đặng Văn Hải" in client.get("/members?q=DANG").get_data(as_text=True)


def test_filters_by_cell_status_and_position(client, admin):
    """Cell, status and current position filters narrow the list."""
    org = admin
    html = client.get(f"/members?cell={org.other_cell.id}").get_data(as_text=True)
    assert "Ngô Văn Khác" in html and "Nguyễn Văn An" not in html
    html = client.get("/members?status=probationary").get_data(as_text=True)
    assert "Đặng Văn Hải" in html and "Nguyễn Văn An" not in html
    with db.connection_context():
        Position.create(member=org.members[1].id, kind="pho_bi_thu", start_on=dt.date(2024, 1, 1))
    html = client.get("/members?position=pho_bi_thu").get_data(as_text=True)
    assert "Trần Thị Bình" in html and "Nguyễn Văn An" not in html


def test_secretary_lists_only_their_cell(client, secretary):
    """A secretary's list never shows another cell's members, whatever the filter says."""
    html = client.get(f"/members?cell={secretary.other_cell.id}&status=").get_data(as_text=True)
    assert "Ngô Văn Khác" not in html
    assert "Nguyễn Văn An" in client.get("/members").get_data(as_text=True)


def test_scope_on_profile(client, auth, org):
    """Missing member 404; another cell's member 403 for a secretary; a member sees only themselves."""
    with db.connection_context():
        other = Member.get(Member.full_name == "Ngô Văn Khác")
        from models import User
        user = User.get(User.username == "dangvien1")
        user.member = org.members[2].id
        user.save()
    auth.login("bithu1")
    assert client.get("/members/khong-co").status_code == 404
    assert client.get(f"/members/{other.id}").status_code == 403
    assert client.get(f"/members/{org.members[0].id}").status_code == 200
    auth.logout()
    auth.login("dangvien1")
    assert client.get(f"/members/{org.members[2].id}").status_code == 200
    assert client.get(f"/members/{org.members[0].id}").status_code == 403
    html = client.get("/members?status=").get_data(as_text=True)
    assert "Lê Văn Cường" in html and "Nguyễn Văn An" not in html


def test_secretary_cannot_edit_another_cells_member_by_url(client, auth, secretary):
    """Typing another cell's member edit URL is refused and nothing changes."""
    with db.connection_context():
        other = Member.get(Member.full_name == "Ngô Văn Khác")
    response = client.post(f"/members/{other.id}/edit", data={"csrf_token": auth.csrf, "full_name": "Đổi Tên"})
    assert response.status_code == 403
    assert _member(other.id).full_name == "Ngô Văn Khác"


def test_supervisor_reads_but_cannot_edit(client, auth, org):
    """A Standing Committee member reads every member but edits none."""
    auth.login("btv")
    auth.token("/members")
    assert client.get(f"/members/{org.members[0].id}").status_code == 200
    assert client.get(f"/members/{org.members[0].id}/edit").status_code == 403
    assert client.get("/members/new").status_code == 403


def _new_member_form(auth, org, **overrides):
    data = {"csrf_token": auth.csrf, "full_name": "Huỳnh Thị Mới", "cell": org.cell.id, "birth_year": "1990",
            "gender": "nu", "admitted_on": "15/03/2015", "full_member_on": "15/03/2016", "card_number": "93.111222",
            "status": "full", "effective_on": "15/03/2016", "decision": "", "reason": ""}
    data.update(overrides)
    return data


def test_add_member_creates_status_event_and_audit(client, auth, secretary):
    """Adding a member records their status from its date and an audit row naming the secretary."""
    response = client.post("/members/new", data=_new_member_form(auth, secretary))
    assert response.status_code == 303
    with db.connection_context():
        member = Member.get(Member.full_name == "Huỳnh Thị Mới")
        event = MemberStatusChange.get(MemberStatusChange.member == member.id)
        entry = AuditEntry.get((AuditEntry.table == "member") & (AuditEntry.record_id == member.id))
    assert member.admitted_on == dt.date(2015, 3, 15) and member.gender == "nu"
    assert (event.status, event.effective_on) == ("full", dt.date(2016, 3, 16 - 1))
    assert entry.action == "create" and entry.user_name == "bithu1" and entry.node == "central"
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Lịch sử thay đổi" in html and "15/03/2015" in html


@pytest.mark.parametrize("overrides, message", [
    ({"full_name": ""}, "Vui lòng nhập họ và tên"),
    ({"admitted_on": "31/02/2020"}, "Ngày không hợp lệ"),
    ({"admitted_on": (dt.date.today() + dt.timedelta(days=3)).strftime("%d/%m/%Y")}, "không được ở tương lai"),
    ({"birth_year": "năm"}, "Năm sinh phải là số"),
    ({"full_member_on": "01/01/2010"}, "Ngày chính thức phải sau ngày vào Đảng"),
    ({"status": "exempted", "decision": ""}, "số quyết định"),
])
def test_add_member_errors_keep_input_and_change_nothing(client, auth, secretary, overrides, message):
    """Bad input answers 422 with a Vietnamese message, the typed values kept, nothing written."""
    with db.connection_context():
        before = Member.select().count()
    response = client.post("/members/new", data=_new_member_form(auth, secretary, **overrides),
                           headers={"HX-Request": "true"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and message in html
    assert 'value="93.111222"' in html  # typed input kept
    with db.connection_context():
        assert Member.select().count() == before


def test_duplicate_card_number_is_a_clear_message(client, auth, secretary):
    """A card number already used names the member who has it."""
    with db.connection_context():
        member = Member.get_by_id(secretary.members[0].id)
        member.card_number = "93.111222"
        member.save()
    response = client.post("/members/new", data=_new_member_form(auth, secretary))
    assert response.status_code == 422
    assert "Số thẻ đảng viên 93.111222 đã có (đảng viên Nguyễn Văn An)" in response.get_data(as_text=True)


def test_edit_member_and_history_shows_old_and_new(client, auth, secretary):
    """An edit is saved and the profile's history lists the old and new name."""
    member = secretary.members[2]
    form = {"csrf_token": auth.csrf, "full_name": "Lê Văn Cương", "birth_year": "1980", "gender": "nam",
            "admitted_on": "01/02/2010", "full_member_on": "", "card_number": "", "cell": secretary.cell.id}
    assert client.post(f"/members/{member.id}/edit", data=form).status_code == 303
    html = client.get(f"/members/{member.id}").get_data(as_text=True)
    assert "Lê Văn Cường" in html and "Lê Văn Cương" in html and "01/02/2010" in html
    assert _member(member.id).birth_year == 1980


def test_status_change_exempt_needs_decision_and_reason(client, auth, secretary):
    """Exempting needs a decision and reason; then the member leaves the attendance count."""
    member = secretary.members[3]
    bad = client.post(f"/members/{member.id}/status", data={"csrf_token": auth.csrf, "status": "exempted",
                                                             "effective_on": "01/06/2024"})
    assert bad.status_code == 422 and "Vui lòng ghi lý do" in bad.get_data(as_text=True)
    assert _member(member.id).status == "full"
    ok = client.post(f"/members/{member.id}/status", data={
        "csrf_token": auth.csrf, "status": "exempted", "effective_on": "01/06/2024",
        "decision": "NQ 05-NQ/CB", "reason": "Tuổi cao, sức khỏe yếu"})
    assert ok.status_code == 303
    changed = _member(member.id)
    assert changed.status == "exempted" and not changed.counts_for_attendance
    html = client.get(f"/members/{member.id}").get_data(as_text=True)
    assert "NQ 05-NQ/CB" in html and "01/06/2024" in html


def test_positions_with_terms_replace_previous_secretary(client, auth, admin):
    """Naming a new secretary ends the previous holder's term; the cached position follows."""
    org = admin
    with db.connection_context():
        Position.create(member=org.members[0].id, kind="bi_thu", start_on=dt.date(2020, 1, 1))
    response = client.post(f"/members/{org.members[1].id}/positions",
                           data={"csrf_token": auth.csrf, "kind": "bi_thu", "start_on": "01/01/2025"})
    assert response.status_code == 303
    with db.connection_context():
        old = Position.get(Position.member == org.members[0].id)
        assert old.end_on == dt.date(2024, 12, 31)
        assert Member.get_by_id(org.members[1].id).position == "bi_thu"
        assert Member.get_by_id(org.members[0].id).position == ""
    future = (dt.date.today() + dt.timedelta(days=10)).strftime("%d/%m/%Y")
    bad = client.post(f"/members/{org.members[2].id}/positions",
                      data={"csrf_token": auth.csrf, "kind": "chi_uy_vien", "start_on": future})
    assert bad.status_code == 422 and "không được ở tương lai" in bad.get_data(as_text=True)


def test_secretary_cannot_assign_positions(client, auth, secretary):
    """Positions belong to central: a secretary is refused."""
    response = client.post(f"/members/{secretary.members[1].id}/positions",
                           data={"csrf_token": auth.csrf, "kind": "bi_thu", "start_on": "01/01/2025"})
    assert response.status_code == 403


def test_profile_shows_attendance_rate_per_year(client, admin):
    """The profile counts the member's roll calls per year: 2 of 3 present in 2024 is 66,7%."""
    org = admin
    member = org.members[0]
    with db.connection_context():
        for day, status in [(dt.date(2024, 1, 5), "present"), (dt.date(2024, 2, 5), "present"),
                            (dt.date(2024, 3, 5), "excused"), (dt.date(2023, 3, 5), "present")]:
            meeting = Meeting.create(cell=org.cell.id, held_on=day)
            Attendance.create(meeting=meeting.id, member=member.id, status=status, reason="Ốm" if status == "excused" else "")
    html = client.get(f"/members/{member.id}").get_data(as_text=True)
    table = html.split('data-testid="activity"')[1].split("</table>")[0]
    assert "2024" in table and "2/3" in table and "66,7%" in table
    assert "2023" in table and "100%" in table


def test_field_node_edits_only_cells_it_holds(tmp_path):
    """At a field node, the admin may not edit a member of a cell held by another node."""
    from app import create_app
    from models import Cell, Organisation, User
    from models.rules import seed_rule_sets

    app = create_app({"TESTING": True, "SECRET_KEY": "t", "ROLE": "field", "NODE_ID": "doi-1",
                      "DATABASE_URL": f"sqlite:///{tmp_path / 'field.sqlite3'}"})
    with app.app_context(), db.connection_context(), received_from_central():
        seed_rule_sets()
        o = Organisation.create(name="Đảng bộ")
        here = Cell.create(organisation=o.id, code="CB01", name="Chi bộ Một", node_id="doi-1")
        away = Cell.create(organisation=o.id, code="CB02", name="Chi bộ Hai", node_id="doi-2")
        mine = Member.create(cell=here.id, full_name="Người Ở Đây")
        theirs = Member.create(cell=away.id, full_name="Người Nơi Khác")
        user = User(username="admin", role="admin")
        user.set_password("mat-khau-dai-du")
        user.save()
    client = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").get_data(as_text=True)).group(1)
    client.post("/login", data={"username": "admin", "password": "mat-khau-dai-du", "csrf_token": token})
    assert client.get(f"/members/{mine.id}/edit").status_code == 200
    assert client.get(f"/members/{theirs.id}/edit").status_code == 403
    assert client.get("/accounts").status_code == 403  # accounts are central's


def test_htmx_save_answers_hx_redirect_not_a_page_in_the_form(client, auth, secretary):
    """A successful htmx save sends HX-Redirect to the profile instead of a followed 303."""
    response = client.post("/members/new", data=_new_member_form(auth, secretary), headers={"HX-Request": "true"})
    assert response.status_code == 204
    assert response.headers["HX-Redirect"].startswith("/members/")
