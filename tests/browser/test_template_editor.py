"""The central admin edits the regular-meeting sheet in the browser: a new version as a copy, an item
added (a typo refused in place, the typed text kept), publish refused while points do not add up,
an item deleted and another moved, the tablet preview, then publish, all on a 800x1280 tablet."""
import re

import pytest
from playwright.sync_api import Page, expect

from models import db
from models.checklist_seed import seed_checklists
from models.checklists import TemplateVersion, published_for_kind, version_tree
from tests.conftest import PASSWORD


@pytest.fixture
def sheets(live_server, org, app):
    """The seeded checklists in the database the live server uses."""
    with app.app_context(), db.connection_context():
        seed_checklists()
    return live_server


def login(page: Page, base: str, username: str) -> None:
    """Log in through the Vietnamese login page."""
    page.goto(f"{base}/login")
    page.get_by_label("Tên đăng nhập").fill(username)
    page.get_by_label("Mật khẩu").fill(PASSWORD)
    page.get_by_role("button", name="Đăng nhập").click()


def test_admin_publishes_a_new_version_of_the_regular_sheet(page: Page, sheets, app, tmp_path):
    """Every editor step happens in place (htmx) and ends with v2 published and v1 retired."""
    base = sheets
    page.on("dialog", lambda dialog: dialog.accept())
    login(page, base, "admin")
    page.get_by_role("link", name="Mẫu phiếu").click()
    page.get_by_role("link", name=re.compile("Phiếu chấm điểm sinh hoạt chi bộ thường kỳ")).click()
    page.get_by_role("button", name=re.compile("Tạo phiên bản mới")).click()
    expect(page.get_by_role("heading", name=re.compile("Phiên bản 2"))).to_be_visible()
    points = page.locator("#points-check")
    expect(points).to_contain_text("100 / 100")
    expect(points).to_contain_text("khớp")
    page.evaluate("window.__noReload = true")

    conduct = page.locator("article.section").filter(has=page.get_by_role("heading", name=re.compile("III. Tiến hành")))
    conduct.get_by_role("link", name="+ Thêm tiêu chí").tap()
    form = page.locator("#item-form")
    # Only the fields of the chosen type show: choices appear for a single-choice item.
    expect(form.get_by_label(re.compile("Các lựa chọn"))).to_be_hidden()
    form.get_by_label("Loại").select_option("single_choice")
    expect(form.get_by_label(re.compile("Các lựa chọn"))).to_be_visible()
    form.get_by_label("Loại").select_option("yes_no")
    form.get_by_label("Mã tiêu chí").fill("C 13")
    form.get_by_label("Nội dung tiêu chí").fill("Đảng viên liên hệ trách nhiệm nêu gương")
    form.get_by_label("Điểm (tối đa)").fill("2")
    form.get_by_role("button", name="Thêm tiêu chí").tap()
    expect(page.locator("#item-form")).to_contain_text("Mã tiêu chí gồm chữ, số")
    expect(page.locator("#item-form").get_by_label("Nội dung tiêu chí")).to_have_value("Đảng viên liên hệ trách nhiệm nêu gương")
    page.locator("#item-form").get_by_label("Mã tiêu chí").fill("C13")
    page.locator("#item-form").get_by_role("button", name="Thêm tiêu chí").tap()
    expect(page.locator("#item-form")).to_have_count(0)
    expect(page.locator(".item[data-code='C13']")).to_contain_text("Đảng viên liên hệ trách nhiệm nêu gương")
    expect(points).to_contain_text("102 / 100")
    expect(points).to_contain_text("chưa khớp")

    page.get_by_role("button", name="Ban hành phiên bản 2").tap()
    expect(page.get_by_role("alert")).to_contain_text("Tổng điểm các tiêu chí là 102, khác tổng điểm của phiếu (100).")

    page.get_by_role("button", name="Xóa C12").tap()
    expect(page.locator(".item[data-code='C12']")).to_have_count(0)
    expect(points).to_contain_text("100 / 100")
    page.get_by_role("button", name="Chuyển C13 lên").tap()
    expect(page.locator("article.section").nth(2).locator(".item").last).to_have_attribute("data-code", "C11")
    codes = page.locator("article.section").nth(2).locator(".item").evaluate_all("els => els.map(e => e.dataset.code)")
    assert codes[-2:] == ["C13", "C11"]
    assert page.evaluate("window.__noReload") is True
    assert page.evaluate("document.documentElement.scrollWidth") <= 800
    page.screenshot(path=str(tmp_path / "editor.png"), full_page=True)

    page.get_by_role("link", name="Xem như trên máy tính bảng").click()
    question = page.locator(".q[data-code='C13']")
    expect(question).to_contain_text("Đảng viên liên hệ trách nhiệm nêu gương")
    expect(question.get_by_role("button", name="Có")).to_be_visible()
    expect(page.locator(".q[data-code='B6']")).to_contain_text("Tự tính: Tỷ lệ đảng viên dự (%)")
    box = question.get_by_role("button", name="Có").bounding_box()
    assert box["height"] >= 48 and box["width"] >= 48
    page.go_back()

    page.get_by_role("button", name="Ban hành phiên bản 2").tap()
    expect(page.locator("#editor .vstatus")).to_have_text("Đã ban hành")
    expect(page.get_by_role("button", name="Ban hành phiên bản 2")).to_have_count(0)
    with app.app_context(), db.connection_context():
        current = published_for_kind("thuong_ky")
        assert current.number == 2
        assert [i.code for i in version_tree(current)[2][1]][-2:] == ["C13", "C11"]
        v1 = TemplateVersion.get((TemplateVersion.template == current.template_id) & (TemplateVersion.number == 1))
        assert v1.status == "retired"


def test_secretary_scores_a_meeting_on_the_tablet(page: Page, sheets, org, tmp_path):
    """Taps on the sheet save at once and the score bar follows; N/A leaves the maximum."""
    login(page, sheets, "bithu1")
    page.goto(f"{sheets}/meetings/{org.meeting.id}/sheets/thuong_ky")
    total = page.get_by_test_id("score-total")
    expect(total).to_have_text("0/100")
    page.evaluate("window.__noReload = true")
    a1 = page.locator(".q[data-code='A1']")
    a1.get_by_role("button", name="Có").tap()
    expect(a1.get_by_role("button", name="Có")).to_have_attribute("aria-pressed", "true")
    expect(total).to_have_text("3/100")
    page.locator(".q[data-code='C10']").get_by_role("button", name="4", exact=True).tap()
    expect(total).to_have_text("7/100")
    page.locator(".q[data-code='C9']").get_by_role("button", name="Không áp dụng").tap()
    expect(total).to_have_text("7/98")
    c1 = page.locator(".q[data-code='C1']")
    c1.get_by_role("button", name="Không").tap()
    expect(c1).to_contain_text("Trả lời: Không.")
    expect(page.get_by_test_id("score-band")).to_have_text("Kém")
    assert page.evaluate("window.__noReload") is True
    assert page.evaluate("document.documentElement.scrollWidth") <= 800
    box = a1.get_by_role("button", name="Có").bounding_box()
    assert box["height"] >= 48
    page.screenshot(path=str(tmp_path / "fill.png"), full_page=False)
    page.reload()
    expect(page.get_by_test_id("score-total")).to_have_text("7/98")
