"""The cell secretary's roll call on a tablet: log in, tap tiles, watch the rate change in place."""
import re

from playwright.sync_api import Page, expect

from tests.conftest import PASSWORD


def login(page: Page, base: str, username: str) -> None:
    """Log in through the Vietnamese login page."""
    page.goto(f"{base}/login")
    expect(page.get_by_role("heading", name="Đăng nhập")).to_be_visible()
    page.get_by_label("Tên đăng nhập").fill(username)
    page.get_by_label("Mật khẩu").fill(PASSWORD)
    page.get_by_role("button", name="Đăng nhập").click()


def test_secretary_takes_roll_call_and_sees_rate_change(page: Page, live_server, org):
    """Tap by tap the summary bar updates without a page reload and judges against 85% (once started)."""
    import datetime as dt

    from models import Meeting, db

    with db.connection_context():
        meeting = Meeting.get_by_id(org.meeting.id)
        meeting.status, meeting.started_at = "in_progress", dt.time(14, 0)
        meeting.save()
    login(page, live_server, "bithu1")
    expect(page.get_by_role("heading", name="Các chi bộ")).to_be_visible()
    page.get_by_role("link", name=re.compile("Chi bộ Một")).click()
    page.get_by_role("link", name=org.meeting.held_on.strftime("%d/%m/%Y")).click()

    rate = page.get_by_test_id("attendance-rate")
    count = page.get_by_test_id("present-count")
    expect(count).to_have_text("0/7")
    # Mark the page so a full reload would be detected (htmx swaps keep it).
    page.evaluate("window.__noReload = true")

    tiles = page.get_by_test_id("tile")
    expect(tiles).to_have_count(8)
    exempt = tiles.filter(has_text="Bùi Thị Khánh")
    expect(exempt).to_contain_text("Miễn SH")
    expect(exempt.get_by_role("button")).to_have_count(0)

    names = ["Nguyễn Văn An", "Trần Thị Bình", "Lê Văn Cường", "Phạm Thị Dung", "Hoàng Văn Em", "Võ Thị Giang"]
    for name in names:
        tiles.filter(has_text=name).get_by_role("button").first.tap()
        expect(tiles.filter(has_text=name)).to_contain_text("Có mặt")
    expect(count).to_have_text("6/7")
    expect(rate).to_have_text("85,7%")
    expect(page.get_by_test_id("attendance-verdict")).to_have_text("đạt")

    # Second tap: excused, with a reason chosen from the chips.
    an = tiles.filter(has_text="Nguyễn Văn An")
    an.get_by_role("button", name=re.compile("Nguyễn Văn An")).tap()
    expect(an).to_contain_text("Vắng có lý do")
    an.get_by_role("button", name="Đi công tác").tap()
    expect(tiles.filter(has_text="Nguyễn Văn An")).to_contain_text("Đi công tác")
    expect(count).to_have_text("5/7")
    expect(rate).to_have_text("71,4%")
    expect(page.get_by_test_id("attendance-verdict")).to_have_text("chưa đạt")
    assert page.evaluate("window.__noReload") is True

    # A reload returns to the same state: every tap was saved.
    page.reload()
    expect(page.get_by_test_id("present-count")).to_have_text("5/7")
    expect(page.get_by_test_id("tile").filter(has_text="Nguyễn Văn An")).to_contain_text("Đi công tác")


def test_a_failed_save_shows_on_the_tile_and_the_next_tap_retries(page: Page, live_server, org):
    """With the network down the tapped tile says it was not saved; once back, a tap saves it."""
    login(page, live_server, "bithu1")
    page.goto(f"{live_server}/meetings/{org.meeting.id}")
    tile = page.get_by_test_id("tile").filter(has_text="Trần Thị Bình")
    page.route("**/attendance/**", lambda route: route.abort("internetdisconnected"))
    expect(tile.get_by_text("Chưa lưu được — chạm lại để thử")).to_be_hidden()
    tile.get_by_role("button").first.tap()
    expect(tile.get_by_text("Chưa lưu được — chạm lại để thử")).to_be_visible()
    expect(page.get_by_test_id("present-count")).to_have_text("0/7")
    page.unroute("**/attendance/**")
    tile.get_by_role("button").first.tap()
    saved = page.get_by_test_id("tile").filter(has_text="Trần Thị Bình")
    expect(saved.get_by_test_id("tile-state")).to_have_text("Có mặt")
    expect(saved.get_by_text("Chưa lưu được — chạm lại để thử")).to_be_hidden()
    expect(page.get_by_test_id("present-count")).to_have_text("1/7")
