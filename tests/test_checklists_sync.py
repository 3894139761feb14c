"""Done-when of issue 4 over two real nodes: central publishes v2 of the regular-meeting sheet in its
web screens, the field node receives it on the next sync, a new meeting there is scored with v2
while last year's meeting keeps v1 and its score, and the answers travel back to central."""
from __future__ import annotations

import re

import pytest

from tests.test_sync_integration import (
    PASSWORD,
    SETUP_CENTRAL,
    Server,
    free_port,
    login,
    node_env,
    query,
    run,
    sync,
)


@pytest.fixture
def nodes(tmp_path):
    """Central (seeding the sheets when it starts, doi-1 registered for CB02) and field node doi-1."""
    central_env = node_env(tmp_path, "central", "central", free_port())
    import json

    ids = json.loads(run(central_env, "-c", SETUP_CENTRAL, PASSWORD).stdout.strip().splitlines()[-1])
    assert "0 mẫu phiếu" in run(central_env, "db", "up").stdout  # already seeded at start
    assert query(central_env, "SELECT count(*) FROM checklist_template") == [(5,)]
    token = run(central_env, "nodes", "register", "doi-1", "--cells", "CB02").stdout.strip().splitlines()[-1]
    servers = []
    try:
        servers.append(Server(central_env, tmp_path / "central.log"))
        field_env = node_env(tmp_path, "field", "doi-1", free_port(),
                             CHIBO_CENTRAL_URL=servers[0].url, CHIBO_SYNC_TOKEN=token)
        servers.append(Server(field_env, tmp_path / "field.log"))
        yield central_env, servers[0], field_env, servers[1], ids
    finally:
        for server in servers:
            server.stop()


def new_meeting(server, session, csrf, cell_id, day):
    """Create a meeting over HTTP on the field node; return its id."""
    response = session.post(f"{server.url}/cells/{cell_id}/meetings/new", allow_redirects=False, timeout=10,
                            data={"csrf_token": csrf, "held_on": day, "kind": "regular", "starts_at": "14:00"})
    assert response.status_code == 303, response.text[:300]
    return response.headers["Location"].rstrip("/").split("/")[-1]


def sheet(server, session, meeting_id):
    """The meeting's regular sheet page and its answer-set id."""
    html = session.get(f"{server.url}/meetings/{meeting_id}/sheets/thuong_ky", timeout=10).text
    return html, re.search(r"/answer-sets/([0-9a-f-]{36})/items/", html).group(1)


def published_item(node, code):
    """The id of an item of the published regular-meeting sheet on a node."""
    return query(node, "SELECT i.id FROM template_item i JOIN template_version v ON v.id = i.version_id "
                       "JOIN checklist_template t ON t.id = v.template_id "
                       "WHERE v.status='published' AND t.kind='thuong_ky' AND i.code=?", code)[0][0]


def test_published_version_reaches_the_field_node_and_old_meetings_keep_theirs(nodes):
    """The whole life of a sheet version across central and a field office."""
    central, central_server, field, field_server, ids = nodes
    assert "Đồng bộ thành công" in sync(field).stdout
    count = "SELECT COUNT(*) FROM template_item WHERE deleted_at IS NULL"
    assert query(field, count) == query(central, count) and query(field, count)[0][0] > 50
    assert query(field, "SELECT number, status FROM template_version v JOIN checklist_template t "
                        "ON t.id = v.template_id WHERE t.kind='thuong_ky'") == [(1, "published")]

    # Last year's meeting at the field office, scored with v1.
    session, csrf = login(field_server.url, "bithu2")
    old = new_meeting(field_server, session, csrf, ids["cb02"], "2025-03-06")
    html, old_set = sheet(field_server, session, old)
    assert "phiên bản 1" in html
    # Opening the sheet wrote nothing (a GET never writes): the first tap makes the answer set.
    assert query(field, "SELECT COUNT(*) FROM answer_set WHERE id=?", old_set) == [(0,)]
    a1 = published_item(field, "A1")
    response = session.post(f"{field_server.url}/answer-sets/{old_set}/items/{a1}", data={"value": "1"},
                            headers={"HX-Request": "true", "X-CSRFToken": csrf}, timeout=10)
    assert response.status_code == 200 and 'data-testid="score-total">3/100' in response.text

    # Central's admin makes v2 in the editor: C1 gets a new wording, then publishes.
    admin, admin_csrf = login(central_server.url, "admin")
    template_id = query(central, "SELECT id FROM checklist_template WHERE code='thuong-ky-100'")[0][0]
    created = admin.post(f"{central_server.url}/checklists/{template_id}/versions", data={"csrf_token": admin_csrf},
                         allow_redirects=False, timeout=10)
    draft = created.headers["Location"].rstrip("/").split("/")[-1]
    c1 = query(central, "SELECT id FROM template_item WHERE version_id=? AND code='C1'", draft)[0][0]
    htmx = {"HX-Request": "true", "X-CSRFToken": admin_csrf}
    edited = admin.post(f"{central_server.url}/checklists/items/{c1}", headers=htmx, timeout=10,
                        data={"code": "C1", "text": "Quán triệt Chỉ thị 50-CT/TW và văn bản cấp trên",
                              "type": "yes_no", "points": "4"})
    assert edited.status_code == 200
    published = admin.post(f"{central_server.url}/checklists/versions/{draft}/publish", headers=htmx, timeout=10)
    assert published.status_code == 204

    # The next sync brings v2 (and v1's retirement) to the field node.
    sync(field)
    assert query(field, "SELECT number, status FROM template_version WHERE template_id=? ORDER BY number",
                 template_id) == [(1, "retired"), (2, "published")]

    # A new meeting at the field office uses v2; last year's still shows v1 with its score.
    fresh = new_meeting(field_server, session, csrf, ids["cb02"], "2026-01-05")
    html, new_set = sheet(field_server, session, fresh)
    assert "phiên bản 2" in html and "Quán triệt Chỉ thị 50-CT/TW" in html
    started = session.post(f"{field_server.url}/answer-sets/{new_set}/items/{published_item(field, 'A1')}",
                           data={"value": "1"}, headers={"HX-Request": "true", "X-CSRFToken": csrf}, timeout=10)
    assert started.status_code == 200
    html, again = sheet(field_server, session, old)
    assert again == old_set and "phiên bản 1" in html and "3/100" in html
    assert "Thông tin thời sự; phổ biến, quán triệt văn bản cấp trên" in html

    # The answers go up with the next sync, each pointing to its own version.
    sync(field)
    rows = dict(query(central, "SELECT s.id, v.number FROM answer_set s JOIN template_version v "
                               "ON v.id = s.version_id"))
    assert rows == {old_set: 1, new_set: 2}
    assert query(central, "SELECT value_json FROM answer WHERE answer_set_id=?", old_set) == [("true",)]
