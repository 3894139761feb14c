"""Input that must never hurt (issue 8, part 2): bounded imports, exports that stay text, no 500s on
hostile values, a GET that never writes, UTF-16 and NFC, and a fuzz of the main forms."""
from __future__ import annotations

import datetime as dt
import io
import time
import unicodedata
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook, load_workbook

from models import SYNCED_MODELS, AuditEntry, ChangeLog, Member, User, db
from models.checklists import AnswerSet, TemplateItem, published_for_kind
from models.roster import COLUMNS, export_xlsx

from tests.conftest import csrf_token_from

HEADERS = [h for h, _ in COLUMNS]


def _upload(client, auth, path, data: bytes, name: str):
    return client.post(path, data={"csrf_token": auth.csrf, "file": (io.BytesIO(data), name)},
                       content_type="multipart/form-data")


def _xlsx(rows, headers=HEADERS) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.append(headers)
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _bomb(rows: int) -> bytes:
    """A small XLSX whose one sheet expands to `rows` rows (written as a stream, never held whole)."""
    source = _xlsx([])
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(source)) as zin, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zout:
        for info in zin.infolist():
            if info.filename != "xl/worksheets/sheet1.xml":
                zout.writestr(info, zin.read(info))
                continue
            with zout.open(info.filename, "w", force_zip64=True) as part:
                part.write(b'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.'
                           b'openxmlformats.org/spreadsheetml/2006/main"><sheetData>')
                chunk = (b'<row><c t="inlineStr"><is><t>Nguyen Van A</t></is></c><c t="inlineStr"><is><t>CB01'
                         b'</t></is></c></row>') * 10_000
                for _ in range(rows // 10_000):
                    part.write(chunk)
                part.write(b"</sheetData></worksheet>")
    return out.getvalue()


def _synced_counts() -> dict[str, int]:
    with db.connection_context():
        out = {name: model.select().count() for name, model in SYNCED_MODELS.items()}
        out["change_log"] = ChangeLog.select().count()
        return out


@pytest.fixture
def admin(client, auth, org):
    """Logged in as central's admin."""
    assert auth.login("admin").status_code == 303
    auth.token("/members/import")
    return org


# -- imports ------------------------------------------------------------------------------------

def test_an_xlsx_bomb_is_refused_in_seconds(client, auth, admin):
    """A ~1 MB XLSX expanding to a million rows is refused before parsing, with a Vietnamese message."""
    data = _bomb(1_000_000)
    assert len(data) < 2 * 1024 * 1024
    started = time.monotonic()
    response = _upload(client, auth, "/members/import", data, "ds.xlsx")
    elapsed = time.monotonic() - started
    assert response.status_code == 422 and "khi giải nén lớn hơn" in response.get_data(as_text=True)
    assert elapsed < 5, elapsed


def test_roster_upload_size_and_row_caps(client, auth, admin):
    """An upload over 5 MB and a sheet over the row cap are refused with messages, nothing read into the DB."""
    big = _upload(client, auth, "/members/import", b"Ho va ten,Ma chi bo\n" + b"x,CB01\n" * 900_000, "ds.csv")
    assert big.status_code == 422 and "lớn hơn 5 MB" in big.get_data(as_text=True)
    rows = [[f"Người {i}", "", "", "", "", "", "", "", "CB01"] for i in range(10_100)]
    many = _upload(client, auth, "/members/import", _xlsx(rows), "ds.xlsx")
    assert many.status_code == 422 and "quá nhiều dòng" in many.get_data(as_text=True)


def test_checklist_import_has_a_row_cap_and_survives_broken_parts(seeded, app, client, auth):
    """A sheet of 2,000 items is refused; an XLSX with a garbled part is a message, never a 500."""
    auth.login("admin")
    auth.token("/checklists/import")
    book = Workbook()
    items = book.active
    items.title = "tieu_chi"
    items.append(["Phần", "Mã", "Nội dung", "Loại", "Điểm"])
    for i in range(2000):
        items.append(["A", f"A{i}", "Nội dung", "yes_no", 0])
    book.create_sheet("mau").append(["Mã mẫu", "nhieu-dong"])
    out = io.BytesIO()
    book.save(out)
    many = _upload(client, auth, "/checklists/import", out.getvalue(), "mau.xlsx")
    assert many.status_code == 422 and "quá nhiều dòng" in many.get_data(as_text=True)

    good = out.getvalue()
    for garble in (b"<worksheet><sheetData><row><c", b"\x00\x01 not xml", b'<?xml version="1.0"?><x/>'):
        broken = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(good)) as zin, zipfile.ZipFile(broken, "w") as zout:
            for info in zin.infolist():
                zout.writestr(info, garble if info.filename.startswith("xl/worksheets/") else zin.read(info))
        response = _upload(client, auth, "/checklists/import", broken.getvalue(), "mau.xlsx")
        assert response.status_code == 422, response.status_code
        assert "Excel" in response.get_data(as_text=True)


def test_utf16_csv_gets_an_accurate_message(client, auth, admin):
    """A UTF-16 CSV (Excel's 'Unicode text') is named as such, not called 'not text'."""
    text = "Họ và tên,Mã chi bộ\nNguyễn Văn Mười,CB01\n"
    response = _upload(client, auth, "/members/import", text.encode("utf-16"), "ds.csv")
    assert response.status_code == 422 and "UTF-16" in response.get_data(as_text=True)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "cp1258"])
def test_names_are_stored_nfc_whatever_the_encoding(app, org, encoding):
    """A decomposed name (cp1258 or NFD UTF-8) is stored in NFC, so it matches the same name typed."""
    from models.roster import apply_rows, read_table, validate_rows
    from models import Cell

    name = "Nguyễn Thị Hường"
    text = f"Họ và tên,Mã chi bộ\n{name},CB01\n"
    if encoding == "cp1258":
        # Windows' Vietnamese code page: base letters (ê, ư) precomposed, tone marks as combining marks.
        data = b"".join(_cp1258(ch) for ch in text)
    else:
        data = unicodedata.normalize("NFD", text).encode(encoding)
    assert unicodedata.normalize("NFC", name).encode("utf-8") not in data
    with app.app_context(), db.connection_context():
        rows = read_table("ds.csv", data)
        results = validate_rows(rows, {c.code: c for c in Cell.live()})
        apply_rows(results)
        stored = Member.get(Member.full_name == name)
        assert stored.full_name == unicodedata.normalize("NFC", name)


def _cp1258(ch: str) -> bytes:
    try:
        return ch.encode("cp1258")
    except UnicodeEncodeError:
        parts = unicodedata.normalize("NFD", ch)
        tones = "".join(c for c in parts if c in "\u0300\u0301\u0303\u0309\u0323")
        base = unicodedata.normalize("NFC", "".join(c for c in parts if c not in tones))
        return base.encode("cp1258") + tones.encode("cp1258")


# -- exports ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ['=HYPERLINK("http://x","y")', "+84 912", "-1+2", "@SUM(A1)", "\tTab", "\rCR"])
def test_export_writes_formula_looking_values_as_text(app, org, value):
    """A name or card number starting with = + - @ tab or CR opens as text, never as a formula."""
    with app.app_context(), db.connection_context():
        member = Member.get_by_id(org.members[0].id)
        member.card_number = value[:20]
        member.full_name = "Tên " + value if value[0] in "\t\r" else value
        data = export_xlsx([member])
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        sheet = archive.read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet
    values = [c.value for c in load_workbook(io.BytesIO(data)).active[2]]
    assert value[:20].replace("\r", "\n") in values  # XML reads a CR back as a line feed


def test_csv_safe_helper():
    """The CSV helper quotes what a spreadsheet would run."""
    from models.uploads import csv_safe

    assert csv_safe("=1+1") == "'=1+1" and csv_safe("@x") == "'@x" and csv_safe("Nguyễn") == "Nguyễn"


# -- no 500s ------------------------------------------------------------------------------------

@pytest.mark.parametrize("year", ["²", "١٩٩٠", "99999999999999999999999", "1e3"])
def test_birth_year_of_odd_digits_is_a_422(client, auth, org, year):
    """`birth_year=²` was a 500: now the form answers 422 with the field's message."""
    auth.login("bithu1")
    auth.token(f"/members/{org.members[0].id}/edit")
    response = client.post(f"/members/{org.members[0].id}/edit",
                           data={"csrf_token": auth.csrf, "full_name": "Nguyễn Văn An", "birth_year": year,
                                 "gender": "nam"})
    assert response.status_code == 422 and "Năm sinh" in response.get_data(as_text=True)


@pytest.mark.parametrize("points", ["nan", "inf", "-inf", "1e400", "Infinity"])
def test_checklist_points_must_be_finite(seeded, app, client, auth, points):
    """Points of nan/inf/1e400 are refused in the editor (one published inf broke every sheet)."""
    from tests.test_checklists_views import draft_item, start_draft

    draft = start_draft(app, client, auth)
    item = draft_item(app, draft, "C1")
    auth.token(f"/checklists/versions/{draft.id}")
    response = auth.htmx_post(f"/checklists/items/{item.id}",
                              data={"code": "C1", "text": "Thời sự", "type": "yes_no", "points": points})
    assert response.status_code == 422
    choices = auth.htmx_post(f"/checklists/items/{item.id}",
                             data={"code": "C1", "text": "Thời sự", "type": "single_choice", "points": "2",
                                   "choices": f"Tốt | {points}\nKém | 0"})
    assert choices.status_code == 422
    with app.app_context(), db.connection_context():
        assert TemplateItem.get_by_id(item.id).points == draft_item(app, draft, "C1").points


def test_checklist_import_refuses_infinite_points(seeded, app, client, auth):
    """An imported sheet with points 1e400 gets a row message, not a stored inf."""
    auth.login("admin")
    auth.token("/checklists/import")
    book = Workbook()
    items = book.active
    items.title = "tieu_chi"
    items.append(["Phần", "Mã", "Nội dung", "Loại", "Điểm"])
    items.append(["A", "A1", "Nội dung", "yes_no", "1e400"])
    items.append(["A", "A2", "Nội dung", "yes_no", "nan"])
    settings_sheet = book.create_sheet("mau")
    for row in (["Mã mẫu", "vo-cuc"], ["Tên mẫu", "Vô cực"], ["Loại mẫu", "Sinh hoạt thường kỳ"]):
        settings_sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    response = _upload(client, auth, "/checklists/import", out.getvalue(), "mau.xlsx")
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and "Dòng 2" in html and "Dòng 3" in html


def test_new_account_with_an_unknown_cell_is_a_422(client, auth, org):
    """`accounts/new` with a cell id that does not exist answers 422 and creates nothing."""
    auth.login("admin")
    auth.token("/accounts/new")
    before = _synced_counts()
    response = client.post("/accounts/new", data={"csrf_token": auth.csrf, "username": "bithu9", "full_name": "X",
                                                  "role": "secretary", "cell": "khong-co-chi-bo-nay"})
    assert response.status_code == 422 and "Không tìm thấy chi bộ" in response.get_data(as_text=True)
    assert _synced_counts() == before


# -- a GET never writes -------------------------------------------------------------------------

def test_opening_a_sheet_writes_nothing_and_the_first_tap_starts_it(seeded, app, client, auth):
    """Opening a meeting's sheet makes no answer set and no audit row; the first tap makes them."""
    import re

    auth.login("bithu1")
    before = _synced_counts()
    html = client.get(f"/meetings/{seeded.meeting.id}/sheets/thuong_ky").get_data(as_text=True)
    assert _synced_counts() == before
    set_id = re.search(r"/answer-sets/([0-9a-f-]{36})/items/", html).group(1)
    with app.app_context(), db.connection_context():
        a1 = TemplateItem.get((TemplateItem.version == published_for_kind("thuong_ky").id) & (TemplateItem.code == "A1"))
    auth.token(f"/meetings/{seeded.meeting.id}/sheets/thuong_ky")
    tap = auth.htmx_post(f"/answer-sets/{set_id}/items/{a1.id}", data={"value": "1"})
    assert tap.status_code == 200 and 'data-testid="score-total">3/100' in tap.get_data(as_text=True)
    with app.app_context(), db.connection_context():
        assert AnswerSet.get_by_id(set_id).meeting_id == seeded.meeting.id
        assert AuditEntry.select().where(AuditEntry.record_id == set_id).count() == 1


def test_every_page_get_writes_nothing(seeded, app, client, auth):
    """A walk over the main pages as admin and as a secretary leaves every synced table unchanged."""
    pages = ["/", f"/cells/{seeded.cell.id}", "/members", f"/members/{seeded.members[0].id}",
             f"/meetings/{seeded.meeting.id}", f"/meetings/{seeded.meeting.id}/sheets/thuong_ky",
             f"/meetings/{seeded.meeting.id}/sheets/thuong_ky?role=supervisor", "/checklists/"]
    for username in ("admin", "bithu1", "btv"):
        auth.login(username)
        before = _synced_counts()
        for page in pages:
            assert client.get(page).status_code in (200, 403), page
        assert _synced_counts() == before, username
        auth.token("/")
        auth.logout()


# -- fuzz of the main forms ---------------------------------------------------------------------

hostile = st.one_of(st.text(max_size=300), st.sampled_from(["²", "nan", "inf", "1e400", "-1", "0", "9" * 40,
                                                            "=1+1", "\x00", "<script>", "khong-co", ""]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(form=st.fixed_dictionaries({k: hostile for k in ("full_name", "birth_year", "gender", "admitted_on",
                                                         "full_member_on", "card_number", "status",
                                                         "effective_on")}))
def test_member_form_fuzz_never_500_never_partial(app, client, fuzz_login, form):
    """Any member form: 303 or 422, and on 422 no synced row changed."""
    org = fuzz_login
    before = _synced_counts()
    response = client.post("/members/new", data={**form, "cell": org.cell.id, "csrf_token": fuzz_login.csrf})
    assert response.status_code in (303, 400, 422), response.status_code
    if response.status_code == 422:
        assert _synced_counts() == before


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(form=st.fixed_dictionaries({k: hostile for k in ("code", "name", "cell_type", "organisation", "node_id",
                                                         "meeting_day", "active_from", "active_to")}))
def test_cell_form_fuzz_never_500_never_partial(app, client, fuzz_login, form):
    """Any cell form: 303 or 422, and on 422 no synced row changed."""
    before = _synced_counts()
    response = client.post("/cells/new", data={**form, "csrf_token": fuzz_login.csrf})
    assert response.status_code in (303, 400, 422), response.status_code
    if response.status_code == 422:
        assert _synced_counts() == before


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(form=st.fixed_dictionaries({k: hostile for k in ("username", "full_name", "role", "cell", "member")}))
def test_account_form_fuzz_never_500_never_partial(app, client, fuzz_login, form):
    """Any account form: 200 (password shown) or 422, and on 422 no synced row changed."""
    before = _synced_counts()
    response = client.post("/accounts/new", data={**form, "csrf_token": fuzz_login.csrf})
    assert response.status_code in (200, 400, 422), response.status_code
    if response.status_code == 422:
        assert _synced_counts() == before


@pytest.fixture
def fuzz_login(app, client, org):
    """The admin logged in once for a whole fuzz run; the org with the CSRF token attached."""
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    assert client.post("/login", data={"username": "admin", "password": "mat-khau-thu-nghiem",
                                       "csrf_token": token}).status_code == 303
    org.csrf = csrf_token_from(client.get("/").get_data(as_text=True))
    return org
