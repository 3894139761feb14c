"""Roster import (XLSX and CSV, Vietnamese headers): preview with per-row messages, all-or-nothing
apply, clear refusals for bad files; export to XLSX that imports back."""
from __future__ import annotations

import datetime as dt
import io

import pytest
from openpyxl import Workbook, load_workbook

from models import Member, MemberStatusChange, Position, db
from models.roster import COLUMNS, export_xlsx, read_table, validate_rows

HEADERS = [h for h, _ in COLUMNS]
GOOD_ROWS = [
    ["Trần Văn Nhập", 1980, "Nam", "12/05/2005", "12/05/2006", "91.000001", "Chính thức", "Chi ủy viên", "CB01"],
    ["Lê Thị Hai", "1992", "Nữ", "01/09/2024", "", "", "Dự bị", "", "CB01"],
    ["Phạm Văn Ba", "1975", "nam", "03/03/1999", "03/03/2000", "91.000003", "Miễn sinh hoạt", "", "cb02"],
]


def xlsx_bytes(rows, headers=HEADERS) -> bytes:
    """A workbook with a header row and the given rows."""
    book = Workbook()
    sheet = book.active
    sheet.append(headers)
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def csv_bytes(rows, headers=HEADERS, sep=",") -> bytes:
    """A UTF-8 CSV (with BOM, as Excel writes it)."""
    lines = [sep.join(headers)] + [sep.join(str(v) for v in row) for row in rows]
    return ("\ufeff" + "\n".join(lines)).encode("utf-8")


@pytest.fixture
def admin(client, auth, org):
    """Logged in as central's admin with the import page's CSRF token."""
    auth.login("admin")
    auth.token("/members/import")
    return org


def upload(client, auth, data: bytes, name: str):
    """Post a file to the import page."""
    return client.post("/members/import", data={"csrf_token": auth.csrf, "file": (io.BytesIO(data), name)},
                       content_type="multipart/form-data")


def _count():
    with db.connection_context():
        return Member.select().count()


def test_xlsx_preview_then_apply_creates_everyone(client, auth, admin):
    """A good workbook previews three valid rows; applying creates them with status events and terms."""
    before = _count()
    response = upload(client, auth, xlsx_bytes(GOOD_ROWS), "danh-sach.xlsx")
    assert response.status_code == 303
    preview = client.get(response.headers["Location"])
    html = preview.get_data(as_text=True)
    assert "3 dòng" in html and "hợp lệ" in html and 'data-testid="apply"' in html
    assert _count() == before  # the preview writes nothing
    apply_url = response.headers["Location"] + "/apply"
    assert client.post(apply_url, data={"csrf_token": auth.csrf}).status_code == 303
    assert _count() == before + 3
    with db.connection_context():
        tran = Member.get(Member.full_name == "Trần Văn Nhập")
        assert tran.admitted_on == dt.date(2005, 5, 12) and tran.card_number == "91.000001"
        assert tran.position == "chi_uy_vien"
        assert Position.get(Position.member == tran.id).kind == "chi_uy_vien"
        ba = Member.get(Member.full_name == "Phạm Văn Ba")
        assert ba.status == "exempted" and ba.cell_id == admin.other_cell.id
        assert MemberStatusChange.select().where(MemberStatusChange.member == ba.id).count() == 1
        assert Member.get(Member.full_name == "Lê Thị Hai").status == "probationary"
    # Applying the same job again does nothing more.
    client.post(apply_url, data={"csrf_token": auth.csrf})
    assert _count() == before + 3


def test_csv_with_semicolons_is_read(client, auth, admin):
    """A semicolon CSV (Excel's Vietnamese locale) reads the same as the workbook."""
    rows = read_table("ds.csv", csv_bytes(GOOD_ROWS, sep=";"))
    assert [r["full_name"] for r in rows] == ["Trần Văn Nhập", "Lê Thị Hai", "Phạm Văn Ba"]
    assert rows[0]["admitted_on"] == "12/05/2005"


@pytest.mark.parametrize("row, message", [
    (["Ngô Văn Sai", "1980", "Nam", "01/01/2010", "", "", "", "", "CB99"], "Mã chi bộ “CB99” không có"),
    (["Ngô Văn Sai", "1980", "Nam", (dt.date.today() + dt.timedelta(days=30)).strftime("%d/%m/%Y"), "", "", "", "", "CB01"],
     "ở tương lai"),
    (["Ngô Văn Sai", "1980", "Nam", "2010/13/45", "", "", "", "", "CB01"], "cần dạng dd/mm/yyyy"),
    (["Ngô Văn Sai", "1980", "Nam", "01/01/2010", "", "91.000001", "", "", "CB01"], "trùng với dòng 2"),
    (["", "1980", "Nam", "01/01/2010", "", "", "", "", "CB01"], "Thiếu họ và tên"),
    (["Ngô Văn Sai", "1980", "Nam", "01/01/2010", "", "", "Về hưu", "", "CB01"], "Trạng thái “Về hưu” không hợp lệ"),
])
def test_a_bad_row_blocks_the_whole_file(client, auth, admin, row, message):
    """One bad row: the preview names it and the apply changes nothing."""
    before = _count()
    response = upload(client, auth, xlsx_bytes([GOOD_ROWS[0], row]), "ds.xlsx")
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert message in html and "1 dòng có lỗi" in html and 'data-testid="apply"' not in html
    applied = client.post(response.headers["Location"] + "/apply", data={"csrf_token": auth.csrf})
    assert applied.status_code == 422
    assert "chưa nhập dòng nào" in applied.get_data(as_text=True)
    assert _count() == before


def test_card_number_already_in_database(client, auth, admin):
    """A card number some member already has is named in the row's message."""
    with db.connection_context():
        member = Member.get_by_id(admin.members[0].id)
        member.card_number = "91.000001"
        member.save()
    response = upload(client, auth, xlsx_bytes(GOOD_ROWS), "ds.xlsx")
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "91.000001 đã có trong hệ thống (đảng viên Nguyễn Văn An)" in html


@pytest.mark.parametrize("data, name, message", [
    (b"PK\x03\x04 not really a workbook", "hong.xlsx", "tệp bị hỏng"),
    (b"", "rong.xlsx", "Tệp rỗng"),
    (b"%PDF-1.4", "ds.pdf", "Chỉ nhận tệp .xlsx hoặc .csv"),
])
def test_malformed_files_get_a_clear_message(client, auth, admin, data, name, message):
    """An unreadable file is refused on the upload page with 422 and nothing stored."""
    before = _count()
    response = upload(client, auth, data, name)
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert _count() == before


def test_missing_headers_are_named(client, auth, admin):
    """A file without the required columns says which ones are missing."""
    response = upload(client, auth, xlsx_bytes([["A", "B"]], headers=["Tên", "Tuổi"]), "ds.xlsx")
    assert response.status_code == 422
    assert "Thiếu cột: “Họ và tên”, “Mã chi bộ”" in response.get_data(as_text=True)


def test_headers_match_without_diacritics_or_case(app, org):
    """'HO VA TEN' and 'ma chi bo' are understood as the Vietnamese headers."""
    rows = read_table("ds.csv", csv_bytes([["Võ Văn Tư", "CB01"]], headers=["HO VA TEN", "ma chi bo"]))
    with app.app_context(), db.connection_context():
        from models import Cell

        results = validate_rows(rows, {c.code: c for c in Cell.select()})
    assert results[0].ok and results[0].values["full_name"] == "Võ Văn Tư"


def test_secretary_imports_only_into_their_cell(client, auth, org):
    """A secretary's file naming another cell's code is refused on that row."""
    auth.login("bithu1")
    auth.token("/members/import")
    response = upload(client, auth, xlsx_bytes(GOOD_ROWS), "ds.xlsx")
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Mã chi bộ “cb02” không có hoặc đồng chí không được nhập vào chi bộ này" in html


def test_another_users_import_job_is_forbidden(client, auth, admin, app):
    """An import job belongs to whoever uploaded it."""
    response = upload(client, auth, xlsx_bytes(GOOD_ROWS), "ds.xlsx")
    other = type(auth)(app.test_client())
    other.login("bithu1")
    assert other._client.get(response.headers["Location"]).status_code == 403
    assert other._client.get("/members/import/khong-co").status_code == 404


def test_export_is_xlsx_that_imports_back(app, org, client, auth):
    """The export has the import headers and dd/mm/yyyy dates; its rows validate as an import."""
    with app.app_context(), db.connection_context():
        member = Member.get_by_id(org.members[0].id)
        member.admitted_on, member.card_number = dt.date(2001, 2, 3), "90.123456"
        member.save()
        data = export_xlsx(Member.select().where(Member.cell == org.cell.id).order_by(Member.full_name))
        sheet = load_workbook(io.BytesIO(data)).active
        values = list(sheet.iter_rows(values_only=True))
        assert list(values[0]) == HEADERS
        row = next(v for v in values if v[0] == "Nguyễn Văn An")
        assert row[3] == "03/02/2001" and row[5] == "90.123456" and row[8] == "CB01"
        from models import Cell

        # Into an empty database the same rows would import: only the duplicates are refused here.
        results = validate_rows(read_table("x.xlsx", data), {c.code: c for c in Cell.select()})
        assert [e for r in results for e in r.errors if "đã có trong hệ thống" not in e] == []
    auth.login("admin")
    response = client.get("/members/export.xlsx")
    assert response.status_code == 200 and response.data[:2] == b"PK"
    assert "attachment" in response.headers["Content-Disposition"]


def _poll(client, job_url, tries=100):
    """Poll the progress fragment as htmx does until it answers 286 (done)."""
    import time

    for _ in range(tries):
        response = client.get(job_url + "/progress", headers={"HX-Request": "true"})
        if response.status_code == 286:
            return response
        assert response.status_code == 200 and "Đang nhập" in response.get_data(as_text=True)
        time.sleep(0.05)
    raise AssertionError("the import never finished")


def test_long_import_runs_in_background_with_progress(app, client, auth, admin):
    """Above the threshold the apply runs in the background; the page polls until done (286)."""
    app.config["IMPORT_BACKGROUND_ROWS"] = 2
    before = _count()
    response = upload(client, auth, xlsx_bytes(GOOD_ROWS), "dai.xlsx")
    job_url = response.headers["Location"]
    applied = client.post(job_url + "/apply", data={"csrf_token": auth.csrf})
    assert applied.status_code == 303 and applied.headers["Location"] == job_url
    done = _poll(client, job_url)
    assert "Đã nhập 3 đảng viên" in done.get_data(as_text=True)
    assert 'hx-trigger="every 1s"' not in done.get_data(as_text=True)
    assert _count() == before + 3
    with db.connection_context():
        from models import AuditEntry

        entry = AuditEntry.get((AuditEntry.table == "member") & (AuditEntry.action == "create")
                               & (AuditEntry.user_name == "admin"))
    assert entry.node == "central"
    page = client.get(job_url).get_data(as_text=True)
    assert "đã xong" in page and "đã có trong hệ thống" not in page


def test_background_import_failure_writes_nothing(app, client, auth, admin, monkeypatch):
    """If the background apply fails, the job says so and no member was created."""
    import blueprints.members as members_views
    from models import ValidationError

    def failing(results, today=None, progress=None):
        raise ValidationError({"rows": "Dòng 3: Số thẻ đảng viên trùng. Chưa nhập dòng nào."})

    monkeypatch.setattr(members_views, "apply_rows", failing)
    app.config["IMPORT_BACKGROUND_ROWS"] = 2
    before = _count()
    job_url = upload(client, auth, xlsx_bytes(GOOD_ROWS), "dai.xlsx").headers["Location"]
    client.post(job_url + "/apply", data={"csrf_token": auth.csrf})
    done = _poll(client, job_url)
    assert "không nhập được" in done.get_data(as_text=True) and "Dòng 3" in done.get_data(as_text=True)
    assert _count() == before
