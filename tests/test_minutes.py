"""Minutes: generated on the template, a PDF with Vietnamese text, read back → approved → signed
(locks the meeting), a change after that only as a revision with a reason, revisions listed."""
import datetime as dt
import io

import pytest
from pypdf import PdfReader

from models import Attendance, Contribution, Meeting, MinutesRevision, db
from models.meeting_record import add_contribution, add_guest, add_task, record_vote, set_conclusion, set_roles
from models.minutes import minutes_data, minutes_pdf


def pdf_text(body: bytes) -> str:
    """All the text of a PDF, pages joined."""
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(body)).pages)


@pytest.fixture
def held(org):
    """The fixture meeting held: times, roles, attendance, contributions, a vote, a resolution, a task."""
    with db.connection_context():
        m = Meeting.get_by_id(org.meeting.id)
        m.started_at, m.ended_at, m.status = dt.time(14, 0), dt.time(15, 45), "ended"
        m.save()
        for i, member in enumerate(org.members[:7]):
            status = "excused" if i == 5 else "present"
            Attendance.create(meeting=m.id, member=member.id, status=status,
                              reason="Đi công tác" if status == "excused" else "")
        set_roles(m, org.members[0].id, org.members[1].id, "Hội trường Đội QLTT số 1")
        add_guest(m, "Phạm Văn Giám", "Ủy viên Ban Thường vụ", "superior")
        add_contribution(m, org.members[2].id, "y_kien", "Đề nghị tăng cường kiểm tra hàng giả")
        add_contribution(m, org.members[3].id, "tu_phe_binh", "Chậm nộp báo cáo tháng")
        set_conclusion(m, "nghi_quyet", "Chi bộ thống nhất tập trung kiểm tra thị trường dịp Tết.")
        record_vote(m, "Thông qua nghị quyết tháng", 4, 0, 0)
        add_task(m, "Kiểm tra chợ Long Hòa", org.members[4].id, "")
        return Meeting.get_by_id(m.id)


def test_minutes_data_follows_the_template(held):
    """Header, title, composition by status, absentees with reasons, speakers, vote, tasks."""
    with db.connection_context():
        data = minutes_data(held)
    assert data["party_committee"] == "ĐẢNG BỘ THỬ NGHIỆM" and data["cell"] == "CHI BỘ MỘT"
    assert data["subtitle"].startswith("Sinh hoạt chi bộ thường kỳ tháng")
    assert data["composition"] == {"full": 6, "probationary": 1, "exempted": 1, "temp_here": 0, "temp_elsewhere": 0}
    assert (data["present"], data["counted"]) == (6, 7)
    assert data["excused"] == [{"name": "Võ Thị Giang", "reason": "Đi công tác"}]
    assert data["chair"] == "Nguyễn Văn An" and data["secretary"] == "Trần Thị Bình"
    assert [c["name"] for c in data["contributions"]] == ["Lê Văn Cường", "Phạm Thị Dung"]
    assert data["votes"][0]["eligible"] == 5 and data["votes"][0]["result"] == "thông qua"
    assert data["tasks"][0]["assignee"] == "Hoàng Văn Em"


def test_pdf_has_vietnamese_text(held):
    """The PDF embeds a font with the glyphs: names, counts and the vote read back with diacritics."""
    with db.connection_context():
        body = minutes_pdf(minutes_data(held))
    assert body.startswith(b"%PDF")
    text = pdf_text(body)
    for expected in ("ĐẢNG CỘNG SẢN VIỆT NAM", "BIÊN BẢN", "Nguyễn Văn An", "Trần Thị Bình", "Võ Thị Giang",
                     "Đi công tác", "Có mặt: 6/7", "tán thành 4/5", "thông qua", "Phạm Văn Giám",
                     "Chậm nộp báo cáo tháng", "Kiểm tra chợ Long Hòa"):
        assert expected in text, expected


@pytest.fixture
def secretary(client, auth, held, org):
    """Logged in as the cell's secretary, the meeting held."""
    assert auth.login("bithu1").status_code == 303
    auth.token(f"/meetings/{org.meeting.id}/minutes")
    return org


def _step(auth, org, step):
    return auth.htmx_post(f"/meetings/{org.meeting.id}/minutes/{step}")


def test_sign_in_order_locks_the_meeting(client, auth, secretary):
    """Signing before approval is refused; read back → approve → both sign → locked, PDF final."""
    response = _step(auth, secretary, "sign_chair")
    assert response.status_code == 422 and "thông qua biên bản trước khi ký" in response.get_data(as_text=True)
    for step in ("read_back", "approve", "sign_chair"):
        assert _step(auth, secretary, step).status_code == 204
    with db.connection_context():
        assert Meeting.get_by_id(secretary.meeting.id).status == "ended"
    assert _step(auth, secretary, "sign_secretary").status_code == 204
    with db.connection_context():
        assert Meeting.get_by_id(secretary.meeting.id).status == "closed"
        assert MinutesRevision.get().snapshot["chair"] == "Nguyễn Văn An"
    html = client.get(f"/meetings/{secretary.meeting.id}/minutes").get_data(as_text=True)
    assert 'data-testid="minutes-signed"' in html and "BẢN DỰ THẢO" not in html
    pdf = client.get(f"/meetings/{secretary.meeting.id}/minutes.pdf")
    assert pdf.mimetype == "application/pdf" and "BẢN DỰ THẢO" not in pdf_text(pdf.data)


def _sign(auth, org):
    for step in ("read_back", "approve", "sign_chair", "sign_secretary"):
        assert _step(auth, org, step).status_code == 204


def test_signed_meeting_refuses_changes(client, auth, secretary):
    """After signing, a contribution, a vote or a roll-call tap is refused with what to do instead."""
    _sign(auth, secretary)
    m = secretary.meeting.id
    for path, data in ((f"contributions", {"member": secretary.members[2].id, "kind": "y_kien"}),
                       ("votes", {"subject": "X", "in_favour": "1"}),
                       (f"attendance/{secretary.members[2].id}", {})):
        response = auth.htmx_post(f"/meetings/{m}/{path}", data=data)
        assert response.status_code == 422, path
        assert "mở bản sửa đổi" in response.get_data(as_text=True)
    with db.connection_context():
        assert Contribution.select().count() == 2


def test_revision_needs_a_reason_and_is_listed(client, auth, secretary):
    """Reopening without a reason is refused; with one, a change is possible and re-signing lists both."""
    _sign(auth, secretary)
    response = auth.htmx_post(f"/meetings/{secretary.meeting.id}/revisions", data={"reason": ""})
    assert response.status_code == 422 and "lý do" in response.get_data(as_text=True)
    with db.connection_context():
        assert Meeting.get_by_id(secretary.meeting.id).status == "closed"
    response = auth.htmx_post(f"/meetings/{secretary.meeting.id}/revisions",
                              data={"reason": "Bổ sung ý kiến của đồng chí Cường"})
    assert response.status_code == 204
    response = auth.htmx_post(f"/meetings/{secretary.meeting.id}/contributions",
                              data={"member": secretary.members[2].id, "kind": "de_xuat"})
    assert response.status_code == 200
    _sign(auth, secretary)
    html = client.get(f"/meetings/{secretary.meeting.id}/minutes").get_data(as_text=True)
    assert "Bản 1" in html and "Bản 2" in html and "Bổ sung ý kiến của đồng chí Cường" in html
    old = client.get(f"/meetings/{secretary.meeting.id}/minutes?revision=1").get_data(as_text=True)
    assert "2 lượt" in old  # the first signed text keeps what it said
    new = client.get(f"/meetings/{secretary.meeting.id}/minutes").get_data(as_text=True)
    assert "3 lượt" in new


def test_minutes_cannot_be_signed_before_the_end(client, auth, org):
    """Without an end time the steps are refused and the page says what is missing."""
    assert auth.login("bithu1").status_code == 303
    auth.token(f"/meetings/{org.meeting.id}/minutes")
    html = client.get(f"/meetings/{org.meeting.id}/minutes").get_data(as_text=True)
    assert "Chưa bấm “Kết thúc”" in html
    response = auth.htmx_post(f"/meetings/{org.meeting.id}/minutes/read_back")
    assert response.status_code == 422


def test_meeting_closed_before_the_app_shows_its_minutes(client, auth, org):
    """A meeting closed without signed minutes here (kept on paper, or the demo) still shows and prints."""
    with db.connection_context():
        m = Meeting.get_by_id(org.meeting.id)
        m.status = "closed"
        m.save()
    assert auth.login("bithu1").status_code == 303
    html = client.get(f"/meetings/{org.meeting.id}/minutes").get_data(as_text=True)
    assert "biên bản ký trên giấy" in html
    pdf = client.get(f"/meetings/{org.meeting.id}/minutes.pdf")
    assert pdf.status_code == 200 and "BIÊN BẢN" in pdf_text(pdf.data)


@pytest.mark.parametrize("path, data", [
    ("times", {"started_at": "13:00", "ended_at": "16:00"}),
    ("roles", {"chair": "{m2}", "secretary": "{m3}", "place": "Phòng họp khác"}),
    ("conclusion", {"conclusion_kind": "ket_luan", "conclusion": "Sửa kết luận sau khi ký"}),
    ("tasks", {"text": "Nhiệm vụ thêm sau khi ký", "assignee": "{m2}", "due_on": ""}),
    ("guests", {"name": "Khách thêm sau", "position": "", "kind": "guest"}),
    ("attendance-all", {}),
    ("start", {}),
    ("end", {}),
    ("move", {"held_on": "{tomorrow}", "move_reason": "Đổi ngày sau khi ký"}),
    ("revisions", {"reason": ""}),
])
def test_editing_a_signed_meeting_without_a_reason_changes_nothing(client, auth, secretary, path, data):
    """Every edit of a signed meeting (or a reopening without a reason) answers 422 with what to do; the
    minutes, the meeting's status and its revisions stay exactly as signed."""
    _sign(auth, secretary)
    with db.connection_context():
        meeting = Meeting.get_by_id(secretary.meeting.id)
        before = (minutes_data(meeting), meeting.status, MinutesRevision.select().count())
    fill = {"m2": secretary.members[2].id, "m3": secretary.members[3].id,
            "tomorrow": (dt.date.today() + dt.timedelta(days=1)).strftime("%d/%m/%Y")}
    response = auth.htmx_post(f"/meetings/{secretary.meeting.id}/{path}",
                              data={k: v.format(**fill) for k, v in data.items()})
    assert response.status_code == 422, response.get_data(as_text=True)[:300]
    text = response.get_data(as_text=True)
    assert "mở bản sửa đổi" in text or "lý do" in text or "đã bắt đầu" in text, text
    with db.connection_context():
        meeting = Meeting.get_by_id(secretary.meeting.id)
        assert (minutes_data(meeting), meeting.status, MinutesRevision.select().count()) == before
