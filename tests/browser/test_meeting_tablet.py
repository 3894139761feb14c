"""Done when: a whole regular meeting of a 25-member cell recorded on a 800x1280 tablet, taps counted.

Start, roll call ("Tất cả có mặt" then the absences), the preparation sheet used by the scoring
sheet, 15 contributions, a vote, a resolution with 3 tasks, end, read back, approval, signing; the
PDF minutes are downloaded and their text checked (names with diacritics, counts, the vote)."""
import datetime as dt
import io
import os
import re

import pytest
from playwright.sync_api import Page, expect
from pypdf import PdfReader

from models import Cell, Member, Meeting, Organisation, User, db
from models.checklist_seed import seed_checklists
from tests.conftest import PASSWORD

FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ"]
GIVEN = ["An", "Bình", "Cường", "Dũng", "Giang", "Hà", "Hải", "Hạnh", "Khánh", "Lâm", "Long", "Mai", "Minh",
         "Nga", "Ngọc", "Phúc", "Quân", "Quỳnh", "Sơn", "Tâm", "Thảo", "Thắng", "Trung", "Tuấn", "Yến"]


SHOTS = os.environ.get("CHIBO_SCREENSHOTS", "")


def shot(page: Page, name: str) -> None:
    """Save a full-page screenshot when CHIBO_SCREENSHOTS names a folder (to look at the layout)."""
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


class Taps:
    """Counts every tap (and select) the secretary makes."""

    def __init__(self):
        self.count = 0

    def tap(self, locator) -> None:
        """Tap a control and count it."""
        locator.tap()
        self.count += 1

    def select(self, locator, value: str) -> None:
        """Choose in a list (one tap on a tablet's picker) and count it."""
        locator.select_option(value)
        self.count += 1


@pytest.fixture
def cell25(app):
    """A cell of 25: 22 full, 2 probationary, 1 exempted; its secretary; today's regular meeting."""
    with app.app_context(), db.connection_context():
        seed_checklists()
        o = Organisation.create(name="Đảng bộ Cục Quản lý thị trường tỉnh Tiền Giang")
        cell = Cell.create(organisation=o.id, code="D01", name="Chi bộ Đội QLTT số 1",
                           meeting_day=dt.date.today().day if dt.date.today().day <= 28 else 28)
        members = []
        for i, given in enumerate(GIVEN):
            status = "probationary" if i in (3, 17) else "exempted" if i == 24 else "full"
            name = f"{FAMILY[i % len(FAMILY)]} {'Thị' if i % 2 else 'Văn'} {given}"
            members.append(Member.create(cell=cell.id, full_name=name, status=status,
                                         position="bi_thu" if i == 0 else "", full_member_on=None))
        meeting = Meeting.create(cell=cell.id, held_on=dt.date.today(), starts_at=dt.time(14, 0))
        user = User(username="bithu", role="secretary", full_name="Bí thư", cell=cell.id)
        user.set_password(PASSWORD)
        user.save()
        return cell, members, meeting


def test_whole_meeting_on_a_tablet(page: Page, live_server, cell25, tmp_path):
    """Record a complete meeting, sign it, download the PDF minutes and check their text."""
    cell, members, meeting = cell25
    taps = Taps()
    page.goto(f"{live_server}/login")
    page.get_by_label("Tên đăng nhập").fill("bithu")
    page.get_by_label("Mật khẩu").fill(PASSWORD)
    page.get_by_role("button", name="Đăng nhập").click()
    expect(page.get_by_role("heading", name="Các chi bộ")).to_be_visible()
    page.goto(f"{live_server}/meetings/{meeting.id}")
    steps = page.get_by_role("navigation", name="Các bước buổi sinh hoạt")

    # Preparation (chi ủy): six yes answers that the scoring sheet will use instead of asking again.
    taps.tap(steps.get_by_role("link", name="Chuẩn bị"))
    for code in ("A1", "A2", "A3", "A4", "A6", "A7"):
        question = page.locator(f'.q[data-code="{code}"]')
        taps.tap(question.get_by_role("button", name="Có"))
        expect(page.locator(f'.q[data-code="{code}"]').get_by_role("button", name="Có")).to_have_attribute("aria-pressed", "true")

    # Start; chair, secretary, place; the superior delegate.
    taps.tap(steps.get_by_role("link", name="Diễn biến"))
    taps.tap(page.get_by_test_id("start"))
    expect(page.get_by_test_id("started-at")).to_be_visible()
    taps.select(page.get_by_label("Chủ trì"), members[0].id)
    taps.select(page.get_by_label("Thư ký buổi sinh hoạt"), members[1].id)
    page.get_by_label("Địa điểm").fill("Mỹ Tho")
    page.get_by_label("Địa điểm").blur()
    expect(page.get_by_test_id("saved")).to_be_visible()
    page.get_by_label("Họ tên đại biểu").fill("Phạm Văn Giám")
    page.get_by_label("Chức vụ").fill("Ủy viên Ban Thường vụ Đảng ủy")
    with page.expect_response(re.compile(r"/guests$")):
        taps.tap(page.get_by_role("button", name="Thêm"))
    expect(page.get_by_test_id("guests")).to_contain_text("Phạm Văn Giám")

    # Roll call: everyone present, then two excused (with a reason chip) and one unexcused.
    taps.tap(steps.get_by_role("link", name="Điểm danh"))
    taps.tap(page.get_by_test_id("all-present"))
    expect(page.get_by_test_id("present-count")).to_have_text("24/24")
    tiles = page.get_by_test_id("tile")
    for who in (members[5], members[6]):
        tile = tiles.filter(has_text=who.full_name)
        taps.tap(tile.get_by_role("button", name=re.compile(who.full_name)))
        expect(tile).to_contain_text("Vắng có lý do")
        taps.tap(tile.get_by_role("button", name="Đi công tác"))
        expect(tiles.filter(has_text=who.full_name)).to_contain_text("Đi công tác")
    tile = tiles.filter(has_text=members[7].full_name)
    taps.tap(tile.get_by_role("button", name=re.compile(members[7].full_name)))
    expect(tile).to_contain_text("Vắng có lý do")
    taps.tap(tiles.filter(has_text=members[7].full_name).get_by_role("button", name=re.compile(members[7].full_name)))
    expect(tiles.filter(has_text=members[7].full_name)).to_contain_text("Vắng không lý do")
    expect(page.get_by_test_id("present-count")).to_have_text("21/24")
    expect(page.get_by_test_id("attendance-rate")).to_have_text("87,5%")
    expect(page.get_by_test_id("attendance-verdict")).to_have_text("đạt")
    shot(page, "diem-danh")

    # 15 contributions: tap a present member, then the kind (a summary typed for some).
    taps.tap(steps.get_by_role("link", name="Diễn biến"))
    present = [m for m in members if m.status != "exempted" and m not in (members[5], members[6], members[7])]
    plan = [("y_kien", "Đề nghị tăng cường kiểm tra hàng giả")] * 8 + [("tu_phe_binh", "Chậm nộp báo cáo")] * 3 \
        + [("phe_binh", "")] * 2 + [("de_xuat", "Phối hợp với công an kinh tế")] * 2
    for n, (kind, summary) in enumerate(plan, start=1):
        who = present[n % 12]
        taps.tap(page.get_by_test_id("speak-tile").filter(has_text=who.full_name))
        expect(page.get_by_test_id("kind-sheet")).to_contain_text(who.full_name)
        if summary:
            page.get_by_label("Tóm tắt ý kiến").fill(summary)
        taps.tap(page.get_by_test_id(f"kind-{kind}"))
        expect(page.get_by_test_id("speak-summary")).to_contain_text(f"{n} lượt")
    expect(page.get_by_test_id("speakers")).to_have_text("12/21")
    expect(page.get_by_test_id("count-tu_phe_binh")).to_have_text("3")
    shot(page, "dien-bien")

    # Conclusion: the resolution, a vote (everyone eligible in favour), three tasks.
    taps.tap(steps.get_by_role("link", name="Kết luận"))
    page.get_by_label("Nội dung nghị quyết, kết luận").fill("Chi bộ thống nhất tập trung kiểm tra thị trường dịp Tết Nguyên đán.")
    taps.tap(page.locator("#sec-conclusion").get_by_role("button", name="Lưu"))
    expect(page.locator("#sec-conclusion").get_by_test_id("saved")).to_be_visible()
    eligible = page.get_by_test_id("eligible").inner_text()
    assert eligible == "19"  # 21 present, of whom 2 probationary do not vote
    taps.tap(page.get_by_test_id("vote-save"))
    expect(page.get_by_test_id("votes")).to_contain_text("tán thành 19/19")
    due = (dt.date.today() + dt.timedelta(days=25)).strftime("%d/%m/%Y")
    for i, text in enumerate(["Kiểm tra chợ Long Hòa", "Tuyên truyền Luật Bảo vệ quyền lợi người tiêu dùng",
                              "Rà soát hồ sơ vụ việc tồn đọng"]):
        page.get_by_label("Nhiệm vụ").fill(text)
        taps.select(page.get_by_label("Người thực hiện"), present[i + 2].id)
        page.get_by_label("Hạn hoàn thành").fill(due)
        taps.tap(page.get_by_test_id("task-save"))
        expect(page.get_by_test_id("tasks")).to_contain_text(text)

    shot(page, "ket-luan")
    # The scoring sheet uses the preparation answers and the recorded contributions.
    taps.tap(steps.get_by_role("link", name="Chấm điểm"))
    expect(page.locator('.q[data-code="A1"]').get_by_test_id("prefilled")).to_contain_text("phiếu chuẩn bị")
    expect(page.locator('.q[data-code="A1"]').get_by_role("button", name="Có")).to_have_attribute("aria-pressed", "true")
    expect(page.locator('.q[data-code="C7"]')).to_contain_text("57,1% đảng viên có mặt phát biểu")
    expect(page.locator('.q[data-code="B10"]').get_by_test_id("prefilled")).to_be_visible()

    # End, then read back, approve and sign.
    taps.tap(steps.get_by_role("link", name="Diễn biến"))
    taps.tap(page.get_by_test_id("end"))
    expect(page.get_by_test_id("ended-at")).to_be_visible()
    taps.tap(steps.get_by_role("link", name="Biên bản"))
    for step, label in (("read_back", "Đã đọc lại biên bản"), ("approve", "Chi bộ thông qua biên bản"),
                        ("sign_chair", "Chủ trì ký")):
        taps.tap(page.get_by_test_id(f"minutes-{step}"))
        expect(page.get_by_text(f"✓ {label}")).to_be_visible()
    taps.tap(page.get_by_test_id("minutes-sign_secretary"))
    expect(page.get_by_test_id("minutes-signed")).to_be_visible()
    expect(page.get_by_test_id("meeting-status")).to_have_text("Đã ký biên bản")
    shot(page, "bien-ban")

    with page.expect_download() as info:
        taps.tap(page.get_by_test_id("minutes-pdf"))
    path = tmp_path / "bien-ban.pdf"
    info.value.save_as(path)
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(path.read_bytes())).pages)
    for expected in ("ĐẢNG CỘNG SẢN VIỆT NAM", "CHI BỘ ĐỘI QLTT SỐ 1", members[0].full_name, members[1].full_name,
                     members[5].full_name, members[7].full_name, "Có mặt: 21/24", "15 lượt", "12/21",
                     "tán thành 19/19", "thông qua", "Kiểm tra chợ Long Hòa", "Phạm Văn Giám", "dịp Tết Nguyên đán"):
        assert expected in text, expected
    print(f"\nSố lần chạm để ghi trọn buổi sinh hoạt: {taps.count}")
    assert taps.count < 100


def test_contribution_saved_after_the_wifi_returns(page: Page, live_server, cell25):
    """Offline, a contribution shows "not saved, retrying" on its section; once the link is back it
    is saved by itself, once (the retried request carries the same key)."""
    from models import Attendance, Contribution

    cell, members, meeting = cell25
    with db.connection_context():
        Attendance.create(meeting=meeting.id, member=members[2].id, status="present")
    page.goto(f"{live_server}/login")
    page.get_by_label("Tên đăng nhập").fill("bithu")
    page.get_by_label("Mật khẩu").fill(PASSWORD)
    page.get_by_role("button", name="Đăng nhập").click()
    page.goto(f"{live_server}/meetings/{meeting.id}/hold")
    page.get_by_test_id("speak-tile").filter(has_text=members[2].full_name).tap()
    page.route("**/contributions", lambda route: route.abort("internetdisconnected"))
    page.get_by_test_id("kind-y_kien").tap()
    section = page.locator("#sec-speak")
    expect(section).to_have_class(re.compile("save-retrying"))
    page.unroute("**/contributions")
    expect(page.get_by_test_id("count-y_kien")).to_have_text("1", timeout=15000)
    expect(page.locator("#sec-speak")).not_to_have_class(re.compile("save-failed"))
    with db.connection_context():
        assert Contribution.select().count() == 1


def test_scoring_answer_offline_shows_on_the_question(page: Page, live_server, cell25):
    """A scoring answer tapped without the Wi-Fi says so on the question instead of vanishing."""
    cell, members, meeting = cell25
    page.goto(f"{live_server}/login")
    page.get_by_label("Tên đăng nhập").fill("bithu")
    page.get_by_label("Mật khẩu").fill(PASSWORD)
    page.get_by_role("button", name="Đăng nhập").click()
    page.goto(f"{live_server}/meetings/{meeting.id}/sheets/thuong_ky")
    question = page.locator('.q[data-code="C1"]')
    page.route("**/answer-sets/**", lambda route: route.abort("internetdisconnected"))
    question.get_by_role("button", name="Có").tap()
    expect(question).to_have_class(re.compile("save-failed"))
    page.unroute("**/answer-sets/**")
    question.get_by_role("button", name="Có").tap()
    expect(page.locator('.q[data-code="C1"]').get_by_role("button", name="Có")).to_have_attribute("aria-pressed", "true")
    expect(page.locator('.q[data-code="C1"]')).not_to_have_class(re.compile("save-failed"))
