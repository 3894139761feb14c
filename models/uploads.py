"""Reading uploaded spreadsheets with bounded memory and time.

Design: an XLSX is a zip of XML parts, so a 2 MB upload can expand to millions of rows (236 s and
2.1 GB once). Before openpyxl parses anything, `open_xlsx()` reads the zip's directory and refuses
a file whose parts add up to more than a limit when uncompressed (the sizes in the directory are
binding: Python's zip reader never yields more than the declared size). Rows are then streamed
(`read_only=True`) and the caller stops at its row cap. Every parsing failure of a malformed part
becomes an `UploadError` with a Vietnamese message instead of a 500. Expat (Python >= 3.11.4) caps
entity expansion, so an XML bomb inside a part fails as malformed XML.
"""
from __future__ import annotations

import io
import zipfile
from typing import Iterator

XLSX_MAX_UNCOMPRESSED = 20 * 1024 * 1024
XLSX_MAX_PARTS = 300
_BROKEN = "Không đọc được tệp Excel: tệp bị hỏng hoặc không phải định dạng .xlsx."


class UploadError(ValueError):
    """The uploaded file cannot be read safely; the message is Vietnamese."""


def read_upload(upload, limit: int) -> bytes:
    """The uploaded file's bytes, refusing (without reading it all) one larger than `limit`."""
    data = upload.stream.read(limit + 1)
    if len(data) > limit:
        raise UploadError(f"Tệp lớn hơn {limit // (1024 * 1024)} MB, vượt quá giới hạn cho phép. "
                          "Vui lòng chia nhỏ tệp.")
    return data


def open_xlsx(data: bytes, max_uncompressed: int = XLSX_MAX_UNCOMPRESSED, broken: str = _BROKEN):
    """A read-only openpyxl workbook, after checking the archive's uncompressed size and part count."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        parts = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise UploadError(broken) from None
    if len(parts) > XLSX_MAX_PARTS:
        raise UploadError(broken)
    total = sum(part.file_size for part in parts)
    if total > max_uncompressed:
        raise UploadError(f"Tệp Excel khi giải nén lớn hơn {max_uncompressed // (1024 * 1024)} MB "
                          "(quá nhiều dòng hoặc tệp bị làm hỏng). Vui lòng chỉ giữ các dòng cần nhập.")
    from openpyxl import load_workbook

    try:
        return load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception:  # openpyxl raises many kinds of errors on malformed parts
        raise UploadError(broken) from None


def stream_rows(sheet, max_rows: int, too_many: str) -> Iterator[tuple[int, list]]:
    """(line, values) of a sheet's rows, streamed; UploadError past `max_rows` or on a broken part."""
    try:
        for line, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            if line > max_rows:
                raise UploadError(too_many)
            yield line, list(values)
    except UploadError:
        raise
    except Exception:  # a malformed sheet part fails only when its rows are read
        raise UploadError(_BROKEN) from None


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def keep_as_text(sheet) -> None:
    """Store every text cell of an export as text: openpyxl writes a string starting with '=' as a formula.

    A member's name like `=HYPERLINK("http://…")` typed on a tablet must open in Excel as the text
    it is, never run as a formula on the clerk's desktop.
    """
    for row in sheet.iter_rows():
        for cell in row:
            if isinstance(cell.value, str) and (cell.data_type == "f" or cell.value.startswith(FORMULA_STARTS)):
                cell.data_type = "s"


def csv_safe(value) -> str:
    """A CSV field that a spreadsheet opens as text: a leading =, +, -, @, tab or CR gets a quote mark."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text
