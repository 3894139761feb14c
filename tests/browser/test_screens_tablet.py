"""What a secretary noticed on a tablet, checked on every main screen at 800×1280 (issue 9's list).

Each screen is opened in Chromium as its user would: every link, button and field a finger uses is at
least 44 px tall; no internal code ("A1.ngay", "mã chuan-bi") and no doubled "(15 điểm) (15 điểm)" in
the text; dates read dd/mm/yyyy and no field opens the browser's own date picker (mm/dd/yyyy in an
English browser); the preparation and scoring sheets' breadcrumbs name the sheet, not "Chấm điểm".
"""
from __future__ import annotations

import datetime as dt
import re

import pytest
from playwright.sync_api import Page

from models import Meeting, db
from models.checklist_seed import seed_checklists
from models.checklists import ChecklistTemplate, TemplateVersion
from models.meeting_record import Task
from models.rules import RuleSet
from tests.conftest import PASSWORD

# Controls a finger taps; links inside running text (a sentence) are not targets on their own.
TARGETS = ("a:not(p:not(.crumbs) > a):not(li.muted a), button, select, summary, textarea, "
           "input:not([type=hidden]):not([type=checkbox]):not([type=radio])")
MEASURE = """(selector) => [...document.querySelectorAll(selector)]
  .filter(e => e.offsetParent !== null && !e.closest('[hidden], .no-tap-check'))
  .map(e => { const r = e.getBoundingClientRect();
              return {h: r.height, text: (e.innerText || e.value || e.getAttribute('aria-label') || e.name || '').trim().slice(0, 40),
                      tag: e.tagName.toLowerCase(), cls: e.className}; })
  .filter(r => r.h > 0 && r.h < 44)"""
CODE = re.compile(r"\b[A-Z]{1,2}\d{1,2}\.[a-z_]+\b|\bmã [a-z]+[-_][a-z-_]+")
DOUBLED = re.compile(r"(\(\d+(?:[,.]\d+)? điểm\))\s*\1")
ISO_DATE = re.compile(r"\b(19|20)\d\d-\d\d-\d\d\b")


@pytest.fixture
def screens(app, org):
    """Seeded templates; a signed meeting last month with a task; the org's meeting today."""
    with app.app_context(), db.connection_context():
        seed_checklists()
        last = dt.date.today().replace(day=1) - dt.timedelta(days=20)
        earlier = Meeting.create(cell=org.cell.id, held_on=last, kind="thematic", starts_at=dt.time(14, 0),
                                 started_at=dt.time(14, 0), ended_at=dt.time(15, 30), status="ended",
                                 chair=org.members[0].id, secretary=org.members[1].id)
        Task.create(meeting=earlier.id, text="Rà soát hồ sơ", assignee=org.members[2].id, due_on=dt.date.today())
        template = ChecklistTemplate.get(ChecklistTemplate.kind == "chuan_bi")
        version = TemplateVersion.get(TemplateVersion.template == template.id)
        rules = RuleSet.select().first()
        ids = dict(cell=org.cell.id, meeting=org.meeting.id, earlier=earlier.id, template=template.id,
                   version=version.id, rules=rules.id, member=org.members[0].id)
    return ids


def pages_for(ids: dict) -> dict[str, list[str]]:
    """The main screens per user."""
    m = ids["meeting"]
    meeting = [f"/meetings/{m}", f"/meetings/{m}/hold", f"/meetings/{m}/conclusion", f"/meetings/{m}/minutes",
               f"/meetings/{m}/sheets/chuan_bi", f"/meetings/{m}/sheets/thuong_ky",
               f"/meetings/{ids['earlier']}/minutes"]
    return {
        "bithu1": ["/", f"/cells/{ids['cell']}", f"/cells/{ids['cell']}/meetings/new", *meeting, "/members",
                   f"/members/{ids['member']}"],
        "admin": ["/checklists/", f"/checklists/{ids['template']}", f"/checklists/versions/{ids['version']}",
                  f"/checklists/versions/{ids['version']}/preview", "/checklists/new", "/rules/",
                  f"/rules/{ids['rules']}", "/rules/new", "/orientations", f"/cells/{ids['cell']}"],
    }


def log_in(page: Page, base: str, username: str) -> None:
    """Log in through the form."""
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)


def test_every_main_screen_keeps_the_tablet_rules(page: Page, live_server, screens):
    """Touch targets ≥ 44 px, no codes, no doubled points, dd/mm/yyyy, breadcrumbs name the sheet."""
    problems: list[str] = []
    for username, paths in pages_for(screens).items():
        page.context.clear_cookies()
        log_in(page, live_server, username)
        for path in paths:
            response = page.goto(f"{live_server}{path}")
            assert response.status == 200, (username, path, response.status)
            where = f"{username} {path}"
            for small in page.evaluate(MEASURE, TARGETS):
                problems.append(f"{where}: {small['tag']}.{small['cls']} “{small['text']}” cao {small['h']:.0f} px")
            text = page.locator("main").inner_text()
            for pattern, what in ((CODE, "mã nội bộ"), (DOUBLED, "điểm lặp"), (ISO_DATE, "ngày không dd/mm/yyyy")):
                for found in pattern.findall(text) if pattern is not ISO_DATE else [m.group(0) for m in pattern.finditer(text)]:
                    problems.append(f"{where}: {what} “{found}”")
            pickers = page.locator("input[type=date], input[type=datetime-local], input[type=month]").count()
            if pickers:
                problems.append(f"{where}: {pickers} ô chọn ngày của trình duyệt")
            crumbs = page.locator("main .crumbs")
            if crumbs.count() and crumbs.first.inner_text().strip().endswith("Chấm điểm") and "/sheets/" in path:
                problems.append(f"{where}: breadcrumb kết thúc bằng “Chấm điểm”")
    assert not problems, "\n".join(problems)
