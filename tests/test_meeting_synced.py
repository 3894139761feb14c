"""A whole meeting held on a field node's screens, synced, shows the same at central.

Real processes as in tests/test_sync_integration.py: central and field node doi-1 each run
`python app.py` on their own database; the secretary holds the meeting on the field node over HTTP
(the same posts the tablet's htmx makes), the operator runs `flask --app app sync`, and the test reads
the meeting's pages, the printable minutes and the PDF at both ends and compares what a person sees
(the navigation, the node's sync badge and the write controls are the node's own chrome).
"""
from __future__ import annotations

import datetime as dt
import io
import json
import re
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pytest
from pypdf import PdfReader

from tests.test_sync_integration import (PASSWORD, SETUP_CENTRAL, Server, free_port, login, node_env, query, run,
                                         sync)

# Elements whose text is the node's chrome or a control, not the meeting's content.
SKIP = {"nav", "header", "footer", "form", "button", "script", "style", "select", "textarea", "input", "template"}
VOID = {"input", "br", "img", "meta", "link", "hr", "source", "col", "area", "base", "wbr"}


class VisibleText(HTMLParser):
    """The text a person reads inside <main>, outside controls, node badges and hidden blocks."""

    def __init__(self):
        """Start outside <main>."""
        super().__init__()
        self.stack: list[bool] = []  # per open element: is it skipped?
        self.inside_main = 0
        self.words: list[str] = []

    def handle_starttag(self, tag, attrs):
        """Track <main> and the skipped subtrees."""
        if tag in VOID:
            return
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        skipped = (tag in SKIP or "hidden" in attrs or "no-print" in classes or "sync-badge" in classes
                   or attrs.get("aria-hidden") == "true")
        self.stack.append(skipped)
        if tag == "main":
            self.inside_main += 1

    def handle_endtag(self, tag):
        """Close the innermost open element of that name."""
        if tag in VOID or not self.stack:
            return
        self.stack.pop()
        if tag == "main":
            self.inside_main -= 1

    def handle_data(self, data):
        """Keep words seen inside <main> and outside skipped elements."""
        if self.inside_main and not any(self.stack):
            self.words.extend(data.split())


def visible(html: str) -> str:
    """The page's content text, whitespace normalised."""
    parser = VisibleText()
    parser.feed(html)
    return " ".join(parser.words)


def pdf_text(body: bytes) -> str:
    """Every page's text, whitespace normalised."""
    reader = PdfReader(io.BytesIO(body))
    return " ".join(" ".join((p.extract_text() or "").split()) for p in reader.pages)


@pytest.fixture
def two_nodes(tmp_path):
    """Central and field node doi-1 (holding CB02), both serving HTTP."""
    central_env = node_env(tmp_path, "central", "central", free_port())
    ids = json.loads(run(central_env, "-c", SETUP_CENTRAL, PASSWORD).stdout.strip().splitlines()[-1])
    token = run(central_env, "nodes", "register", "doi-1", "--name", "Đội số 1",
                "--cells", "CB02").stdout.strip().splitlines()[-1]
    servers = []
    try:
        servers.append(Server(central_env, tmp_path / "central.log"))
        field_env = node_env(tmp_path, "field", "doi-1", free_port(), CHIBO_CENTRAL_URL=servers[0].url,
                             CHIBO_SYNC_TOKEN=token)
        servers.append(Server(field_env, tmp_path / "field.log"))
        yield central_env, field_env, servers[0], servers[1], ids
    finally:
        for server in servers:
            server.stop()


def hx_post(session, url: str, csrf: str, **data):
    """One tap on the tablet: an htmx post with the CSRF header; must be accepted."""
    response = session.post(url, data=data, headers={"HX-Request": "true", "X-CSRFToken": csrf}, timeout=10)
    assert response.status_code in (200, 204), (url, response.status_code, response.text[:400])
    return response


PAGES = ("", "/hold", "/conclusion", "/minutes")


def test_a_meeting_held_on_the_field_node_shows_identically_at_central(two_nodes):
    """Start, roll call, contributions, vote, resolution and tasks, end, approve, sign; sync; compare."""
    central_env, field_env, central, field, ids = two_nodes
    assert "Đồng bộ thành công" in sync(field_env).stdout
    two = ids["two"]  # Phạm Văn Dũng (bí thư), Hoàng Thị Hoa, Võ Văn Khoa, Đặng Thị Lan
    session, csrf = login(field.url, "bithu2")
    today = dt.date.today()
    response = session.post(f"{field.url}/cells/{ids['cb02']}/meetings/new", allow_redirects=False, timeout=10,
                            data={"csrf_token": csrf, "held_on": today.strftime("%d/%m/%Y"), "kind": "regular",
                                  "starts_at": "14:00", "title": ""})
    assert response.status_code == 303, response.text[:500]
    meeting_id = response.headers["Location"].rstrip("/").split("/")[-1]
    base = f"{field.url}/meetings/{meeting_id}"

    hx_post(session, f"{base}/start", csrf)
    hx_post(session, f"{base}/attendance-all", csrf)
    hx_post(session, f"{base}/attendance/{two[3]}", csrf, status="excused", reason="Đi công tác")
    hx_post(session, f"{base}/roles", csrf, chair=two[0], secretary=two[1], place="Hội trường Đội số 1")
    hx_post(session, f"{base}/guests", csrf, name="Trần Quốc Hưng", position="Phó Bí thư Đảng ủy",
            kind="superior", key="0191a0b0-0000-7000-8000-000000000001")
    spoken = [(two[0], "y_kien", "Đánh giá kết quả công tác tháng"), (two[1], "tu_phe_binh", "Chậm nộp báo cáo"),
              (two[2], "de_xuat", "Tăng cường kiểm tra địa bàn"), (two[1], "phe_binh", "")]
    for n, (member, kind, summary) in enumerate(spoken):
        hx_post(session, f"{base}/contributions", csrf, member=member, kind=kind, summary=summary,
                key=f"0191a0b0-0000-7000-8000-00000000010{n}")
    hx_post(session, f"{base}/votes", csrf, subject="Thông qua nghị quyết tháng", in_favour="2", against="1",
            abstain="0", key="0191a0b0-0000-7000-8000-000000000201")
    hx_post(session, f"{base}/conclusion", csrf, conclusion_kind="nghi_quyet",
            conclusion="Chi bộ thống nhất tập trung kiểm tra hàng giả dịp cuối năm.")
    for n, (text, who) in enumerate((("Lập kế hoạch kiểm tra", two[0]), ("Tổng hợp báo cáo quý", two[1]),
                                     ("Tuyên truyền tại chợ", two[2]))):
        hx_post(session, f"{base}/tasks", csrf, text=text, assignee=who,
                due_on=(today + dt.timedelta(days=20 + n)).strftime("%d/%m/%Y"),
                key=f"0191a0b0-0000-7000-8000-00000000030{n}")
    # Ten minutes ago in Vietnam, so "Kết thúc" comes later (past midnight too) at any hour of the run.
    ago = (dt.datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")) - dt.timedelta(minutes=10)).strftime("%H:%M")
    hx_post(session, f"{base}/times", csrf, started_at=ago, ended_at="")
    hx_post(session, f"{base}/end", csrf)
    hx_post(session, f"{base}/times", csrf, started_at="14:00", ended_at="15:40")
    for step in ("read_back", "approve", "sign_chair", "sign_secretary"):
        hx_post(session, f"{base}/minutes/{step}", csrf)

    field_pages = {p: visible(session.get(f"{base}{p}", timeout=10).text) for p in PAGES}
    field_pdf = pdf_text(session.get(f"{base}/minutes.pdf", timeout=10).content)
    # The field node's minutes say what happened (so an empty comparison cannot pass).
    for text in ("Hoàng Thị Hoa", "Đặng Thị Lan", "Đi công tác", "Trần Quốc Hưng", "Thông qua nghị quyết tháng",
                 "Tuyên truyền tại chợ", "tập trung kiểm tra hàng giả"):
        assert text in field_pages["/minutes"], text
        assert text in field_pdf, text
    assert query(field_env, "SELECT status FROM meeting WHERE id=?", meeting_id) == [("closed",)]  # signed

    pushed = sync(field_env)
    assert "Đồng bộ thành công" in pushed.stdout, pushed.stdout + pushed.stderr
    assert query(central_env, "SELECT status FROM meeting WHERE id=?", meeting_id) == [("closed",)]
    assert not query(central_env, "SELECT \"table\", reason FROM sync_dead_letter WHERE node_id='doi-1'")

    at_central, _ = login(central.url, "admin")
    remote = f"{central.url}/meetings/{meeting_id}"
    central_pages = {p: visible(at_central.get(f"{remote}{p}", timeout=10).text) for p in PAGES}
    central_pdf = pdf_text(at_central.get(f"{remote}/minutes.pdf", timeout=10).content)
    for page in PAGES:
        assert central_pages[page] == field_pages[page], page or "/"
    assert central_pdf == field_pdf
