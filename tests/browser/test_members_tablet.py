"""Members on a 800x1280 tablet: search-as-you-type without a reload, filters, the profile; the
roster import's preview with per-row messages, a refused file, and the all-or-nothing apply."""
from __future__ import annotations

import io
import re

from openpyxl import Workbook
from playwright.sync_api import Page, expect

from models import Member, db
from tests.conftest import PASSWORD

HEADERS = ["Họ và tên", "Năm sinh", "Giới tính", "Ngày vào Đảng", "Ngày chính thức", "Số thẻ đảng viên",
           "Trạng thái", "Chức vụ", "Mã chi bộ"]


def login(page: Page, base: str, username: str) -> None:
    """Log in through the Vietnamese login page."""
    page.goto(f"{base}/login")
    page.get_by_label("Tên đăng nhập").fill(username)
    page.get_by_label("Mật khẩu").fill(PASSWORD)
    page.get_by_role("button", name="Đăng nhập").click()
    expect(page.get_by_role("heading", name="Các chi bộ")).to_be_visible()


def workbook(rows) -> bytes:
    """An XLSX roster with the Vietnamese headers."""
    book = Workbook()
    sheet = book.active
    sheet.append(HEADERS)
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def no_horizontal_scroll(page: Page) -> bool:
    """True when nothing is wider than the viewport."""
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_member_list_search_as_you_type_and_filters(page: Page, live_server, org):
    """Typing without diacritics narrows the list in place; filters combine; a row opens the profile."""
    login(page, live_server, "admin")
    page.get_by_role("navigation").get_by_role("link", name="Đảng viên").tap()
    expect(page.get_by_role("heading", name="Đảng viên")).to_be_visible()
    rows = page.get_by_test_id("member-row")
    expect(rows).to_have_count(9)
    page.evaluate("window.__noReload = true")

    page.get_by_label("Tìm theo họ tên hoặc số thẻ").fill("van")
    expect(rows).to_have_count(5)  # An, Cường, Em, Hải (Văn) and Ngô Văn Khác
    page.get_by_label("Tìm theo họ tên hoặc số thẻ").fill("dang van hai")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Đặng Văn Hải")
    expect(rows.first).to_contain_text("DB")
    assert "q=dang%20van%20hai" in page.url  # the search is in the address, so back/reload keep it

    page.get_by_label("Tìm theo họ tên hoặc số thẻ").fill("")
    page.get_by_label("Chi bộ").select_option(label="CB02 · Chi bộ Hai")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Ngô Văn Khác")
    page.get_by_label("Chi bộ").select_option(label="Tất cả chi bộ")
    page.get_by_label("Trạng thái").select_option(label="Miễn sinh hoạt")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Bùi Thị Khánh")
    assert page.evaluate("window.__noReload") is True
    assert no_horizontal_scroll(page)

    # Row height is a comfortable touch target.
    box = rows.first.get_by_role("link").bounding_box()
    assert box["height"] >= 48
    rows.first.get_by_role("link").tap()
    expect(page.get_by_role("heading", name=re.compile("Bùi Thị Khánh"))).to_be_visible()
    expect(page.get_by_role("heading", name="Lịch sử thay đổi")).to_be_visible()
    assert no_horizontal_scroll(page)


def test_roster_import_preview_refusal_and_apply(page: Page, live_server, org, tmp_path):
    """A file with a bad row is previewed with its message and cannot be applied; the fixed file is."""
    login(page, live_server, "bithu1")
    page.goto(f"{live_server}/members")
    page.get_by_role("link", name="Nhập từ tệp Excel/CSV").tap()
    expect(page.get_by_role("heading", name="Nhập danh sách đảng viên")).to_be_visible()

    # A broken workbook: refused on the upload page.
    broken = tmp_path / "hong.xlsx"
    broken.write_bytes(b"PK\x03\x04 day khong phai tep excel")
    page.get_by_label("Tệp danh sách").set_input_files(str(broken))
    page.get_by_role("button", name="Kiểm tra và xem trước").tap()
    expect(page.get_by_test_id("import-error")).to_contain_text("tệp bị hỏng")

    good = ["Trương Thị Nhập", "1988", "Nữ", "02/09/2012", "02/09/2013", "92.000111", "Chính thức", "", "CB01"]
    other_cell = ["Lâm Văn Lạc", "1979", "Nam", "01/01/2001", "01/01/2002", "92.000222", "Chính thức", "", "CB02"]
    bad_file = tmp_path / "danh-sach-loi.xlsx"
    bad_file.write_bytes(workbook([good, other_cell]))
    page.get_by_label("Tệp danh sách").set_input_files(str(bad_file))
    page.get_by_role("button", name="Kiểm tra và xem trước").tap()
    expect(page.get_by_test_id("import-summary")).to_contain_text("1 dòng có lỗi")
    expect(page.get_by_text(re.compile("Mã chi bộ “CB02” không có"))).to_be_visible()
    expect(page.get_by_test_id("apply")).to_have_count(0)
    assert no_horizontal_scroll(page)
    with db.connection_context():
        assert Member.select().where(Member.full_name == "Trương Thị Nhập").count() == 0

    page.get_by_role("link", name="Chọn tệp khác").tap()
    good_file = tmp_path / "danh-sach.xlsx"
    good_file.write_bytes(workbook([good]))
    page.get_by_label("Tệp danh sách").set_input_files(str(good_file))
    page.get_by_role("button", name="Kiểm tra và xem trước").tap()
    expect(page.get_by_test_id("import-summary")).to_contain_text("hợp lệ")
    expect(page.get_by_test_id("preview-row")).to_have_count(1)
    page.get_by_test_id("apply").tap()
    expect(page.get_by_text("Đã nhập 1 đảng viên từ tệp danh-sach.xlsx.")).to_be_visible()
    expect(page.get_by_test_id("member-row").filter(has_text="Trương Thị Nhập")).to_have_count(1)
    with db.connection_context():
        member = Member.get(Member.full_name == "Trương Thị Nhập")
        assert member.cell_id == org.cell.id and member.card_number == "92.000111"


def test_member_pages_at_desktop_size(browser, live_server, org):
    """At 1366x768 the list, profile and import page fit the width too (the clerk's desktop)."""
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="vi-VN")
    page = context.new_page()
    try:
        login(page, live_server, "admin")
        for path in ("/members", f"/members/{org.members[0].id}", "/members/import", "/org", f"/cells/{org.cell.id}"):
            page.goto(live_server + path)
            expect(page.locator("h1")).to_be_visible()
            assert no_horizontal_scroll(page), path
    finally:
        context.close()


def test_tablet_pages_fit_portrait_width(page: Page, live_server, org):
    """Profile, forms and the organisation tree have no horizontal scroll at 800 px."""
    login(page, live_server, "admin")
    for path in (f"/members/{org.members[0].id}", f"/members/{org.members[0].id}/edit", "/members/new",
                 "/accounts", "/org", f"/cells/{org.cell.id}/edit", "/account/password"):
        page.goto(live_server + path)
        expect(page.locator("h1")).to_be_visible()
        assert no_horizontal_scroll(page), path


def test_expired_session_during_search_returns_to_the_same_list(page: Page, live_server, org):
    """Session gone mid-search: htmx goes to the login page (never inside the list) and back after login."""
    login(page, live_server, "bithu1")
    page.goto(f"{live_server}/members?q=nguyen")
    expect(page.get_by_test_id("member-row")).to_have_count(1)
    # A response still in flight (the favicon) would set the refreshed session cookie again after the clear.
    page.wait_for_load_state("networkidle")
    page.context.clear_cookies()  # what an idle expiry looks like to the browser
    page.get_by_label("Tìm theo họ tên hoặc số thẻ").fill("tran")
    expect(page.get_by_role("heading", name="Đăng nhập")).to_be_visible()
    assert "/login?next=" in page.url
    expect(page.get_by_test_id("member-row")).to_have_count(0)  # no list under the login form
    page.get_by_label("Tên đăng nhập").fill("bithu1")
    page.get_by_label("Mật khẩu").fill(PASSWORD)
    page.get_by_role("button", name="Đăng nhập").click()
    expect(page.get_by_role("heading", name="Đảng viên")).to_be_visible()
    assert "/members" in page.url and "q=" in page.url


def test_add_member_form_error_in_place_then_saved(page: Page, live_server, org):
    """A future date is refused in place with the input kept; corrected, the profile opens."""
    login(page, live_server, "bithu1")
    page.goto(f"{live_server}/cells/{org.cell.id}")
    page.get_by_role("link", name="+ Thêm đảng viên").tap()
    page.get_by_label("Họ và tên").fill("Châu Thị Tablet")
    page.get_by_label("Ngày vào Đảng").fill("01/01/2099")
    page.get_by_role("button", name="Lưu").tap()
    expect(page.get_by_text("Ngày không được ở tương lai.")).to_be_visible()
    expect(page.get_by_label("Họ và tên")).to_have_value("Châu Thị Tablet")
    page.get_by_label("Ngày vào Đảng").fill("01/01/2019")
    page.get_by_label("Trạng thái từ ngày").fill("01/01/2019")
    page.get_by_role("button", name="Lưu").tap()
    expect(page.get_by_role("heading", name=re.compile("Châu Thị Tablet"))).to_be_visible()
    expect(page.locator(".facts")).to_contain_text("01/01/2019")
    assert page.locator("form#member-form").count() == 0  # a real page, not a page inside the form
