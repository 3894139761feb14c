"""Roster import (XLSX or CSV with Vietnamese headers) and export (XLSX), as plain functions.

Design: `read_table()` turns the uploaded bytes into rows of text keyed by our field names (headers
matched without regard to case or diacritics); `validate_rows()` checks every row against the
database and the file itself and returns per-row messages, changing nothing; `apply_rows()` writes
all rows in one transaction and re-checks inside it, so either every member is created or none is.
`ImportJob` (local, never synced) keeps the validated rows between the preview and the apply.
`export_xlsx()` returns bytes with the same headers, so an export can be edited and imported back.
Dates in files are dd/mm/yyyy (Excel date cells are accepted too). Files are read with bounded
memory and time (models/uploads.py: size cap, uncompressed-size check, streamed rows, row cap);
text is NFC-normalised whatever the file's encoding, so a name typed on Windows (cp1258 combining
accents) and the same name from a phone compare equal.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Iterable

from peewee import CharField, DateTimeField, IntegerField, TextField

from .base import BaseModel, ValidationError, db, local_today, new_id, utcnow
from .members import (
    GENDERS,
    MEMBER_STATUSES,
    POSITION_KINDS,
    Member,
    MemberStatusChange,
    assign_position,
    fold,
)
from .org import Cell
from .uploads import UploadError, keep_as_text, open_xlsx, stream_rows

# Vietnamese header -> field, in the order the export writes them.
COLUMNS = [
    ("Họ và tên", "full_name"),
    ("Năm sinh", "birth_year"),
    ("Giới tính", "gender"),
    ("Ngày vào Đảng", "admitted_on"),
    ("Ngày chính thức", "full_member_on"),
    ("Số thẻ đảng viên", "card_number"),
    ("Trạng thái", "status"),
    ("Chức vụ", "position"),
    ("Mã chi bộ", "cell_code"),
]
REQUIRED_HEADERS = ("Họ và tên", "Mã chi bộ")
MAX_ROWS = 5000
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
_TOO_MANY = f"Tệp có quá nhiều dòng: mỗi lần nhập tối đa {MAX_ROWS} đảng viên. Vui lòng chia nhỏ tệp."


class RosterError(ValueError):
    """The file as a whole cannot be read (not a spreadsheet, no header row, missing columns)."""


_HEADER_FIELDS = {fold(header): name for header, name in COLUMNS}
_STATUS_WORDS = {fold(label): code for code, label in MEMBER_STATUSES.items()}
_STATUS_WORDS.update({"chinh thuc": "full", "ct": "full", "du bi": "probationary", "db": "probationary",
                      "mien sinh hoat": "exempted", "mien sh": "exempted",
                      "sinh hoat tam thoi": "temp_here", "chuyen sinh hoat": "transferred",
                      "xoa ten": "struck_off"})
_GENDER_WORDS = {fold(label): code for code, label in GENDERS.items()}
_POSITION_WORDS = {fold(label): code for code, label in POSITION_KINDS.items()}
_POSITION_WORDS.update({"bi thu": "bi_thu", "pho bi thu": "pho_bi_thu", "dang vien": "", "": ""})


def parse_date(text: Any) -> dt.date | None:
    """A date from dd/mm/yyyy (also d/m/yyyy, dd-mm-yyyy, yyyy-mm-dd or an Excel date); None if empty.

    Raises ValueError with a Vietnamese message when the text is not a date.
    """
    if text is None or text == "":
        return None
    if isinstance(text, dt.datetime):
        return text.date()
    if isinstance(text, dt.date):
        return text
    raw = str(text).strip()
    if not raw:
        return None
    for fmt in ("%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(raw, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"Ngày không hợp lệ: “{raw}” (cần dạng dd/mm/yyyy).")


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().strftime("%d/%m/%Y")
    if isinstance(value, dt.date):
        return value.strftime("%d/%m/%Y")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return unicodedata.normalize("NFC", str(value)).strip()


def read_table(filename: str, data: bytes) -> list[dict[str, str]]:
    """Rows of an XLSX or CSV roster keyed by field name (plus `_line`); RosterError if unreadable."""
    name = (filename or "").lower()
    if not data:
        raise RosterError("Tệp rỗng. Vui lòng chọn tệp danh sách đảng viên (.xlsx hoặc .csv).")
    if len(data) > MAX_UPLOAD_BYTES:
        raise RosterError(f"Tệp lớn hơn {MAX_UPLOAD_BYTES // (1024 * 1024)} MB, vượt quá giới hạn cho phép.")
    try:
        if name.endswith(".xlsx"):
            raw_rows = _xlsx_rows(data)
        elif name.endswith(".csv"):
            raw_rows = _csv_rows(data)
        else:
            raise RosterError("Chỉ nhận tệp .xlsx hoặc .csv.")
    except UploadError as exc:
        raise RosterError(str(exc)) from None
    raw_rows = [r for r in raw_rows if any(_cell_text(v) for v in r[1])]
    if not raw_rows:
        raise RosterError("Tệp không có dòng nào.")
    header_line, header = raw_rows[0]
    fields = [_HEADER_FIELDS.get(fold(h)) for h in header]
    missing = [h for h in REQUIRED_HEADERS if _HEADER_FIELDS[fold(h)] not in fields]
    if missing:
        raise RosterError("Thiếu cột: " + ", ".join(f"“{h}”" for h in missing)
                          + ". Dòng đầu tiên phải là tiêu đề cột, ví dụ: "
                          + ", ".join(h for h, _ in COLUMNS) + ".")
    rows = []
    for line, values in raw_rows[1:]:
        row = {"_line": str(line)}
        for index, name in enumerate(fields):
            if name and index < len(values):
                row[name] = _cell_text(values[index])
        rows.append(row)
    if len(rows) > MAX_ROWS:
        raise RosterError(f"Tệp có {len(rows)} dòng, vượt quá giới hạn {MAX_ROWS} dòng mỗi lần nhập.")
    if not rows:
        raise RosterError("Tệp chỉ có dòng tiêu đề, chưa có đảng viên nào.")
    return rows


def _xlsx_rows(data: bytes) -> list[tuple[int, list]]:
    book = open_xlsx(data)
    try:
        if not book.worksheets:
            raise RosterError("Tệp Excel không có trang tính nào.")
        # Blank lines count too, so a sheet of a million empty rows stops as early as a full one.
        return list(stream_rows(book.worksheets[0], 2 * MAX_ROWS + 1, _TOO_MANY))
    finally:
        book.close()


def _csv_rows(data: bytes) -> list[tuple[int, list]]:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or data[:200].count(b"\x00") > 20:
        # Excel's "Unicode text" and some tools save UTF-16: say so rather than "not text".
        raise RosterError("Tệp CSV được lưu theo mã UTF-16. Vui lòng mở tệp và lưu lại dạng "
                          "“CSV UTF-8 (phân tách bằng dấu phẩy)”, rồi nhập lại.")
    for encoding in ("utf-8-sig", "cp1258"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise RosterError("Không đọc được tệp CSV: cần mã hóa UTF-8.")
    if "\x00" in text:
        raise RosterError("Không đọc được tệp CSV: tệp không phải văn bản.")
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows = []
    try:
        for i, row in enumerate(reader, start=1):
            if i > 2 * MAX_ROWS + 1:
                raise RosterError(_TOO_MANY)
            rows.append((i, row))
    except csv.Error:
        raise RosterError("Tệp CSV không hợp lệ (dấu ngoặc kép hoặc dòng bị lỗi).") from None
    return rows


@dataclass
class RowResult:
    """One file row after checking: the values to write and any messages."""

    line: int
    raw: dict[str, str]
    values: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the row can be imported."""
        return not self.errors


def validate_rows(rows: list[dict[str, str]], cells: dict[str, Cell], today: dt.date | None = None) -> list[RowResult]:
    """Check every row (cell code among `cells`, dates, card numbers unique in file and database)."""
    today = today or local_today()
    results = []
    seen_cards: dict[str, int] = {}
    cards_in_file = [r.get("card_number", "").strip() for r in rows if r.get("card_number", "").strip()]
    existing = {m.card_number: m for m in Member.select().where(Member.card_number.in_(cards_in_file))} if cards_in_file else {}
    by_code = {fold(code): cell for code, cell in cells.items()}
    for row in rows:
        result = RowResult(line=int(row["_line"]), raw={k: v for k, v in row.items() if k != "_line"})
        v, errors = result.values, result.errors
        v["full_name"] = unicodedata.normalize("NFC", " ".join(row.get("full_name", "").split()))
        if not v["full_name"]:
            errors.append("Thiếu họ và tên.")
        code = row.get("cell_code", "").strip()
        cell = by_code.get(fold(code))
        if not code:
            errors.append("Thiếu mã chi bộ.")
        elif cell is None:
            errors.append(f"Mã chi bộ “{code}” không có hoặc đồng chí không được nhập vào chi bộ này.")
        else:
            v["cell_id"] = cell.id
        year = row.get("birth_year", "").strip()
        if year:
            if not (year.isascii() and year.isdigit() and len(year) <= 4) or not 1900 <= int(year) <= today.year - 16:
                errors.append(f"Năm sinh “{year}” không hợp lệ (từ 1900 đến {today.year - 16}).")
            else:
                v["birth_year"] = int(year)
        gender = fold(row.get("gender", ""))
        if gender and gender not in _GENDER_WORDS:
            errors.append(f"Giới tính “{row.get('gender')}” không hợp lệ (Nam hoặc Nữ).")
        v["gender"] = _GENDER_WORDS.get(gender, "nam")
        for name, label in (("admitted_on", "Ngày vào Đảng"), ("full_member_on", "Ngày chính thức")):
            try:
                value = parse_date(row.get(name, ""))
            except ValueError as exc:
                errors.append(f"{label}: {exc}")
                continue
            if value and value > today:
                errors.append(f"{label} {value:%d/%m/%Y} ở tương lai.")
            v[name] = value
        if v.get("admitted_on") and v.get("full_member_on") and v["full_member_on"] < v["admitted_on"]:
            errors.append("Ngày chính thức trước ngày vào Đảng.")
        status_text = row.get("status", "").strip()
        status = _STATUS_WORDS.get(fold(status_text)) if status_text else ("full" if v.get("full_member_on") else "probationary")
        if status is None:
            errors.append(f"Trạng thái “{status_text}” không hợp lệ (ví dụ: Chính thức, Dự bị, Miễn sinh hoạt).")
        v["status"] = status or "full"
        position_text = row.get("position", "").strip()
        position = _POSITION_WORDS.get(fold(position_text))
        if position is None:
            errors.append(f"Chức vụ “{position_text}” không hợp lệ (ví dụ: Bí thư, Phó Bí thư, Chi ủy viên).")
        v["position"] = position or ""
        card = row.get("card_number", "").strip()
        if card:
            if len(card) > 20:
                errors.append("Số thẻ đảng viên dài quá 20 ký tự.")
            elif card in seen_cards:
                errors.append(f"Số thẻ đảng viên {card} trùng với dòng {seen_cards[card]} trong tệp.")
            elif card in existing:
                errors.append(f"Số thẻ đảng viên {card} đã có trong hệ thống (đảng viên {existing[card].full_name}).")
            seen_cards.setdefault(card, result.line)
        v["card_number"] = card or None
        results.append(result)
    return results


def apply_rows(results: list[RowResult], today: dt.date | None = None, progress=None) -> list[Member]:
    """Create every member in one transaction; ValidationError (nothing written) if any row fails.

    `progress(done, total)`, when given, is called every 25 rows and at the end (for a progress bar).
    """
    today = today or local_today()
    bad = [r for r in results if not r.ok]
    if bad:
        raise ValidationError({"rows": f"Còn {len(bad)} dòng có lỗi; chưa nhập dòng nào."})
    created = []
    with db.atomic() as transaction:
        try:
            for r in results:
                v = r.values
                member = Member(cell=v["cell_id"], full_name=v["full_name"], birth_year=v.get("birth_year"),
                                gender=v["gender"], admitted_on=v.get("admitted_on"),
                                full_member_on=v.get("full_member_on"), card_number=v.get("card_number"),
                                status=v["status"])
                member.save()
                effective = (v.get("full_member_on") if v["status"] == "full" else v.get("admitted_on")) or today
                MemberStatusChange(member=member.id, status=v["status"], effective_on=effective,
                                   decision="" if v["status"] not in ("exempted", "transferred", "struck_off") else "Nhập từ danh sách",
                                   reason="Nhập từ danh sách đảng viên").save()
                if v["position"]:
                    assign_position(member, v["position"], today, note="Nhập từ danh sách đảng viên")
                created.append(member)
                if progress is not None and (len(created) % 25 == 0 or len(created) == len(results)):
                    progress(len(created), len(results))
        except ValidationError as exc:
            transaction.rollback()
            line = r.line
            raise ValidationError({"rows": f"Dòng {line}: " + "; ".join(exc.errors.values())
                                   + ". Chưa nhập dòng nào."}) from exc
    return created


class ImportJob(BaseModel):
    """An uploaded roster between preview and apply. Local to this node: never synced."""

    id = CharField(primary_key=True, max_length=36, default=new_id)
    user_id = CharField(max_length=36)
    filename = CharField(max_length=200, default="")
    rows_json = TextField(default="[]")
    status = CharField(max_length=20, default="preview")
    created_count = IntegerField(default=0)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "import_job"

    @property
    def rows(self) -> list[dict[str, str]]:
        """The rows as read from the file."""
        return json.loads(self.rows_json or "[]")


def export_xlsx(members: Iterable[Member], positions: dict[str, str] | None = None) -> bytes:
    """The members as an XLSX workbook with the import headers (pure: returns the file's bytes)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    positions = positions or {}
    book = Workbook()
    sheet = book.active
    sheet.title = "Danh sách đảng viên"
    sheet.append([header for header, _ in COLUMNS])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    codes = {c.id: c.code for c in Cell.select(Cell.id, Cell.code)}
    for m in members:
        sheet.append([
            m.full_name, m.birth_year, GENDERS.get(m.gender, ""),
            m.admitted_on.strftime("%d/%m/%Y") if m.admitted_on else "",
            m.full_member_on.strftime("%d/%m/%Y") if m.full_member_on else "",
            m.card_number or "", MEMBER_STATUSES.get(m.status, m.status),
            POSITION_KINDS.get(positions.get(m.id, m.position), "") if (positions.get(m.id) or m.position) else "",
            codes.get(m.cell_id, ""),
        ])
    for column, width in zip("ABCDEFGHI", (28, 10, 10, 15, 15, 18, 24, 20, 12)):
        sheet.column_dimensions[column].width = width
    keep_as_text(sheet)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
