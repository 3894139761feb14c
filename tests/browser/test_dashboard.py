"""The consolidated dashboard on an 800x1280 tablet: the matrix scrolls inside its card (the page
never scrolls sideways), a number opens the meetings behind it, charts are inline SVG; the five-year
pack shows its progress and downloads as an XLSX with the hand-counted numbers."""
from __future__ import annotations

import io

from openpyxl import load_workbook
from playwright.sync_api import Page, expect

from tests.browser.test_members_tablet import login, no_horizontal_scroll
from tests.test_consolidation import YEAR, counted  # noqa: F401 (the hand-counted fixture)
from tests.test_consolidation_supervision import supervised  # noqa: F401 (the hand-counted supervision)


def test_dashboard_on_a_tablet_and_drill_down(page: Page, live_server, org, counted):  # noqa: F811
    """The year's numbers, the matrix with words as well as colours, and a drill-down by tapping."""
    login(page, live_server, "admin")
    page.get_by_role("navigation").get_by_role("link", name="Tổng hợp").tap()
    page.locator('input[name="year"]').fill(str(YEAR))
    page.get_by_role("button", name="Xem", exact=True).tap()
    expect(page.get_by_role("heading", name=f"Tổng hợp sinh hoạt chi bộ năm {YEAR}")).to_be_visible()
    totals = page.get_by_test_id("totals")
    expect(totals.get_by_role("row", name="Số buổi sinh hoạt đã tổ chức")).to_contain_text("4")
    expect(totals.get_by_role("row", name="Tỷ lệ đảng viên dự (%)")).to_contain_text("86,4")
    matrix = page.get_by_test_id("matrix")
    expect(matrix.locator('tr[data-cell="CB01"] td[data-month="2"]')).to_contain_text("Lệch ngày")
    expect(matrix.locator('tr[data-cell="CB01"] td[data-month="3"]')).to_contain_text("Thiếu")
    assert page.locator("svg.chart").count() >= 2
    assert no_horizontal_scroll(page)
    totals.get_by_role("row", name="Buổi đủ thời lượng theo quy định (%)").get_by_role("link").tap()
    expect(page.get_by_test_id("drill-count")).to_contain_text("1 buổi")
    expect(page.get_by_test_id("drill")).to_contain_text("07/02/2023")
    expect(page.get_by_test_id("drill")).to_contain_text("Thời lượng 60 phút")


def test_five_year_pack_progress_and_download(page: Page, live_server, org, counted):  # noqa: F811
    """Build the pack for the whole committee, watch it finish, download the XLSX and read it."""
    login(page, live_server, "admin")
    page.goto(f"{live_server}/reports/pack")
    page.get_by_label("Năm cuối kỳ").fill(str(YEAR))
    page.get_by_role("button", name="Lập báo cáo").tap()
    expect(page.get_by_test_id("pack-progress")).to_contain_text("đã xong", timeout=30000)
    with page.expect_download() as info:
        page.get_by_test_id("download-xlsx").click()
    download = info.value
    assert download.suggested_filename == f"so-ket-5-nam-{YEAR}.xlsx"
    book = load_workbook(io.BytesIO(open(download.path(), "rb").read()))
    rows = [list(r) for r in book.worksheets[0].iter_rows(values_only=True)]
    assert rows[0][0] == "Sinh hoạt thường kỳ: số buổi phải tổ chức và đã tổ chức"
    year_row = next(r for r in rows if r[0] == YEAR)
    assert year_row[2] == 3 and year_row[3] == 21  # 3 regular meetings held; CB01 misses 10 months, CB02 11
    assert any("Từng chi bộ" in sheet.title for sheet in book.worksheets)


def test_supervision_panels_drill_down_on_a_tablet(page: Page, live_server, org, supervised):  # noqa: F811
    """The overdue recommendations number opens the two overdue ones; the wide band table scrolls in its card."""
    login(page, live_server, "admin")
    page.goto(f"{live_server}/reports/?year={YEAR}")
    recs = page.locator('[data-panel="sup_recs"]')
    expect(recs.get_by_role("row", name="Quá hạn chưa khắc phục")).to_contain_text("2")
    expect(page.locator('[data-panel="sup_coverage"]').get_by_role("row", name="Tất cả chi bộ")).to_contain_text("4")
    assert no_horizontal_scroll(page)
    link = recs.get_by_role("row", name="Quá hạn chưa khắc phục").get_by_role("link")
    box = link.bounding_box()
    assert box["height"] >= 44 and box["width"] >= 44
    link.tap()
    expect(page.get_by_test_id("drill-count")).to_contain_text("2 dòng")
    expect(page.get_by_test_id("sup-drill")).to_contain_text("28/02/2023")
    assert no_horizontal_scroll(page)
