"""XLSX import and export of checklist templates, one row per item (like ODK's XLSForm).

Design: the workbook has a "tieu_chi" sheet (one row per item, the section repeated on each row,
Vietnamese column headers) and a "mau" sheet of key/value settings (code, name, kind, total
points). Types and computed sources may be written as codes (yes_no) or Vietnamese labels
(Có/Không). `export_version()` is a pure function of a version returning bytes. `import_workbook()`
reads everything first and reports every problem with its row number; only a clean file creates
records (in one transaction): a new template with a draft v1, or a new draft version of the
template with the same code. Publishing stays a separate, validated step in the editor.
The file is read with bounded memory and time (models/uploads.py) and at most `MAX_ITEMS` rows;
numbers must be finite (a published `inf` once broke every cell's sheet).
"""
from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font

from .base import ValidationError, db
from .checklists import (
    COMPUTED_SOURCES,
    ITEM_CODE,
    ITEM_TYPES,
    SLUG,
    TEMPLATE_KINDS,
    UNSCORED_TYPES,
    ChecklistTemplate,
    TemplateItem,
    TemplateSection,
    TemplateVersion,
    latest_version,
    version_tree,
)
from .uploads import UploadError, keep_as_text, open_xlsx, stream_rows

MAX_ITEMS = 500
MAX_UPLOAD_BYTES = 2 * 1024 * 1024

ITEMS_SHEET = "tieu_chi"
SETTINGS_SHEET = "mau"
COLUMNS = [
    ("section", "Phần"),
    ("code", "Mã"),
    ("text", "Nội dung"),
    ("type", "Loại"),
    ("points", "Điểm"),
    ("required", "Bắt buộc"),
    ("allow_na", "Không áp dụng"),
    ("help_text", "Hướng dẫn"),
    ("source", "Căn cứ"),
    ("choices", "Lựa chọn"),
    ("computed_source", "Nguồn tự tính"),
    ("min_value", "Tối thiểu"),
]
SETTINGS = [("code", "Mã mẫu"), ("name", "Tên mẫu"), ("kind", "Loại mẫu"), ("total_points", "Tổng điểm"),
            ("notes", "Ghi chú")]
YES = {"x", "có", "co", "1", "true", "yes", "c"}
NO = {"", "không", "khong", "0", "false", "no", "k"}


@dataclass
class ImportResult:
    """What an import made, or the row-level problems that stopped it."""

    errors: list[str] = field(default_factory=list)
    template: ChecklistTemplate | None = None
    version: TemplateVersion | None = None


def _fold(text: Any) -> str:
    """Lower-cased, trimmed text for matching labels."""
    return str(text or "").strip().lower()


def export_version(version: TemplateVersion) -> bytes:
    """The version as an .xlsx file (bytes): settings sheet plus one row per item."""
    wb = Workbook()
    ws = wb.active
    ws.title = ITEMS_SHEET
    ws.append([label for _key, label in COLUMNS])
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for section, items in version_tree(version):
        for item in items:
            choices = "\n".join(f"{c.get('label', '')} | {_num(c.get('points') or 0)}" for c in item.choices)
            ws.append([
                section.title, item.code, item.text, ITEM_TYPES.get(item.type, item.type), _num(item.points),
                "x" if item.required else "", "x" if item.allow_na else "", item.help_text, item.source, choices,
                COMPUTED_SOURCES.get(item.computed_source, item.computed_source) if item.computed_source else "",
                "" if item.min_value is None else _num(item.min_value),
            ])
    for column, width in zip("ABCDEFGHIJKL", (28, 10, 70, 14, 8, 10, 14, 30, 24, 30, 30, 10)):
        ws.column_dimensions[column].width = width
    for row in ws.iter_rows(min_row=2):
        for cell in row:
            cell.alignment = Alignment(wrap_text=True, vertical="top")
    settings = wb.create_sheet(SETTINGS_SHEET)
    template = version.template
    values = {"code": template.code, "name": template.name, "kind": template.kind_label,
              "total_points": _num(version.total_points), "notes": version.notes}
    for key, label in SETTINGS:
        settings.append([label, values[key]])
    settings.column_dimensions["A"].width = 16
    settings.column_dimensions["B"].width = 70
    keep_as_text(ws)
    keep_as_text(settings)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _num(value: Any) -> int | float:
    """85 rather than 85.0 in the sheet."""
    value = float(value)
    return int(value) if value.is_integer() else value


def _lookup(value: Any, table: dict[str, str]) -> str | None:
    """A code from its code or its Vietnamese label (case-insensitive)."""
    folded = _fold(value)
    for code, label in table.items():
        if folded in (code.lower(), label.lower()):
            return code
    return None


def _parse_bool(value: Any) -> bool | None:
    """'x', 'có', 1 → True; empty, 'không', 0 → False; anything else → None."""
    folded = _fold(value)
    if folded in YES:
        return True
    if folded in NO:
        return False
    return None


def _parse_choices(text: Any) -> list[dict[str, Any]]:
    """'Nhãn | điểm' separated by new lines or ';' → choices; ValueError on a bad number."""
    choices = []
    for part in str(text or "").replace(";", "\n").splitlines():
        if not part.strip():
            continue
        label, _sep, points = part.partition("|")
        value = _number(points) if points.strip() else 0.0
        choices.append({"value": str(len(choices) + 1), "label": label.strip(), "points": _num(value)})
    return choices


def _number(value: Any) -> float:
    """A finite cell number (a Vietnamese decimal comma accepted); ValueError otherwise (nan, inf, 1e400)."""
    if isinstance(value, bool):
        raise ValueError
    try:
        number = float(value) if isinstance(value, (int, float)) else float(str(value).strip().replace(",", "."))
    except OverflowError:
        raise ValueError from None
    if not math.isfinite(number) or abs(number) > 1e9:
        raise ValueError
    return number


def read_workbook(data: bytes) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """Parse the workbook into settings and item rows; return them with every row-level problem."""
    try:
        wb = open_xlsx(data, broken="Tệp không phải là tệp Excel (.xlsx) hợp lệ.")
        return _read_sheets(wb)
    except UploadError as exc:
        return {}, [], [str(exc)]


def _read_sheets(wb) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    errors: list[str] = []
    if ITEMS_SHEET not in wb.sheetnames:
        return {}, [], [f"Tệp thiếu trang tính “{ITEMS_SHEET}” (mỗi dòng một tiêu chí)."]
    settings: dict[str, Any] = {}
    if SETTINGS_SHEET in wb.sheetnames:
        by_label = {label.lower(): key for key, label in SETTINGS}
        for _line, row in stream_rows(wb[SETTINGS_SHEET], 200, "Trang “mau” có quá nhiều dòng."):
            if row and row[0] is not None and _fold(row[0]) in by_label:
                settings[by_label[_fold(row[0])]] = row[1] if len(row) > 1 else None
    else:
        errors.append(f"Tệp thiếu trang tính “{SETTINGS_SHEET}” (mã, tên, loại, tổng điểm của mẫu).")
    too_many = f"Trang “{ITEMS_SHEET}” có quá nhiều dòng: một mẫu có tối đa {MAX_ITEMS} tiêu chí."
    rows = [values for _line, values in stream_rows(wb[ITEMS_SHEET], 2 * MAX_ITEMS + 1, too_many)]
    if not rows:
        return settings, [], errors + ["Trang tính tiêu chí trống."]
    header = {_fold(v): i for i, v in enumerate(rows[0]) if v is not None}
    index = {}
    for key, label in COLUMNS:
        if label.lower() in header:
            index[key] = header[label.lower()]
        elif key in ("section", "code", "text", "type", "points"):
            errors.append(f"Dòng 1: thiếu cột “{label}”.")
    if errors and any(e.startswith("Dòng 1") for e in errors):
        return settings, [], errors
    items = []
    for number, row in enumerate(rows[1:], start=2):
        cells = {key: (row[i] if i < len(row) else None) for key, i in index.items()}
        if all(v is None or str(v).strip() == "" for v in cells.values()):
            continue
        cells["row"] = number
        items.append(cells)
    return settings, items, errors


def validate_rows(settings: dict[str, Any], rows: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """Check settings and every row; return clean settings, clean items and the problems by row."""
    errors: list[str] = []
    clean_settings: dict[str, Any] = {}
    code = str(settings.get("code") or "").strip()
    if not SLUG.match(code):
        errors.append("Trang “mau”: “Mã mẫu” gồm chữ thường không dấu, số, gạch nối (2–60 ký tự).")
    name = str(settings.get("name") or "").strip()
    if not name:
        errors.append("Trang “mau”: thiếu “Tên mẫu”.")
    kind = _lookup(settings.get("kind"), TEMPLATE_KINDS) or (str(settings.get("kind") or "").strip() or None)
    if not kind or not SLUG.match(kind):
        errors.append("Trang “mau”: “Loại mẫu” không hợp lệ (ví dụ: Sinh hoạt thường kỳ).")
    try:
        total = _number(settings.get("total_points")) if settings.get("total_points") not in (None, "") else None
    except ValueError:
        total = None
        errors.append("Trang “mau”: “Tổng điểm” phải là một số.")
    clean_settings.update(code=code, name=name, kind=kind, total_points=total,
                          notes=str(settings.get("notes") or "").strip())
    if not rows:
        errors.append("Trang “tieu_chi” chưa có tiêu chí nào.")
    seen: dict[str, int] = {}
    items = []
    for row in rows:
        n = row["row"]
        problems = []
        item_code = str(row.get("code") or "").strip()
        if not item_code:
            problems.append("thiếu mã tiêu chí")
        elif not ITEM_CODE.match(item_code):
            problems.append(f"mã “{item_code}” không hợp lệ (chữ, số, dấu chấm, gạch nối; không dấu cách)")
        elif item_code in seen:
            problems.append(f"mã “{item_code}” trùng với dòng {seen[item_code]}")
        else:
            seen[item_code] = n
        section = str(row.get("section") or "").strip()
        if not section:
            problems.append("thiếu tên phần")
        text = str(row.get("text") or "").strip()
        if not text:
            problems.append("thiếu nội dung tiêu chí")
        item_type = _lookup(row.get("type"), ITEM_TYPES)
        if item_type is None:
            problems.append(f"loại “{row.get('type') or ''}” không hợp lệ (dùng: {', '.join(ITEM_TYPES.values())})")
        raw_points = row.get("points")
        points = 0.0
        if raw_points is None or str(raw_points).strip() == "":
            if item_type and item_type not in UNSCORED_TYPES:
                problems.append("thiếu điểm (ghi 0 nếu tiêu chí không tính điểm)")
        else:
            try:
                points = _number(raw_points)
                if points < 0:
                    raise ValueError
            except ValueError:
                problems.append(f"điểm “{raw_points}” không phải số không âm")
        flags = {}
        for key, label in (("required", "Bắt buộc"), ("allow_na", "Không áp dụng")):
            flags[key] = _parse_bool(row.get(key))
            if flags[key] is None:
                problems.append(f"cột “{label}” chỉ ghi x hoặc để trống")
        try:
            choices = _parse_choices(row.get("choices")) if item_type in ("single_choice", "multi_choice") else []
        except ValueError:
            choices = []
            problems.append("lựa chọn có điểm không phải số (dạng “Nhãn | điểm”)")
        computed = ""
        if item_type == "computed":
            computed = _lookup(row.get("computed_source"), COMPUTED_SOURCES) or ""
            if not computed:
                problems.append(f"nguồn tự tính “{row.get('computed_source') or ''}” không hợp lệ "
                                f"(dùng: {', '.join(COMPUTED_SOURCES.values())})")
        min_value = None
        if row.get("min_value") not in (None, ""):
            try:
                min_value = _number(row["min_value"])
            except ValueError:
                problems.append("cột “Tối thiểu” phải là một số")
        candidate = TemplateItem(code=item_code or "X", text=text or "x", type=item_type or "yes_no", points=points,
                                 choices_json=json.dumps(choices, ensure_ascii=False), computed_source=computed or "")
        if not problems:
            try:
                candidate.clean()
            except ValidationError as exc:
                problems.extend(msg.rstrip(".").lower() for msg in exc.errors.values())
        if problems:
            errors.append(f"Dòng {n}: " + "; ".join(problems) + ".")
            continue
        items.append({"section": section, "code": item_code, "text": text, "type": item_type, "points": points,
                      "required": flags["required"], "allow_na": flags["allow_na"],
                      "help_text": str(row.get("help_text") or "").strip(),
                      "source": str(row.get("source") or "").strip()[:200],
                      "choices_json": json.dumps(choices, ensure_ascii=False), "computed_source": computed,
                      "min_value": min_value})
    return clean_settings, items, errors


def import_workbook(data: bytes) -> ImportResult:
    """Import an .xlsx: all or nothing. A new template gets draft v1; a known code gets a new draft."""
    settings, rows, errors = read_workbook(data)
    if errors and not rows:
        return ImportResult(errors=errors)
    clean, items, problems = validate_rows(settings, rows)
    errors = errors + problems
    template = ChecklistTemplate.get_or_none(ChecklistTemplate.code == clean.get("code")) if clean.get("code") else None
    if template is not None:
        latest = latest_version(template)
        if latest is not None and latest.status == "draft":
            errors.append(f"Mẫu {template.code} đang có bản nháp (phiên bản {latest.number}); "
                          "hãy ban hành hoặc xóa bản nháp đó trước khi nhập.")
    if len(items) > MAX_ITEMS:
        errors.append(f"Một mẫu có tối đa {MAX_ITEMS} tiêu chí; tệp có {len(items)}.")
    if errors:
        return ImportResult(errors=errors)
    total = clean["total_points"]
    if total is None:
        total = sum(i["points"] for i in items)
    try:
        return _create(template, clean, items, total)
    except ValidationError as exc:
        # A column limit (e.g. a section title too long) found while writing: nothing was kept.
        return ImportResult(errors=["Tệp có giá trị không lưu được: " + "; ".join(exc.errors.values())])


def _create(template, clean, items, total) -> ImportResult:
    with db.atomic():
        if template is None:
            template = ChecklistTemplate.create(code=clean["code"], name=clean["name"], kind=clean["kind"],
                                                description=clean["notes"])
            number, parent = 1, None
        else:
            latest = latest_version(template)
            number, parent = (latest.number + 1, latest.id) if latest else (1, None)
        version = TemplateVersion.create(template=template.id, number=number, parent=parent, status="draft",
                                         total_points=total, notes=clean["notes"] or "Nhập từ tệp Excel")
        sections: dict[str, TemplateSection] = {}
        positions: dict[str, int] = {}
        for item in items:
            title = item.pop("section")
            if title not in sections:
                sections[title] = TemplateSection.create(version=version.id, title=title, position=len(sections) + 1)
            positions[title] = positions.get(title, 0) + 1
            TemplateItem.create(version=version.id, section=sections[title].id, position=positions[title], **item)
    return ImportResult(template=template, version=version)
