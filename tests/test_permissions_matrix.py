"""Role × action matrix: every route needs a login, and each role gets exactly the answer it should
for the organisation, member and account actions (200 allowed, 403 someone else's, 404 missing)."""
from __future__ import annotations

import pytest

from models import Member, User, db

PUBLIC = {"static", "auth.login", "favicon"}  # the tab icon holds nothing private


def _dummy_url(rule) -> str:
    """The rule's URL with every variable filled by a value no record has."""
    values = {name: 0 if type(rule._converters[name]).__name__ == "IntegerConverter" else "khong-co"
              for name in rule.arguments}
    from flask import url_for

    return url_for(rule.endpoint, **values)


def test_every_route_requires_login(app, client, org):
    """Anonymous requests to any non-public, non-sync route go to the login page (or 401)."""
    checked = []
    with app.test_request_context():
        rules = [r for r in app.url_map.iter_rules()
                 if r.endpoint not in PUBLIC and not r.endpoint.startswith("sync_api.")]
        urls = [(r, _dummy_url(r)) for r in rules]
    for rule, url in urls:
        method = "GET" if "GET" in rule.methods else sorted(rule.methods - {"HEAD", "OPTIONS"})[0]
        response = client.open(url, method=method)
        assert response.status_code in (302, 401), f"{method} {url} answered {response.status_code} without login"
        if response.status_code == 302:
            assert "/login" in response.headers["Location"], url
        # htmx sees HX-Redirect rather than a login page inside a fragment.
        hx = client.open(url, method=method, headers={"HX-Request": "true"})
        assert hx.status_code in (200, 401) and ("HX-Redirect" in hx.headers or hx.status_code == 401), url
        checked.append(rule.endpoint)
    # The matrix must see the routes this issue adds, and whatever else exists by now.
    for endpoint in ("members.member_list", "members.roster_import", "accounts.account_list", "cells.org_tree",
                     "cells.cell_edit", "auth.password_change", "meetings.meeting_view"):
        assert endpoint in checked


ROLES = ["admin", "btv", "bithu1", "dangvien1"]


def _matrix(org, user_ids, other):
    """(method, path, {role: expected status}) for the actions of this issue."""
    own = org.members[0].id
    all_ok = dict.fromkeys(ROLES, 200)
    admin_only = {"admin": 200, "btv": 403, "bithu1": 403, "dangvien1": 403}
    writers = {"admin": 200, "btv": 403, "bithu1": 200, "dangvien1": 403}
    readers_all = {"admin": 200, "btv": 200, "bithu1": 403, "dangvien1": 403}
    return [
        ("GET", "/", all_ok),
        ("GET", "/account/password", all_ok),
        ("GET", "/members", all_ok),
        ("GET", f"/members/{own}", {"admin": 200, "btv": 200, "bithu1": 200, "dangvien1": 403}),
        ("GET", f"/members/{other}", readers_all),
        ("GET", "/members/khong-co", dict.fromkeys(ROLES, 404)),
        ("GET", f"/members/{own}/edit", writers),
        ("GET", f"/members/{other}/edit", admin_only),
        ("GET", f"/members/{own}/status", writers),
        ("GET", f"/members/{other}/status", admin_only),
        ("GET", f"/members/{own}/positions", admin_only),
        ("GET", "/members/new", writers),
        ("GET", "/members/import", writers),
        ("GET", "/members/import/khong-co", {"admin": 404, "btv": 404, "bithu1": 404, "dangvien1": 404}),
        ("GET", "/members/export.xlsx", {"admin": 200, "btv": 200, "bithu1": 200, "dangvien1": 403}),
        ("GET", f"/cells/{org.cell.id}", all_ok),
        ("GET", f"/cells/{org.other_cell.id}", readers_all),
        ("GET", "/cells/khong-co", dict.fromkeys(ROLES, 404)),
        ("GET", f"/cells/{org.cell.id}/edit", admin_only),
        ("GET", "/cells/new", admin_only),
        ("GET", "/org", readers_all),
        ("GET", "/org/new", admin_only),
        ("GET", f"/org/{org.organisation.id}/edit", admin_only),
        ("GET", "/accounts", admin_only),
        ("GET", "/accounts/new", admin_only),
        ("GET", f"/accounts/{user_ids['bithu2']}", admin_only),
        ("POST", f"/accounts/{user_ids['bithu2']}/reset", admin_only),
        ("GET", f"/meetings/{org.meeting.id}", all_ok),
    ]


@pytest.mark.parametrize("role", ROLES)
def test_role_action_matrix(client, auth, org, role):
    """Each role gets exactly the expected status for every action in the matrix."""
    with db.connection_context():
        user_ids = {u.username: u.id for u in User.select()}
        other = Member.get(Member.cell == org.other_cell.id).id  # the other cell's only member
    assert auth.login(role).status_code == 303
    auth.token("/")
    wrong = []
    for method, path, expected in _matrix(org, user_ids, other):
        if method == "GET":
            status = client.get(path).status_code
        else:
            status = client.post(path, data={"csrf_token": auth.csrf}).status_code
        if status != expected[role]:
            wrong.append(f"{method} {path}: {status}, expected {expected[role]}")
    assert not wrong, f"{role}: " + "; ".join(wrong)


def test_member_role_reads_own_record_when_linked(client, auth, org):
    """A member linked to their record reads it, and only it."""
    with db.connection_context():
        user = User.get(User.username == "dangvien1")
        user.member = org.members[3].id
        user.save()
    auth.login("dangvien1")
    assert client.get(f"/members/{org.members[3].id}").status_code == 200
    assert client.get(f"/members/{org.members[4].id}").status_code == 403
    assert client.get(f"/members/{org.members[3].id}/edit").status_code == 403
