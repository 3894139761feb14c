"""Every htmx form either answers its fragment or navigates: htmx never follows a redirect and draws
the next page inside the form (two headers, the old URL, a reload offering an empty form).

The test opens the main screens as their users, collects every hx-post on them and posts it as htmx
does (HX-Request, CSRF header, the form's own fields); no answer may be a 3xx. The forms that create
something and then show it are also posted with good data and must navigate there (HX-Redirect).
"""
from __future__ import annotations

import datetime as dt
import html
import re

import pytest

from models import Meeting, Organisation, db
from models.checklists import ChecklistTemplate, TemplateVersion
from models.meeting_record import Task
from models.rules import RuleSet

HX_POST = re.compile(r'hx-post="([^"]+)"')


@pytest.fixture
def ids(app, seeded):
    """The org's meeting today, a planned one next month, an earlier one with a task, a template, rules."""
    org = seeded
    with app.app_context(), db.connection_context():
        nxt = dt.date.today().replace(day=1) + dt.timedelta(days=40)
        planned = Meeting.create(cell=org.cell.id, held_on=nxt.replace(day=10), kind="thematic")
        last = dt.date.today().replace(day=1) - dt.timedelta(days=20)
        earlier = Meeting.create(cell=org.cell.id, held_on=last, kind="thematic", status="ended",
                                 started_at=dt.time(14, 0), ended_at=dt.time(15, 30))
        Task.create(meeting=earlier.id, text="Rà soát hồ sơ", assignee=org.members[2].id)
        template = ChecklistTemplate.get(ChecklistTemplate.kind == "chuan_bi")
        version = TemplateVersion.get(TemplateVersion.template == template.id)
        return dict(cell=org.cell.id, meeting=org.meeting.id, planned=planned.id, template=template.id,
                    version=version.id, rules=RuleSet.select().first().id, org=org.organisation.id,
                    members=[m.id for m in org.members])


def screens(ids: dict) -> dict[str, list[str]]:
    """The screens with htmx forms, per user."""
    m = ids["meeting"]
    return {
        "bithu1": [f"/cells/{ids['cell']}/meetings/new", f"/meetings/{m}", f"/meetings/{m}/hold",
                   f"/meetings/{m}/conclusion", f"/meetings/{m}/minutes", f"/meetings/{ids['planned']}",
                   f"/meetings/{m}/sheets/chuan_bi", f"/meetings/{m}/sheets/thuong_ky"],
        "admin": ["/checklists/new", f"/checklists/{ids['template']}", f"/checklists/versions/{ids['version']}",
                  "/rules/new", "/orientations"],
    }


def test_no_htmx_form_answers_a_redirect(client, auth, ids):
    """Post every hx-post found on the main screens as htmx: fragments, 422s or HX-Redirect, never a 3xx."""
    redirected = []
    for username, paths in screens(ids).items():
        auth.logout()
        auth.login(username)
        targets: list[str] = []
        for path in paths:
            page = client.get(path)
            assert page.status_code == 200, (username, path)
            auth.csrf = re.search(r'"X-CSRFToken": "([^"]+)"', page.get_data(as_text=True)).group(1)
            targets += [html.unescape(u) for u in HX_POST.findall(page.get_data(as_text=True)) if u not in targets]
        # Deleting and signing last, so the other forms still have their records.
        targets.sort(key=lambda u: ("delete" in u, "sign" in u, "minutes" in u))
        assert len(targets) >= (15 if username == "bithu1" else 2), targets
        for url in targets:
            response = auth.htmx_post(url, {"key": "", "direction": "up"})
            if 300 <= response.status_code < 400:
                redirected.append(f"{username} {url} → {response.status_code} {response.headers.get('Location')}")
    assert not redirected, "\n".join(redirected)


@pytest.mark.parametrize("username, path, data, lands", [
    ("bithu1", "/cells/{cell}/meetings/new", {"held_on": "{next_month}", "kind": "extraordinary",
                                             "starts_at": "08:00", "title": "Họp bất thường"}, "/meetings/"),
    ("admin", "/checklists/new", {"name": "Phiếu thử", "kind": "chuan_bi", "code": "phieu-thu"}, "/checklists/"),
    ("admin", "/rules/new", {"code": "QT-2027", "title": "Quy tắc 2027", "effective_from": "01/01/2027"},
     "/rules/"),
    ("admin", "/orientations", {"year": "2026", "month": "12", "text": "Học tập nghị quyết"}, "/orientations"),
])
def test_a_form_that_creates_navigates_to_what_it_made(client, auth, ids, username, path, data, lands):
    """Good data posted as htmx answers HX-Redirect to the new page (which opens), not the page in the form."""
    next_month = (dt.date.today().replace(day=1) + dt.timedelta(days=45)).replace(day=3)
    fill = {k: v.format(next_month=next_month.strftime("%d/%m/%Y")) for k, v in data.items()}
    auth.login(username)
    url = path.format(**ids)
    page = client.get(url)
    auth.csrf = re.search(r'"X-CSRFToken": "([^"]+)"', page.get_data(as_text=True)).group(1)
    if "/rules/new" in url:  # every parameter, as the form shows them copied from a rule set
        from models.rules import form_from_rule_set
        with client.application.app_context(), db.connection_context():
            fill = {**form_from_rule_set(RuleSet.get_by_id(ids["rules"])), **fill}
    response = auth.htmx_post(url, fill)
    assert response.status_code in (200, 204), response.get_data(as_text=True)[:500]
    target = response.headers.get("HX-Redirect") or response.headers.get("HX-Location")
    assert target and lands in target, dict(response.headers)
    assert client.get(target).status_code == 200
