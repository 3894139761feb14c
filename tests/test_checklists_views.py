"""The template editor and rule-set screens through HTTP: roles, htmx fragments, 422 with kept
input, publish validation, and XLSX import/export with row-level refusal."""
from __future__ import annotations

import io

import pytest
from openpyxl import Workbook, load_workbook

from models import db
from models.checklist_xlsx import export_version, import_workbook
from models.checklists import (
    ChecklistTemplate,
    TemplateItem,
    TemplateSection,
    TemplateVersion,
    published_for_kind,
    version_tree,
)
from models.rules import RuleSet


def regular_id(app):
    """Id of the seeded regular-meeting template."""
    with app.app_context(), db.connection_context():
        return ChecklistTemplate.get(ChecklistTemplate.code == "thuong-ky-100").id


def start_draft(app, client, auth):
    """Log in as admin and start v2 of the regular sheet; return the draft."""
    auth.login("admin")
    auth.token("/checklists/")
    response = client.post(f"/checklists/{regular_id(app)}/versions", data={"csrf_token": auth.csrf})
    assert response.status_code == 303
    with app.app_context(), db.connection_context():
        return TemplateVersion.get((TemplateVersion.number == 2) & (TemplateVersion.status == "draft"))


def draft_item(app, draft, code):
    """An item of the draft by code."""
    with app.app_context(), db.connection_context():
        return TemplateItem.get((TemplateItem.version == draft.id) & (TemplateItem.code == code))


@pytest.mark.parametrize("username, status", [("admin", 200), ("btv", 200), ("bithu1", 200), ("dangvien1", 200)])
def test_everyone_reads_templates_and_rule_sets(seeded, client, auth, username, status):
    """Reading is open to every signed-in role; the lists show Vietnamese names."""
    auth.login(username)
    page = client.get("/checklists/")
    assert page.status_code == status
    assert "Phiếu chấm điểm sinh hoạt chi bộ thường kỳ (100 điểm)" in page.get_data(as_text=True)
    rules = client.get("/rules/")
    assert "42-HD/BTCTW (28/10/2025)" in rules.get_data(as_text=True)
    assert "từ 28/10/2025" in rules.get_data(as_text=True)


@pytest.mark.parametrize("username", ["btv", "bithu1", "dangvien1"])
def test_only_admin_writes(seeded, app, client, auth, username):
    """Non-admins get 403 on every write: new draft, new rule set, import."""
    auth.login(username)
    auth.token("/checklists/")
    assert client.post(f"/checklists/{regular_id(app)}/versions", data={"csrf_token": auth.csrf}).status_code == 403
    assert client.get("/rules/new").status_code == 403
    assert client.get("/checklists/import").status_code == 403


def test_rule_set_view_shows_vietnamese_labels(seeded, app, client, auth):
    """The parameters read as the guideline does, with bands and the annual quota."""
    auth.login("dangvien1")
    with app.app_context(), db.connection_context():
        rid = RuleSet.get(RuleSet.code == "12-HD/BTCTW").id
    html = client.get(f"/rules/{rid}").get_data(as_text=True)
    assert "Thời lượng tối thiểu một buổi sinh hoạt (phút)" in html
    assert "Tốt ≥ 90; Khá ≥ 70; Trung bình ≥ 50; Kém ≥ 0" in html
    assert "Số Hoàn thành xuất sắc tối đa so với số Hoàn thành tốt (%)" in html
    assert "hiệu lực từ 06/07/2018 đến 27/10/2025" in html


def test_rule_set_new_422_keeps_input_then_saves(seeded, app, client, auth):
    """An invalid form answers 422 with the typed values; a valid one creates the committee's set."""
    auth.login("admin")
    auth.token("/rules/new")
    with app.app_context(), db.connection_context():
        base = RuleSet.get(RuleSet.code == "42-HD/BTCTW")
        from models.rules import form_from_rule_set
        form = form_from_rule_set(base)
    form.update({"code": "27-QĐ/TU", "title": "Biểu 1, QĐ 27-QĐ/TU Nghệ An", "effective_from": "01/01/2026",
                 "organisation": seeded.organisation.id, "attendance_threshold_pct": "150"})
    form.pop("attendance_must_exceed")
    bad = auth.htmx_post("/rules/new", data=form)
    html = bad.get_data(as_text=True)
    assert bad.status_code == 422
    assert "phải là số từ 0 đến 100" in html and 'value="Biểu 1, QĐ 27-QĐ/TU Nghệ An"' in html
    assert 'id="rule-set-form"' in html and "<html" not in html
    form["attendance_threshold_pct"] = "80"
    good = client.post("/rules/new", data={**form, "csrf_token": auth.csrf})
    assert good.status_code == 303
    with app.app_context(), db.connection_context():
        rules = RuleSet.get(RuleSet.code == "27-QĐ/TU")
        assert rules.params["attendance_threshold_pct"] == 80
        assert rules.params["attendance_must_exceed"] is False
        assert rules.organisation_id == seeded.organisation.id


def test_published_version_shows_read_only(seeded, app, client, auth):
    """The published version has no edit buttons; a write to it is refused."""
    auth.login("admin")
    with app.app_context(), db.connection_context():
        version = published_for_kind("thuong_ky")
        item = TemplateItem.get((TemplateItem.version == version.id) & (TemplateItem.code == "C1"))
    html = client.get(f"/checklists/versions/{version.id}").get_data(as_text=True)
    assert "Đã ban hành" in html and "Ban hành phiên bản" not in html and "+ Thêm tiêu chí" not in html
    auth.token(f"/checklists/versions/{version.id}")
    assert auth.htmx_post(f"/checklists/items/{item.id}", data={"code": "C1", "text": "x", "type": "yes_no",
                                                                "points": "4"}).status_code == 403


def test_editor_add_edit_move_delete_and_publish(seeded, app, client, auth):
    """A draft is edited through htmx fragments and published; the old version is retired."""
    draft = start_draft(app, client, auth)
    page = client.get(f"/checklists/versions/{draft.id}").get_data(as_text=True)
    assert "Ban hành phiên bản 2" in page and "Tổng điểm các tiêu chí: <strong>100</strong> / 100" in page
    with app.app_context(), db.connection_context():
        sections = [s for s, _items in version_tree(draft)]
    conduct = sections[2]

    # Add an item with a bad code: 422, the form comes back with what was typed.
    bad = auth.htmx_post(f"/checklists/sections/{conduct.id}/items/new",
                         data={"code": "C 13", "text": "Liên hệ trách nhiệm nêu gương", "type": "yes_no", "points": "2"})
    assert bad.status_code == 422
    assert "Mã tiêu chí gồm chữ" in bad.get_data(as_text=True)
    assert "Liên hệ trách nhiệm nêu gương" in bad.get_data(as_text=True)
    ok = auth.htmx_post(f"/checklists/sections/{conduct.id}/items/new",
                        data={"code": "C13", "text": "Liên hệ trách nhiệm nêu gương", "type": "yes_no", "points": "2"})
    assert ok.status_code == 200 and ok.headers["HX-Retarget"] == "#editor"
    assert "Tổng điểm các tiêu chí: <strong>102</strong> / 100" in ok.get_data(as_text=True)

    # Publishing now fails: points do not add up.
    refused = auth.htmx_post(f"/checklists/versions/{draft.id}/publish")
    assert refused.status_code == 422
    assert "Tổng điểm các tiêu chí là 102, khác tổng điểm của phiếu (100)." in refused.get_data(as_text=True)

    # Edit C1 down to 2 points; a duplicate code is refused with the typed values kept.
    c1 = draft_item(app, draft, "C1")
    dup = auth.htmx_post(f"/checklists/items/{c1.id}", data={"code": "C2", "text": "Thời sự", "type": "yes_no", "points": "2"})
    assert dup.status_code == 422 and "Mã tiêu chí C2 đã có trong phiên bản này." in dup.get_data(as_text=True)
    edited = auth.htmx_post(f"/checklists/items/{c1.id}", data={"code": "C1", "text": "Thời sự", "type": "yes_no", "points": "2"})
    assert edited.status_code == 200

    # Move C13 up two places (above C12 and C11), delete C12.
    c13 = draft_item(app, draft, "C13")
    auth.htmx_post(f"/checklists/items/{c13.id}/move", data={"direction": "up"})
    auth.htmx_post(f"/checklists/items/{c13.id}/move", data={"direction": "up"})
    auth.htmx_post(f"/checklists/items/{draft_item(app, draft, 'C12').id}/delete")
    with app.app_context(), db.connection_context():
        codes = [i.code for i in version_tree(draft)[2][1]]
    assert codes[-2:] == ["C13", "C11"] and "C12" not in codes

    # Now 100 again (102 - 2 - 2 + ... ): C1 4→2 (-2), C12 deleted (-2) → 98; add 2 points to C13.
    auth.htmx_post(f"/checklists/items/{c13.id}", data={"code": "C13", "text": "Liên hệ trách nhiệm nêu gương",
                                                        "type": "yes_no", "points": "4"})
    published = auth.htmx_post(f"/checklists/versions/{draft.id}/publish")
    assert published.status_code == 204 and published.headers["HX-Redirect"].endswith(draft.id)
    with app.app_context(), db.connection_context():
        assert TemplateVersion.get_by_id(draft.id).status == "published"
        assert TemplateVersion.get((TemplateVersion.template == draft.template_id) & (TemplateVersion.number == 1)).status == "retired"
        assert published_for_kind("thuong_ky").id == draft.id


def test_sections_add_rename_move_delete_and_empty_section_blocks_publish(seeded, app, client, auth):
    """An empty section is named in the publish refusal; renaming keeps typed input on error."""
    draft = start_draft(app, client, auth)
    added = auth.htmx_post(f"/checklists/versions/{draft.id}/sections", data={"title": "V. Kết quả thực hiện nghị quyết"})
    assert added.status_code == 200
    refused = auth.htmx_post(f"/checklists/versions/{draft.id}/publish")
    assert "Phần “V. Kết quả thực hiện nghị quyết” chưa có tiêu chí nào." in refused.get_data(as_text=True)
    with app.app_context(), db.connection_context():
        new = TemplateSection.get((TemplateSection.version == draft.id) & (TemplateSection.title.startswith("V.")))
    empty = auth.htmx_post(f"/checklists/sections/{new.id}", data={"title": "  "})
    assert empty.status_code == 422 and "Vui lòng nhập tên phần." in empty.get_data(as_text=True)
    auth.htmx_post(f"/checklists/sections/{new.id}/move", data={"direction": "up"})
    with app.app_context(), db.connection_context():
        titles = [s.title for s, _ in version_tree(draft)]
    assert titles[3].startswith("V.") and titles[4].startswith("IV.")
    auth.htmx_post(f"/checklists/sections/{new.id}/delete")
    with app.app_context(), db.connection_context():
        assert len(version_tree(draft)) == 4


def test_preview_shows_the_sheet_as_on_the_tablet(seeded, app, client, auth):
    """Preview lists every item with its controls, points, and the computed source in Vietnamese."""
    auth.login("bithu1")
    with app.app_context(), db.connection_context():
        version = published_for_kind("thuong_ky")
    html = client.get(f"/checklists/versions/{version.id}/preview").get_data(as_text=True)
    assert "Tự tính: Tỷ lệ đảng viên dự (%)" in html
    assert html.count('class="q"') == 29
    assert "Không áp dụng" in html and "Căn cứ: 12-HD, tiêu chí 1" in html


# -- XLSX ------------------------------------------------------------------------------------------

def workbook_bytes(rows, settings=None, header=None):
    """A hand-written workbook: settings sheet and item rows."""
    wb = Workbook()
    ws = wb.active
    ws.title = "tieu_chi"
    ws.append(header or ["Phần", "Mã", "Nội dung", "Loại", "Điểm", "Bắt buộc", "Không áp dụng", "Hướng dẫn",
                         "Căn cứ", "Lựa chọn", "Nguồn tự tính"])
    for row in rows:
        ws.append(row)
    mau = wb.create_sheet("mau")
    for key, value in (settings or {"Mã mẫu": "bieu-1-nghe-an", "Tên mẫu": "Biểu 1 — QĐ 27-QĐ/TU",
                                    "Loại mẫu": "Sinh hoạt thường kỳ", "Tổng điểm": 20}).items():
        mau.append([key, value])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


HAND_WRITTEN = [
    ["I. Chuẩn bị", "1.1", "Chi ủy họp trước", "Có/Không", 5, "x", "", "", "Biểu 1, mục 1", "", ""],
    ["I. Chuẩn bị", "1.2", "Mức độ chuẩn bị tài liệu", "Chọn một", 5, "", "", "", "", "Tốt | 5\nĐạt | 3\nChưa đạt | 0", ""],
    ["II. Tiến hành", "2.1", "Tỷ lệ đảng viên dự", "Tự tính", 5, "", "", "", "12-HD", "", "Tỷ lệ đảng viên dự (%)"],
    ["II. Tiến hành", "2.2", "Chất lượng thảo luận", "score", "5", "", "", "", "", "", ""],
    ["II. Tiến hành", "2.3", "Thư ký", "Văn bản", None, "", "", "", "", "", ""],
]


def test_hand_written_xlsx_imports_into_a_working_template(seeded, app):
    """A file typed in Excel (labels in Vietnamese) becomes a draft that publishes and scores."""
    from models.checklists import publish
    from models.scoring import AnswerValue, score_sheet

    with app.app_context(), db.connection_context():
        result = import_workbook(workbook_bytes(HAND_WRITTEN))
        assert result.errors == []
        assert result.template.kind == "thuong_ky" and result.version.status == "draft"
        tree = version_tree(result.version)
        assert [s.title for s, _ in tree] == ["I. Chuẩn bị", "II. Tiến hành"]
        items = [i for _s, its in tree for i in its]
        assert [i.type for i in items] == ["yes_no", "single_choice", "computed", "score", "text"]
        assert items[1].choices[1] == {"value": "2", "label": "Đạt", "points": 3}
        publish(result.version)
        score = score_sheet(items, {"1.1": AnswerValue(True), "1.2": AnswerValue("2"), "2.4": AnswerValue(4)},
                            {"attendance_rate": 90.0}, RuleSet.get(RuleSet.code == "42-HD/BTCTW").params)
        assert (score.total, score.maximum) == (13, 20)


def test_export_then_import_round_trips_a_seeded_sheet(seeded, app):
    """Exporting the 100-point sheet and importing it as a new draft reproduces every item."""
    with app.app_context(), db.connection_context():
        version = published_for_kind("thuong_ky")
        data = export_version(version)
        ws = load_workbook(io.BytesIO(data))["tieu_chi"]
        assert [c.value for c in ws[1]][:5] == ["Phần", "Mã", "Nội dung", "Loại", "Điểm"]
        assert ws.max_row == 30
        result = import_workbook(data)
        assert result.errors == []
        assert result.version.number == 2 and result.version.parent_id == version.id
        before = [(i.code, i.type, i.points, i.computed_source, i.allow_na, i.choices_json)
                  for _s, its in version_tree(version) for i in its]
        after = [(i.code, i.type, i.points, i.computed_source, i.allow_na, i.choices_json)
                 for _s, its in version_tree(result.version) for i in its]
        assert after == before


def test_invalid_xlsx_is_refused_row_by_row_and_creates_nothing(seeded, app):
    """Unknown type, missing points, duplicate code and a bad computed source, each with its row."""
    rows = [
        ["I", "1.1", "Chi ủy họp trước", "Có/Không", 5, "", "", "", "", "", ""],
        ["I", "1.2", "Điều gì đó", "thang điểm lạ", 5, "", "", "", "", "", ""],
        ["I", "1.3", "Không có điểm", "Có/Không", None, "", "", "", "", "", ""],
        ["II", "1.1", "Trùng mã", "Có/Không", 5, "", "", "", "", "", ""],
        ["II", "2.2", "Tự tính lạ", "Tự tính", 5, "", "", "", "", "", "thời tiết"],
    ]
    with app.app_context(), db.connection_context():
        before = (ChecklistTemplate.select().count(), TemplateItem.select().count())
        result = import_workbook(workbook_bytes(rows))
        assert result.version is None
        assert result.errors[0].startswith("Dòng 3: loại “thang điểm lạ” không hợp lệ")
        assert result.errors[1] == "Dòng 4: thiếu điểm (ghi 0 nếu tiêu chí không tính điểm)."
        assert result.errors[2] == "Dòng 5: mã “1.1” trùng với dòng 2."
        assert result.errors[3].startswith("Dòng 6: nguồn tự tính “thời tiết” không hợp lệ")
        assert (ChecklistTemplate.select().count(), TemplateItem.select().count()) == before


@pytest.mark.parametrize("data, message", [
    (b"PK\x03\x04 not really a zip", "Tệp không phải là tệp Excel (.xlsx) hợp lệ."),
    ("Phần,Mã\nI,1".encode(), "Tệp không phải là tệp Excel (.xlsx) hợp lệ."),
])
def test_not_an_xlsx_is_refused(seeded, app, data, message):
    """Anything that is not a workbook gets one clear message."""
    with app.app_context(), db.connection_context():
        assert import_workbook(data).errors == [message]


def test_missing_column_is_reported_on_row_1(seeded, app):
    """A sheet without the 'Điểm' column says so."""
    data = workbook_bytes([["I", "1", "x", "Có/Không"]], header=["Phần", "Mã", "Nội dung", "Loại"])
    with app.app_context(), db.connection_context():
        assert import_workbook(data).errors == ["Dòng 1: thiếu cột “Điểm”."]


def test_import_and_export_views(seeded, app, client, auth):
    """Upload through the screen: errors listed with 422; a good file opens its draft; export downloads."""
    auth.login("admin")
    auth.token("/checklists/import")
    bad = client.post("/checklists/import", data={"csrf_token": auth.csrf,
                                                  "file": (io.BytesIO(b"hello"), "bieu.xlsx")},
                      content_type="multipart/form-data")
    assert bad.status_code == 422 and "Tệp không phải là tệp Excel (.xlsx) hợp lệ." in bad.get_data(as_text=True)
    good = client.post("/checklists/import", data={"csrf_token": auth.csrf,
                                                   "file": (io.BytesIO(workbook_bytes(HAND_WRITTEN)), "bieu.xlsx")},
                       content_type="multipart/form-data")
    assert good.status_code == 303
    page = client.get(good.headers["Location"]).get_data(as_text=True)
    assert "Biểu 1 — QĐ 27-QĐ/TU" in page and "Tổng điểm các tiêu chí: <strong>20</strong> / 20" in page
    with app.app_context(), db.connection_context():
        version = published_for_kind("giam_sat")
    download = client.get(f"/checklists/versions/{version.id}/export.xlsx")
    assert download.status_code == 200
    assert download.headers["Content-Disposition"].startswith("attachment; filename=giam-sat-phien-ban-1.xlsx")
    assert load_workbook(io.BytesIO(download.data))["mau"]["B1"].value == "giam-sat"


def test_rule_set_end_date_set_and_validated(seeded, app, client, auth):
    """Ending the national 42-HD set moves later dates to no rule set; a bad or early date is refused."""
    import datetime as dt

    from models.rules import rule_set_for

    auth.login("admin")
    with app.app_context(), db.connection_context():
        rid = RuleSet.get(RuleSet.code == "42-HD/BTCTW").id
    auth.token(f"/rules/{rid}")
    bad = client.post(f"/rules/{rid}/end", data={"csrf_token": auth.csrf, "effective_to": "31/02/2026"})
    assert bad.status_code == 422 and "Ngày hết hiệu lực không hợp lệ" in bad.get_data(as_text=True)
    early = client.post(f"/rules/{rid}/end", data={"csrf_token": auth.csrf, "effective_to": "01/01/2020"})
    assert early.status_code == 422 and "phải sau ngày bắt đầu" in early.get_data(as_text=True)
    assert 'value="01/01/2020"' in early.get_data(as_text=True)
    ok = client.post(f"/rules/{rid}/end", data={"csrf_token": auth.csrf, "effective_to": "31/12/2026"})
    assert ok.status_code == 303
    with app.app_context(), db.connection_context():
        assert rule_set_for(dt.date(2027, 1, 1)) is None
        assert rule_set_for(dt.date(2026, 12, 31)).code == "42-HD/BTCTW"
