"""Minutes (biên bản): generated from the meeting's data, read back, approved, signed, revised.

Design: `minutes_data(meeting)` gathers everything the prescribed layout needs into one plain,
JSON-ready dict; the printable page and `minutes_pdf()` (a pure function returning bytes) both
render that dict, so they always agree. Signing stores the dict in the `MinutesRevision` that was
signed (its snapshot) and locks the meeting: the signed text never changes afterwards, even if a
member is renamed later. A change after signing opens a new revision with a reason (the meeting is
unlocked until it is signed again); every revision stays listed with its reason and its snapshot.
The PDF embeds DejaVu Serif (vendored under static/fonts, Bitstream Vera licence), which has the
Vietnamese glyphs the core PDF fonts lack; fpdf2 installs with pip alone on every platform.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from peewee import CharField, DateTimeField, ForeignKeyField, IntegerField, TextField

from .base import SyncedModel, ValidationError, db, register, utcnow
from .meetings import (
    CONCLUSION_KINDS,
    MEETING_KINDS,
    Meeting,
    attendance_by_member,
    attendance_summary,
    ends_next_day,
    meeting_node,
)
from .meeting_record import (
    CONTRIBUTION_KINDS,
    GUEST_KINDS,
    TASK_OUTCOMES,
    contribution_summary,
    contributions_of,
    guests_of,
    open_earlier_tasks,
    tasks_of,
    vote_passes,
    votes_of,
)
from .members import Member, roll_for_cell
from .org import Cell, Organisation
from .rules import RuleSet

FONT_DIR = Path(__file__).resolve().parent.parent / "static" / "fonts"
MINUTES_STEPS = {
    "read_back": "Đã đọc lại biên bản",
    "approve": "Chi bộ thông qua biên bản",
    "sign_chair": "Chủ trì ký",
    "sign_secretary": "Thư ký ký",
}


@register
class MinutesRevision(SyncedModel):
    """One revision of a meeting's minutes: read back, approved, signed; a later one says why."""

    meeting = ForeignKeyField(Meeting, backref="minutes_revisions", on_delete="RESTRICT")
    number = IntegerField(default=1)
    reason = CharField(max_length=500, default="")
    read_back_at = DateTimeField(null=True)
    approved_at = DateTimeField(null=True)
    chair_signed_at = DateTimeField(null=True)
    secretary_signed_at = DateTimeField(null=True)
    signed_at = DateTimeField(null=True)
    snapshot_json = TextField(default="")

    class Meta:
        table_name = "minutes_revision"
        indexes = ((("meeting", "number"), True),)

    def sync_scope(self) -> str:
        """Travels with the meeting's cell."""
        return meeting_node(self.meeting_id)

    def clean(self) -> None:
        """A revision after the first says why it was made."""
        if self.number > 1 and not (self.reason or "").strip():
            raise ValidationError({"reason": "Vui lòng ghi lý do sửa đổi biên bản đã ký."})

    def save(self, *args, **kwargs):
        """A signed revision never changes (local writes; a new revision is made instead)."""
        if not self._is_new:
            stored = MinutesRevision.get_or_none(MinutesRevision.id == self.id)
            if stored is not None and stored.signed_at is not None:
                raise ValidationError({"revision": "Bản biên bản đã ký không sửa được; hãy mở bản sửa đổi."})
        return super().save(*args, **kwargs)

    @property
    def snapshot(self) -> dict | None:
        """The minutes as signed, or None before signing."""
        return json.loads(self.snapshot_json) if self.snapshot_json else None


def revisions_of(meeting: Meeting) -> list[MinutesRevision]:
    """Every revision, oldest first."""
    return list(MinutesRevision.live().where(MinutesRevision.meeting == meeting.id)
                .order_by(MinutesRevision.number))


def current_revision(meeting: Meeting) -> MinutesRevision | None:
    """The newest revision (the one being read back or signed), or None before the first step."""
    return (MinutesRevision.live().where(MinutesRevision.meeting == meeting.id)
            .order_by(MinutesRevision.number.desc()).first())


# -- the content -----------------------------------------------------------------------------------

def _hm(value: dt.time | None) -> str:
    """14 giờ 05 phút, as minutes are written."""
    return f"{value.hour:02d} giờ {value.minute:02d} phút" if value else "…"


def _date_words(day: dt.date) -> str:
    """ngày 06 tháng 03 năm 2026."""
    return f"ngày {day.day:02d} tháng {day.month:02d} năm {day.year}"


def _pct(value: float | None) -> str:
    """87,5% (a dash when there is nothing to divide)."""
    if value is None:
        return "—"
    text = f"{value:.1f}".replace(".", ",")
    return (text[:-2] if text.endswith(",0") else text) + "%"


def minutes_data(meeting: Meeting) -> dict[str, Any]:
    """Everything the prescribed minutes layout shows, as plain JSON-ready values."""
    cell = Cell.get_by_id(meeting.cell_id)
    organisation = Organisation.get_or_none(Organisation.id == cell.organisation_id)
    marks = attendance_by_member(meeting)
    roll = roll_for_cell(meeting.cell_id)
    on_roll = {m.id: m for m in roll}
    missing = [mid for mid in marks if mid not in on_roll]
    if missing:  # marked then, moved since: the minutes still name them
        on_roll.update({m.id: m for m in Member.select().where(Member.id.in_(missing))})
    members = list(on_roll.values())
    summary = attendance_summary(meeting, roll, marks)
    names = {m.id: m.full_name for m in members}
    composition = {k: sum(1 for m in members if m.status == k)
                   for k in ("full", "probationary", "exempted", "temp_here", "temp_elsewhere")}
    excused = [{"name": names[mid], "reason": a.reason} for mid, a in marks.items() if a.status == "excused"]
    unexcused = [names[mid] for mid, a in marks.items() if a.status == "unexcused"]
    late = [names[mid] for mid, a in marks.items() if a.status == "present" and a.arrived_late]
    early = [names[mid] for mid, a in marks.items() if a.status == "present" and a.left_early]
    contributions = contributions_of(meeting)
    counts = contribution_summary(meeting, contributions, marks)
    rules = RuleSet.get_or_none(RuleSet.id == meeting.rule_set_id) if meeting.rule_set_id else None
    votes = []
    for vote in votes_of(meeting):
        passed = vote_passes(vote, rules)
        share = _pct(100.0 * vote.in_favour / vote.eligible if vote.eligible else None)
        votes.append({"subject": vote.subject, "in_favour": vote.in_favour, "against": vote.against,
                      "abstain": vote.abstain, "eligible": vote.eligible, "share": share,
                      "result": "thông qua" if passed else ("không thông qua" if passed is False else "")})
    member_name = lambda mid: names.get(mid) or (Member.get_or_none(Member.id == mid).full_name if mid else "")  # noqa: E731
    previous = [{"text": t.text, "assignee": member_name(t.assignee_id) if t.assignee_id else "",
                 "outcome": TASK_OUTCOMES.get(r.outcome, "") if r else "Chưa đánh giá"}
                for t, r in open_earlier_tasks(meeting)]
    kind_words = {"regular": "thường kỳ", "thematic": "chuyên đề", "combined": "thường kỳ kết hợp chuyên đề",
                  "extraordinary": "bất thường"}[meeting.kind]
    return {
        "party_committee": (organisation.name if organisation else "").upper(),
        "cell": cell.name.upper(),
        "title": "BIÊN BẢN",
        "subtitle": f"Sinh hoạt chi bộ {kind_words} tháng {meeting.held_on.month} năm {meeting.held_on.year}",
        "topic": meeting.title if meeting.kind in ("thematic", "combined") else "",
        "kind": MEETING_KINDS[meeting.kind],
        "is_model": bool(meeting.is_model),
        "held_on": meeting.held_on.strftime("%d/%m/%Y"),
        "date_line": f"{meeting.place or '…'}, {_date_words(meeting.held_on)}",
        "started": _hm(meeting.started_at),
        "ended": _hm(meeting.ended_at),
        # Past midnight the minutes name the next day instead of "cùng ngày".
        "ended_day": (_date_words(meeting.held_on + dt.timedelta(days=1)) if ends_next_day(meeting)
                      else "cùng ngày"),
        "time_line": f"Vào lúc {_hm(meeting.started_at)}, {_date_words(meeting.held_on)}",
        "place": meeting.place or "…",
        "composition": composition,
        "on_roll": len(members),
        "counted": summary.counted,
        "present": summary.present,
        "rate": _pct(summary.rate_pct),
        "excused": excused,
        "unexcused": unexcused,
        "late": late,
        "left_early": early,
        "guests": [{"name": g.name, "position": g.position, "kind": GUEST_KINDS.get(g.kind, "")}
                   for g in guests_of(meeting)],
        "chair": member_name(meeting.chair_id) if meeting.chair_id else "",
        "secretary": member_name(meeting.secretary_id) if meeting.secretary_id else "",
        "previous_tasks": previous,
        "contributions": [{"name": c.member.full_name, "kind": CONTRIBUTION_KINDS[c.kind], "summary": c.summary}
                          for c in contributions],
        "contribution_counts": {CONTRIBUTION_KINDS[k]: v for k, v in counts.by_kind.items()},
        "contribution_total": counts.total,
        "speakers": counts.speakers,
        "speakers_share": _pct(counts.share_pct),
        "conclusion_kind": CONCLUSION_KINDS[meeting.conclusion_kind],
        "conclusion": meeting.conclusion,
        "votes": votes,
        "tasks": [{"text": t.text, "assignee": member_name(t.assignee_id) if t.assignee_id else "",
                   "due": t.due_on.strftime("%d/%m/%Y") if t.due_on else ""} for t in tasks_of(meeting)],
    }


def minutes_status(meeting: Meeting, revision: MinutesRevision | None) -> list[str]:
    """What still stops the minutes from being signed (Vietnamese), in the order to do it."""
    missing = []
    if not meeting.started_at:
        missing.append("Chưa bấm “Bắt đầu” (giờ bắt đầu).")
    if not meeting.ended_at:
        missing.append("Chưa bấm “Kết thúc” (giờ kết thúc).")
    if not meeting.chair_id:
        missing.append("Chưa chọn người chủ trì.")
    if not meeting.secretary_id:
        missing.append("Chưa chọn thư ký buổi sinh hoạt.")
    return missing


def minutes_step(meeting: Meeting, step: str) -> MinutesRevision:
    """Advance the minutes: read back, approve, then the chair and the secretary sign (which locks)."""
    from .meetings import ensure_open

    ensure_open(meeting)
    if step not in MINUTES_STEPS:
        raise ValidationError({"minutes": "Thao tác không hợp lệ."})
    missing = minutes_status(meeting, None)
    if missing:
        raise ValidationError({"minutes": " ".join(missing)})
    revision = current_revision(meeting)
    with db.atomic():
        if revision is None or revision.signed_at is not None:
            revision = MinutesRevision(meeting=meeting.id, number=(revision.number + 1) if revision else 1)
        now = utcnow()
        if step == "read_back":
            revision.read_back_at = revision.read_back_at or now
        elif step == "approve":
            if not revision.read_back_at:
                raise ValidationError({"minutes": "Thư ký đọc lại biên bản trước khi chi bộ thông qua."})
            revision.approved_at = revision.approved_at or now
        else:
            if not revision.approved_at:
                raise ValidationError({"minutes": "Chi bộ thông qua biên bản trước khi ký."})
            if step == "sign_chair":
                revision.chair_signed_at = revision.chair_signed_at or now
            else:
                revision.secretary_signed_at = revision.secretary_signed_at or now
        if revision.chair_signed_at and revision.secretary_signed_at:
            revision.snapshot_json = json.dumps(minutes_data(meeting), ensure_ascii=False)
            revision.signed_at = now
            revision.save()
            meeting.status = "closed"
            meeting.save()
        else:
            revision.save()
    return revision


def open_revision(meeting: Meeting, reason: str) -> MinutesRevision:
    """Reopen signed minutes for a change: a new revision that says why; signing it locks again."""
    reason = (reason or "").strip()
    if not meeting.locked:
        raise ValidationError({"reason": "Biên bản chưa ký: sửa trực tiếp, không cần bản sửa đổi."})
    if len(reason) < 5:
        raise ValidationError({"reason": "Vui lòng ghi lý do sửa đổi biên bản đã ký (ít nhất 5 ký tự)."})
    previous = current_revision(meeting)
    with db.atomic():
        revision = MinutesRevision(meeting=meeting.id, number=(previous.number + 1) if previous else 1,
                                   reason=reason[:500])
        revision.save()
        meeting.status = "ended"
        meeting.save()
    return revision


# -- the PDF ---------------------------------------------------------------------------------------

def minutes_pdf(data: dict[str, Any], draft: bool = False) -> bytes:
    """The minutes as an A4 PDF in the prescribed layout, with the Vietnamese font embedded."""
    from fpdf import FPDF

    pdf = FPDF(format="A4", unit="mm")
    pdf.set_margins(20, 15, 15)
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_font("DejaVu", "", str(FONT_DIR / "DejaVuSerif.ttf"))
    pdf.add_font("DejaVu", "B", str(FONT_DIR / "DejaVuSerif-Bold.ttf"))
    pdf.add_font("DejaVu", "I", str(FONT_DIR / "DejaVuSerif-Italic.ttf"))
    pdf.set_title(f"{data['title']} {data['subtitle']}")
    pdf.add_page()
    width = pdf.epw
    half = width / 2

    def text(value: str, style: str = "", size: float = 12, align: str = "L", h: float = 6.5) -> None:
        pdf.set_font("DejaVu", style, size)
        pdf.multi_cell(width, h, value, align=align, new_x="LMARGIN", new_y="NEXT")

    if draft:
        text("BẢN DỰ THẢO — CHƯA KÝ", "B", 10, "C")
    top = pdf.get_y()
    pdf.set_font("DejaVu", "", 11)
    pdf.multi_cell(half, 5.5, f"{data['party_committee']}\n", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "B", 11)
    pdf.multi_cell(half, 5.5, f"{data['cell']}\n*", align="C", new_x="LMARGIN", new_y="NEXT")
    left_bottom = pdf.get_y()
    pdf.set_xy(pdf.l_margin + half, top)
    pdf.set_font("DejaVu", "B", 11)
    pdf.multi_cell(half, 5.5, "ĐẢNG CỘNG SẢN VIỆT NAM", align="C", new_x="LEFT", new_y="NEXT")
    pdf.set_font("DejaVu", "I", 11)
    pdf.multi_cell(half, 5.5, data["date_line"], align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(max(left_bottom, pdf.get_y()) + 6)
    text(data["title"], "B", 15, "C", 8)
    text(data["subtitle"], "B", 13, "C", 7)
    if data.get("topic"):
        text(f"Chuyên đề: {data['topic']}", "I", 12, "C")
    if data.get("is_model"):
        text("(Sinh hoạt chi bộ mẫu)", "I", 12, "C")
    pdf.ln(3)
    for heading, lines in minutes_sections(data):
        text(heading, "B", 12)
        for line in lines:
            text(line)
        pdf.ln(1.5)
    pdf.ln(6)
    y = pdf.get_y()
    if y > pdf.h - 55:
        pdf.add_page()
        y = pdf.get_y()
    for i, (role, name) in enumerate((("THƯ KÝ", data["secretary"]), ("CHỦ TRÌ", data["chair"]))):
        pdf.set_xy(pdf.l_margin + i * half, y)
        pdf.set_font("DejaVu", "B", 12)
        pdf.multi_cell(half, 6, role, align="C", new_x="LEFT", new_y="NEXT")
        pdf.set_font("DejaVu", "I", 11)
        pdf.multi_cell(half, 6, "(Ký, ghi rõ họ tên)", align="C", new_x="LEFT", new_y="NEXT")
        pdf.ln(18)
        pdf.set_x(pdf.l_margin + i * half)
        pdf.set_font("DejaVu", "B", 12)
        pdf.multi_cell(half, 6, name or "", align="C", new_x="LEFT", new_y="NEXT")
    return bytes(pdf.output())


def minutes_sections(data: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """The minutes body as (heading, lines): the same words on the page and in the PDF."""
    c = data["composition"]
    excused = "; ".join(f"{e['name']} ({e['reason'] or 'không ghi lý do'})" for e in data["excused"]) or "không"
    composition = [
        f"Tổng số đảng viên của chi bộ: {data['on_roll']} đồng chí (chính thức {c['full']}, dự bị {c['probationary']}, "
        f"sinh hoạt tạm thời {c['temp_here']}, miễn sinh hoạt {c['exempted']}, "
        f"sinh hoạt tạm thời nơi khác {c['temp_elsewhere']}).",
        f"Có mặt: {data['present']}/{data['counted']} đồng chí (tỷ lệ {data['rate']}).",
        f"Vắng có lý do: {len(data['excused'])} đồng chí — {excused}.",
        f"Vắng không lý do: {len(data['unexcused'])} đồng chí — {', '.join(data['unexcused']) or 'không'}.",
    ]
    if data["late"]:
        composition.append(f"Đến muộn: {', '.join(data['late'])}.")
    if data["left_early"]:
        composition.append(f"Về sớm: {', '.join(data['left_early'])}.")
    for g in data["guests"]:
        composition.append(f"{g['kind']}: đồng chí {g['name']}{(' — ' + g['position']) if g['position'] else ''}.")
    composition.append(f"Chủ trì: đồng chí {data['chair'] or '…'}. Thư ký: đồng chí {data['secretary'] or '…'}.")
    proceedings = []
    if data["previous_tasks"]:
        proceedings.append("Đánh giá việc thực hiện nhiệm vụ kỳ trước:")
        proceedings += [f"– {t['text']}{(' (' + t['assignee'] + ')') if t['assignee'] else ''}: {t['outcome']}."
                        for t in data["previous_tasks"]]
    counts = ", ".join(f"{k.lower()} {v}" for k, v in data["contribution_counts"].items())
    proceedings.append(f"Ý kiến phát biểu: {data['contribution_total']} lượt ({counts}); "
                       f"{data['speakers']}/{data['present']} đảng viên có mặt đã phát biểu ({data['speakers_share']}).")
    proceedings += [f"– Đồng chí {p['name']} ({p['kind'].lower()}){': ' + p['summary'] if p['summary'] else ''}."
                    for p in data["contributions"]]
    conclusion = [data["conclusion"] or "…"]
    votes = [f"Biểu quyết “{v['subject']}”: tán thành {v['in_favour']}/{v['eligible']} ({v['share']}), "
             f"không tán thành {v['against']}, không biểu quyết {v['abstain']}"
             f"{(' — ' + v['result']) if v['result'] else ''}." for v in data["votes"]]
    tasks = [f"– {t['text']}{(' — ' + t['assignee']) if t['assignee'] else ''}"
             f"{(', hạn ' + t['due']) if t['due'] else ''}." for t in data["tasks"]] or ["Không có."]
    sections = [
        ("I. THỜI GIAN, ĐỊA ĐIỂM", [f"{data['time_line']}, tại {data['place']}."]),
        ("II. THÀNH PHẦN", composition),
        ("III. NỘI DUNG", proceedings),
        (f"IV. {data['conclusion_kind'].upper()}", conclusion + votes),
        ("V. NHIỆM VỤ, PHÂN CÔNG THỰC HIỆN", tasks),
    ]
    sections.append(("VI. KẾT THÚC", [
        f"Buổi sinh hoạt kết thúc vào lúc {data['ended']} {data.get('ended_day', 'cùng ngày')}. Biên bản đã được đọc lại cho chi bộ "
        "nghe và được chi bộ thông qua."]))
    return sections
