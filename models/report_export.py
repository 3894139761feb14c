"""Report outputs as pure functions returning bytes or markup: CSV tables, the five-year pack as XLSX
and PDF, and bar charts as inline SVG.

Design: every table a report shows is a `Table` (title, Vietnamese headers, rows of plain values), so
the page, the CSV, the XLSX and the PDF print the same numbers. CSV is UTF-8 with a BOM (Excel on
Windows then reads the diacritics) and every text field passes `csv_safe()` (a value a member typed
must never run as a formula on the clerk's desktop, docs/security.md). The PDF embeds DejaVu Serif
like the minutes. Charts are SVG built on the server with presentation attributes only (no script,
no inline style), so they pass the CSP and print.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass, field
from html import escape
from typing import Any

from .minutes import FONT_DIR
from .rules import BAND_CODES, BAND_LABELS
from .uploads import csv_safe


@dataclass
class Table:
    """A titled table with Vietnamese headers and plain rows."""

    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    # The columns an A4 page shows (a wide per-cell table prints only its key columns; the XLSX has all).
    pdf_columns: list[int] | None = None


def fmt(value: Any, digits: int = 1) -> str:
    """A number the Vietnamese way (decimal comma), a date as dd/mm/yyyy, None as a dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "Có" if value else "Không"
    if isinstance(value, float):
        text = f"{value:.{digits}f}".replace(".", ",")
        return text.rstrip("0").rstrip(",") if "," in text else text
    if isinstance(value, dt.date):
        return value.strftime("%d/%m/%Y")
    return str(value)


def csv_bytes(table: Table) -> bytes:
    """The table as CSV: UTF-8 with BOM, Vietnamese headers, formula-looking text neutralised."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([csv_safe(c) for c in table.columns])
    for row in table.rows:
        writer.writerow([csv_safe(fmt(v)) if not isinstance(v, (int, float)) or isinstance(v, bool)
                         else fmt(v, 2) for v in row])
    return "\ufeff".encode() + out.getvalue().encode("utf-8")


def xlsx_bytes(title: str, tables: list[Table], progress=None) -> bytes:
    """The tables as one workbook, one sheet per table (numbers stay numbers; text never a formula)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    from .uploads import FORMULA_STARTS

    # Write-only mode streams rows: a national per-cell table has tens of thousands of cells.
    book = Workbook(write_only=True)
    bold = Font(bold=True)
    for index, table in enumerate(tables, start=1):
        name = f"{index}. {table.title}"[:31].replace("/", "-").replace(":", "")
        sheet = book.create_sheet(name)
        sheet.column_dimensions["A"].width = 34
        for col in range(2, len(table.columns) + 1):
            sheet.column_dimensions[_letter(col)].width = 16
        heading = WriteOnlyCell(sheet, value=table.title)
        heading.font = Font(bold=True, size=13)
        sheet.append([heading])
        sheet.append([_text_cell(sheet, title)])
        header = []
        for column in table.columns:
            cell = _text_cell(sheet, column)
            cell.font = bold
            header.append(cell)
        sheet.append(header)
        for row in table.rows:
            out = []
            for v in row:
                if isinstance(v, float):
                    out.append(round(v, 2))
                elif isinstance(v, dt.date):
                    out.append(v.strftime("%d/%m/%Y"))
                elif isinstance(v, str) and v.startswith(FORMULA_STARTS):
                    out.append(_text_cell(sheet, v))
                else:
                    out.append(v)
            sheet.append(out)
        if progress:
            progress(index, len(tables))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _letter(col: int) -> str:
    from openpyxl.utils import get_column_letter

    return get_column_letter(col)


def _text_cell(sheet, value: str):
    """A cell stored as text whatever it starts with (keep_as_text for write-only sheets)."""
    from openpyxl.cell import WriteOnlyCell

    cell = WriteOnlyCell(sheet, value=value)
    cell.data_type = "s"
    return cell


def pdf_bytes(title: str, subtitle: str, tables: list[Table], charts: list[tuple[str, list[str], list[float | None]]] = (),
              max_rows: int = 100) -> bytes:
    """The pack as an A4 PDF in Vietnamese: title, bar charts, then each table (long ones cut with a note)."""
    from fpdf import FPDF

    pdf = FPDF(format="A4", unit="mm")
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_font("DejaVu", "", str(FONT_DIR / "DejaVuSerif.ttf"))
    pdf.add_font("DejaVu", "B", str(FONT_DIR / "DejaVuSerif-Bold.ttf"))
    pdf.add_page()
    pdf.set_font("DejaVu", "B", 14)
    pdf.multi_cell(0, 7, title, align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 10)
    pdf.multi_cell(0, 6, subtitle, align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    for chart_title, labels, values in charts:
        _pdf_bars(pdf, chart_title, labels, values)
    for table in tables:
        pdf.set_font("DejaVu", "B", 11)
        pdf.ln(2)
        pdf.multi_cell(0, 6, table.title, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("DejaVu", "", 7.5)
        keep = table.pdf_columns or list(range(len(table.columns)))
        columns = [table.columns[i] for i in keep]
        rows = [[fmt(row[i]) for i in keep] for row in table.rows[:max_rows]]
        with pdf.table(text_align="CENTER", line_height=4.2, first_row_as_headings=True,
                       col_widths=[3] + [2] * (len(columns) - 1)) as grid:
            for row in [columns] + rows:
                line = grid.row()
                for value in row:
                    line.cell(str(value))
        if len(table.rows) > max_rows:
            pdf.set_font("DejaVu", "", 8)
            pdf.multi_cell(0, 5, f"(Bảng có {len(table.rows)} dòng; bản PDF in {max_rows} dòng đầu, "
                                 "xem đủ các dòng và các cột trong tệp XLSX.)", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _pdf_bars(pdf, title: str, labels: list[str], values: list[float | None]) -> None:
    """A simple bar chart of percentages drawn with PDF rectangles."""
    pdf.set_font("DejaVu", "B", 10)
    pdf.multi_cell(0, 6, title, new_x="LMARGIN", new_y="NEXT")
    x0, y0, height, width = pdf.l_margin + 10, pdf.get_y() + 2, 35, 16
    pdf.set_font("DejaVu", "", 8)
    pdf.set_draw_color(120, 120, 120)
    pdf.line(x0, y0 + height, x0 + width * len(labels) + 4, y0 + height)
    for i, (label, value) in enumerate(zip(labels, values)):
        x = x0 + 4 + i * width
        if value is not None:
            bar = height * max(0.0, min(value, 100.0)) / 100.0
            pdf.set_fill_color(178, 34, 34)
            pdf.rect(x, y0 + height - bar, width - 6, bar, style="F")
            pdf.text(x, y0 + height - bar - 1, fmt(float(value)) + "%")
        pdf.text(x, y0 + height + 4, str(label))
    pdf.set_y(y0 + height + 8)


def bar_chart_svg(title: str, labels: list[str], series: list[tuple[str, list[float | None]]],
                  maximum: float = 100.0, unit: str = "%", highlight: set[str] | None = None) -> str:
    """A grouped bar chart as an SVG element (values 0..maximum); highlighted labels are the baselines."""
    colours = ["#b22222", "#1f5f8b", "#6b8e23", "#8b6b23"]
    highlight = highlight or set()
    groups = max(len(labels), 1)
    bars = max(len(series), 1)
    width, height, left, bottom, top = 640, 260, 44, 40, 28
    plot_w, plot_h = width - left - 12, height - bottom - top
    slot = plot_w / groups
    bar_w = max(min(slot * 0.8 / bars, 48), 2)
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
             f'xmlns="http://www.w3.org/2000/svg">', f"<title>{escape(title)}</title>"]
    for tick in range(0, 5):
        value = maximum * tick / 4
        y = top + plot_h - plot_h * tick / 4
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 12}" y2="{y:.1f}" stroke="#ddd" stroke-width="1"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#333">'
                     f"{escape(fmt(float(value), 0))}</text>")
    for g, label in enumerate(labels):
        x_group = left + g * slot + (slot - bar_w * bars) / 2
        for s, (name, values) in enumerate(series):
            value = values[g] if g < len(values) else None
            if value is None:
                continue
            h = plot_h * max(0.0, min(float(value), maximum)) / maximum if maximum else 0
            x = x_group + s * bar_w
            parts.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" '
                         f'fill="{colours[s % len(colours)]}"><title>{escape(name)} {escape(label)}: '
                         f"{escape(fmt(float(value)))}{escape(unit)}</title></rect>")
            if bars == 1 or groups <= 6:
                parts.append(f'<text x="{x + (bar_w - 2) / 2:.1f}" y="{top + plot_h - h - 3:.1f}" font-size="10" '
                             f'text-anchor="middle" fill="#222">{escape(fmt(float(value)))}</text>')
        weight = "bold" if label in highlight else "normal"
        parts.append(f'<text x="{left + g * slot + slot / 2:.1f}" y="{height - bottom + 16}" font-size="12" '
                     f'text-anchor="middle" font-weight="{weight}" fill="#222">{escape(str(label))}'
                     f'{" (gốc)" if label in highlight else ""}</text>')
    if len(series) > 1:
        for s, (name, _values) in enumerate(series):
            x = left + s * 150
            parts.append(f'<rect x="{x}" y="6" width="12" height="12" fill="{colours[s % len(colours)]}"/>')
            parts.append(f'<text x="{x + 16}" y="16" font-size="11" fill="#222">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def band_columns() -> list[str]:
    """Band labels in order (Tốt, Khá, Trung bình, Kém)."""
    return [BAND_LABELS[c] for c in BAND_CODES]
