"""Checklist templates and their answers: score sheets and checklists as versioned data.

Design: a `ChecklistTemplate` (one sheet, e.g. the regular-meeting 100-point sheet) has numbered
`TemplateVersion`s; a version holds ordered `TemplateSection`s and `TemplateItem`s. Lifecycle:
draft → published → retired. A published version is immutable: local writes to it, its sections
or its items are refused in `save()` (not in `clean()`, because `clean()` also runs on records
received by sync, where a published version may arrive before its items). A new version starts as
a copy of the latest one. An `AnswerSet` points to the exact version it was made with and holds one
`Answer` per item, so old answers keep displaying and scoring after a new version is published.
Central owns templates (scope '*': they travel to every node); an answer set travels with its
meeting's cell. Scoring lives in models/scoring.py; seed content in models/checklist_seed.py.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid
from typing import Any

from peewee import BooleanField, CharField, DateTimeField, FloatField, ForeignKeyField, IntegerField, TextField

from .base import SyncedModel, ValidationError, db, local_today, register, utcnow
from .meetings import Meeting
from .org import Cell
from .rules import RuleSet

TEMPLATE_KINDS = {
    "chuan_bi": "Chuẩn bị sinh hoạt (chi ủy)",
    "thuong_ky": "Sinh hoạt thường kỳ",
    "chuyen_de": "Sinh hoạt chuyên đề",
    "giam_sat": "Giám sát tại buổi sinh hoạt",
    "kiem_tra": "Kiểm tra hằng năm",
}
VERSION_STATUSES = {"draft": "Bản nháp", "published": "Đã ban hành", "retired": "Ngừng sử dụng"}
ITEM_TYPES = {
    "yes_no": "Có/Không",
    "count": "Số lượng",
    "score": "Chấm điểm",
    "single_choice": "Chọn một",
    "multi_choice": "Chọn nhiều",
    "text": "Văn bản",
    "datetime": "Ngày giờ",
    "computed": "Tự tính",
}
# Items of these types carry no points: they record facts for the minutes.
UNSCORED_TYPES = ("text", "datetime")
COMPUTED_SOURCES = {
    "attendance_rate": "Tỷ lệ đảng viên dự (%)",
    "unexcused_count": "Số đảng viên vắng không lý do",
    "present_count": "Số đảng viên có mặt",
    "duration_minutes": "Thời lượng buổi sinh hoạt (phút)",
    "speakers": "Tỷ lệ đảng viên có mặt phát biểu (%)",
    "self_criticism_count": "Số ý kiến tự phê bình, phê bình",
    "on_schedule": "Sinh hoạt đúng ngày cố định hằng tháng",
}
ANSWER_ROLES = {"self": "Chi ủy, Bí thư chi bộ chấm", "supervisor": "Cấp ủy viên cấp trên chấm"}

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{1,59}$")
ITEM_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")


class ImmutableError(ValidationError):
    """A write to a published or retired version was refused."""


def _version_is_draft(version_id: str) -> bool:
    """True when the stored version is still a draft (the only state that may change)."""
    stored = TemplateVersion.get_or_none(TemplateVersion.id == version_id)
    return stored is None or stored.status == "draft"


@register
class ChecklistTemplate(SyncedModel):
    """One sheet (a kind of checklist or score sheet); its content lives in versions."""

    code = CharField(max_length=60, unique=True)
    name = CharField(max_length=200)
    kind = CharField(max_length=32)
    description = TextField(default="")

    class Meta:
        table_name = "checklist_template"

    @property
    def kind_label(self) -> str:
        """The kind in Vietnamese (a kind added later shows its code)."""
        return TEMPLATE_KINDS.get(self.kind, self.kind)

    def clean(self) -> None:
        """Code (lowercase letters, digits, - or _), name and kind required."""
        errors = {}
        if not SLUG.match(self.code or ""):
            errors["code"] = "Mã mẫu gồm chữ thường không dấu, số, gạch nối (2–60 ký tự)."
        if not (self.name or "").strip():
            errors["name"] = "Vui lòng nhập tên mẫu."
        if not SLUG.match(self.kind or ""):
            errors["kind"] = "Loại mẫu không hợp lệ."
        if errors:
            raise ValidationError(errors)


@register
class TemplateVersion(SyncedModel):
    """A numbered version of a template: draft, then published (immutable), then retired."""

    template = ForeignKeyField(ChecklistTemplate, backref="versions", on_delete="RESTRICT")
    number = IntegerField()
    status = CharField(max_length=12, default="draft")
    parent = ForeignKeyField("self", null=True, backref="children", on_delete="RESTRICT")
    total_points = FloatField(default=100)
    notes = TextField(default="")
    published_at = DateTimeField(null=True)
    retired_at = DateTimeField(null=True)

    class Meta:
        table_name = "template_version"
        indexes = ((("template", "number"), True),)

    @property
    def label(self) -> str:
        """'Tên mẫu — phiên bản N'."""
        return f"{self.template.name} — phiên bản {self.number}"

    def clean(self) -> None:
        """Known status; total points not negative."""
        errors = {}
        if self.status not in VERSION_STATUSES:
            errors["status"] = "Trạng thái phiên bản không hợp lệ."
        if not isinstance(self.total_points, (int, float)) or self.total_points < 0:
            errors["total_points"] = "Tổng điểm phải là số không âm."
        if errors:
            raise ValidationError(errors)

    def save(self, *args, **kwargs):
        """Refuse local edits of a published version, except retiring it."""
        if not self._is_new:
            stored = TemplateVersion.get_or_none(TemplateVersion.id == self.id)
            if stored is not None and stored.status != "draft":
                frozen = ("template_id", "number", "parent_id", "total_points", "notes", "published_at")
                changed = [f for f in frozen if getattr(stored, f) != getattr(self, f)]
                moves = (stored.status, self.status) in (("published", "published"), ("published", "retired"),
                                                        ("retired", "retired"))
                if changed or not moves or self.deleted_at:
                    raise ImmutableError({"version": "Phiên bản đã ban hành không được sửa; hãy tạo phiên bản mới."})
        return super().save(*args, **kwargs)


@register
class TemplateSection(SyncedModel):
    """A titled, ordered group of items in one version (e.g. 'I. Chuẩn bị')."""

    version = ForeignKeyField(TemplateVersion, backref="sections", on_delete="RESTRICT")
    position = IntegerField(default=0)
    title = CharField(max_length=300)
    description = TextField(default="")

    class Meta:
        table_name = "template_section"

    def clean(self) -> None:
        """A title is required."""
        if not (self.title or "").strip():
            raise ValidationError({"title": "Vui lòng nhập tên phần."})

    def save(self, *args, **kwargs):
        """Only a draft version's sections may change."""
        if not _version_is_draft(self.version_id):
            raise ImmutableError({"version": "Phiên bản đã ban hành không được sửa; hãy tạo phiên bản mới."})
        return super().save(*args, **kwargs)


@register
class TemplateItem(SyncedModel):
    """One criterion: its type, points, whether required or N/A-able, help text and source."""

    version = ForeignKeyField(TemplateVersion, backref="items", on_delete="RESTRICT")
    section = ForeignKeyField(TemplateSection, backref="items", on_delete="RESTRICT")
    position = IntegerField(default=0)
    code = CharField(max_length=40)
    text = TextField()
    type = CharField(max_length=20, default="yes_no")
    points = FloatField(default=0)
    required = BooleanField(default=False)
    allow_na = BooleanField(default=False)
    help_text = TextField(default="")
    source = CharField(max_length=200, default="")
    choices_json = TextField(default="[]")
    computed_source = CharField(max_length=40, default="")
    min_value = FloatField(null=True)

    class Meta:
        table_name = "template_item"

    @property
    def choices(self) -> list[dict[str, Any]]:
        """The choices: [{'value', 'label', 'points'}]."""
        try:
            value = json.loads(self.choices_json or "[]")
        except ValueError:
            return []
        return value if isinstance(value, list) else []

    @property
    def type_label(self) -> str:
        """The item type in Vietnamese."""
        return ITEM_TYPES.get(self.type, self.type)

    def clean(self) -> None:
        """Code, text and a known type; points fit the type; choices and computed source valid."""
        errors = {}
        if not ITEM_CODE.match(self.code or ""):
            errors["code"] = "Mã tiêu chí gồm chữ, số, dấu chấm, gạch nối (tối đa 40 ký tự), không dấu cách."
        if not (self.text or "").strip():
            errors["text"] = "Vui lòng nhập nội dung tiêu chí."
        if self.type not in ITEM_TYPES:
            errors["type"] = "Loại tiêu chí không hợp lệ."
        points = self.points
        if not isinstance(points, (int, float)) or isinstance(points, bool) or points < 0:
            errors["points"] = "Điểm phải là số không âm."
        elif self.type in UNSCORED_TYPES and points:
            errors["points"] = "Tiêu chí văn bản hoặc ngày giờ không có điểm."
        elif self.type == "score" and points <= 0:
            errors["points"] = "Tiêu chí chấm điểm cần điểm tối đa lớn hơn 0."
        try:
            choices = json.loads(self.choices_json or "[]")
            if not isinstance(choices, list):
                raise ValueError
        except ValueError:
            choices = []
            errors["choices"] = "Danh sách lựa chọn không hợp lệ."
        if self.type in ("single_choice", "multi_choice"):
            if len(choices) < 2:
                errors["choices"] = "Cần ít nhất 2 lựa chọn."
            elif any(not isinstance(c, dict) or not str(c.get("label", "")).strip() for c in choices):
                errors["choices"] = "Mỗi lựa chọn cần có nhãn."
            elif isinstance(points, (int, float)) and any(float(c.get("points") or 0) > points for c in choices):
                errors["choices"] = "Điểm của một lựa chọn không được vượt điểm tối đa của tiêu chí."
        if self.type == "computed" and self.computed_source not in COMPUTED_SOURCES:
            errors["computed_source"] = "Chọn nguồn dữ liệu tự tính."
        if errors:
            raise ValidationError(errors)

    def save(self, *args, **kwargs):
        """Only a draft version's items may change; a code is unique within its version."""
        if not _version_is_draft(self.version_id):
            raise ImmutableError({"version": "Phiên bản đã ban hành không được sửa; hãy tạo phiên bản mới."})
        if self.deleted_at is None:
            clash = TemplateItem.live().where(
                (TemplateItem.version == self.version_id) & (TemplateItem.code == self.code)
                & (TemplateItem.id != self.id)).exists()
            if clash:
                raise ValidationError({"code": f"Mã tiêu chí {self.code} đã có trong phiên bản này."})
        return super().save(*args, **kwargs)


@register
class AnswerSet(SyncedModel):
    """One filling-in of a sheet version, for a meeting, by the cell ('self') or a supervisor."""

    version = ForeignKeyField(TemplateVersion, backref="answer_sets", on_delete="RESTRICT")
    meeting = ForeignKeyField(Meeting, null=True, backref="answer_sets", on_delete="RESTRICT")
    role = CharField(max_length=20, default="self")
    answered_by = CharField(max_length=80, default="")
    note = TextField(default="")
    submitted_at = DateTimeField(null=True)

    class Meta:
        table_name = "answer_set"

    def sync_scope(self) -> str:
        """An answer set travels with its meeting's cell (or everywhere without a meeting)."""
        if self.meeting_id is None:
            return "*"
        return Cell.get_by_id(Meeting.get_by_id(self.meeting_id).cell_id).node_id

    def clean(self) -> None:
        """Known role."""
        if self.role not in ANSWER_ROLES:
            raise ValidationError({"role": "Vai trò chấm không hợp lệ."})


@register
class Answer(SyncedModel):
    """The answer to one item: a JSON value, or 'not applicable' (out of the maximum)."""

    answer_set = ForeignKeyField(AnswerSet, backref="answers", on_delete="RESTRICT")
    item = ForeignKeyField(TemplateItem, backref="answers", on_delete="RESTRICT")
    value_json = TextField(default="null")
    na = BooleanField(default=False)
    note = TextField(default="")

    class Meta:
        indexes = ((("answer_set", "item"), True),)

    @property
    def value(self) -> Any:
        """The decoded value."""
        return json.loads(self.value_json or "null")

    def sync_scope(self) -> str:
        """An answer travels with its answer set."""
        return AnswerSet.get_by_id(self.answer_set_id).sync_scope()


# -- reading a version -----------------------------------------------------------------------------

def version_tree(version: TemplateVersion) -> list[tuple[TemplateSection, list[TemplateItem]]]:
    """The version's live sections in order, each with its live items in order (two queries)."""
    sections = list(TemplateSection.live().where(TemplateSection.version == version.id)
                    .order_by(TemplateSection.position, TemplateSection.created_at))
    items = list(TemplateItem.live().where(TemplateItem.version == version.id)
                 .order_by(TemplateItem.position, TemplateItem.created_at))
    by_section: dict[str, list[TemplateItem]] = {s.id: [] for s in sections}
    for item in items:
        by_section.setdefault(item.section_id, []).append(item)
    return [(s, by_section[s.id]) for s in sections]


def version_items(version: TemplateVersion) -> list[TemplateItem]:
    """Every live item of the version in display order."""
    return [item for _section, items in version_tree(version) for item in items]


def latest_version(template: ChecklistTemplate) -> TemplateVersion | None:
    """The highest-numbered live version of a template (any status)."""
    return (TemplateVersion.live().where(TemplateVersion.template == template.id)
            .order_by(TemplateVersion.number.desc()).first())


def published_version(template: ChecklistTemplate) -> TemplateVersion | None:
    """The newest published version: the one a new answer set uses."""
    return (TemplateVersion.live().where((TemplateVersion.template == template.id)
                                         & (TemplateVersion.status == "published"))
            .order_by(TemplateVersion.number.desc()).first())


def published_for_kind(kind: str) -> TemplateVersion | None:
    """The newest published version of any template of `kind` (most recently published wins)."""
    return (TemplateVersion.live().join(ChecklistTemplate)
            .where((ChecklistTemplate.kind == kind) & (TemplateVersion.status == "published")
                   & ChecklistTemplate.deleted_at.is_null())
            .order_by(TemplateVersion.published_at.desc(), TemplateVersion.number.desc()).first())


# -- lifecycle -------------------------------------------------------------------------------------

def publish_errors(version: TemplateVersion) -> list[str]:
    """Why a version cannot be published (Vietnamese), or an empty list."""
    errors = []
    tree = version_tree(version)
    if not tree:
        errors.append("Phiên bản chưa có phần nào.")
    for section, items in tree:
        if not items:
            errors.append(f"Phần “{section.title}” chưa có tiêu chí nào.")
    seen: dict[str, int] = {}
    for _s, items in tree:
        for item in items:
            seen[item.code] = seen.get(item.code, 0) + 1
            try:
                item.clean()
            except ValidationError as exc:
                errors.append(f"Tiêu chí {item.code}: " + " ".join(exc.errors.values()))
    for code, count in seen.items():
        if count > 1:
            errors.append(f"Mã tiêu chí {code} bị trùng ({count} lần).")
    total = sum(item.points for _s, items in tree for item in items)
    if abs(total - version.total_points) > 1e-6:
        errors.append(f"Tổng điểm các tiêu chí là {_num(total)}, khác tổng điểm của phiếu ({_num(version.total_points)}).")
    return errors


def publish(version: TemplateVersion) -> TemplateVersion:
    """Publish a valid draft (it becomes immutable); raise ValidationError with the reasons."""
    if version.status != "draft":
        raise ValidationError({"version": "Chỉ ban hành được bản nháp."})
    problems = publish_errors(version)
    if problems:
        raise ValidationError({"publish": " ".join(problems)})
    version.status = "published"
    version.published_at = utcnow()
    version.save()
    return version


def retire(version: TemplateVersion) -> TemplateVersion:
    """Stop offering a published version for new answers (old answers keep it)."""
    if version.status != "published":
        raise ValidationError({"version": "Chỉ ngừng sử dụng được phiên bản đã ban hành."})
    version.status = "retired"
    version.retired_at = utcnow()
    version.save()
    return version


def new_draft(template: ChecklistTemplate, total_points: float = 100) -> TemplateVersion:
    """A new draft: a copy of the latest version when there is one, else an empty draft."""
    latest = latest_version(template)
    if latest is not None and latest.status == "draft":
        raise ValidationError({"version": f"Đã có bản nháp (phiên bản {latest.number}); hãy sửa bản nháp đó."})
    with db.atomic():
        draft = TemplateVersion.create(
            template=template.id, number=(latest.number + 1) if latest else 1, status="draft",
            parent=latest.id if latest else None,
            total_points=latest.total_points if latest else total_points,
            notes="")
        if latest is not None:
            for section, items in version_tree(latest):
                copy = TemplateSection.create(version=draft.id, position=section.position,
                                              title=section.title, description=section.description)
                for item in items:
                    TemplateItem.create(version=draft.id, section=copy.id, **item_fields(item))
    return draft


def item_fields(item: TemplateItem) -> dict[str, Any]:
    """The content fields of an item (what a copy or an export carries)."""
    return {name: getattr(item, name) for name in (
        "position", "code", "text", "type", "points", "required", "allow_na", "help_text", "source",
        "choices_json", "computed_source", "min_value")}


def renumber(rows: list) -> None:
    """Save positions 1..n for rows whose position is out of order (after a move or delete)."""
    for index, row in enumerate(rows, start=1):
        if row.position != index:
            row.position = index
            row.save()


def move(rows: list, row_id: str, step: int) -> None:
    """Move one row up (-1) or down (+1) among its siblings and renumber."""
    index = next(i for i, r in enumerate(rows) if r.id == row_id)
    target = index + step
    if 0 <= target < len(rows):
        rows[index], rows[target] = rows[target], rows[index]
    renumber(rows)


# -- answers ---------------------------------------------------------------------------------------

_ANSWER_SET_NS = uuid.UUID("5b0c3f0e-7d1a-4c52-9a57-3c1b2f6e8d41")


def answer_set_id_for(meeting_id: str, kind: str, role: str) -> str:
    """The id a meeting's answer set of this kind and role gets: the same wherever it is started.

    Known before the set exists, so opening a sheet (a GET) writes nothing: the page's taps carry
    this id and the first tap makes the set. Two tablets starting the same sheet make one set.
    """
    return str(uuid.uuid5(_ANSWER_SET_NS, f"{meeting_id}/{kind}/{role}"))


def pending_answer_set(meeting: Meeting, kind: str, role: str = "self") -> AnswerSet | None:
    """An unsaved answer set with the newest published version, for showing a sheet not started yet."""
    version = published_for_kind(kind)
    if version is None:
        return None
    return AnswerSet(id=answer_set_id_for(meeting.id, kind, role), version=version.id, meeting=meeting.id, role=role)


def answer_set_for(meeting: Meeting, kind: str, role: str = "self", by: str = "") -> AnswerSet | None:
    """The meeting's answer set for a sheet kind and role; made with the newest published version."""
    existing = (AnswerSet.live().join(TemplateVersion).join(ChecklistTemplate)
                .where((AnswerSet.meeting == meeting.id) & (AnswerSet.role == role)
                       & (ChecklistTemplate.kind == kind)).first())
    if existing is not None:
        return existing
    version = published_for_kind(kind)
    if version is None:
        return None
    record_id = answer_set_id_for(meeting.id, kind, role)
    if AnswerSet.get_or_none(AnswerSet.id == record_id) is not None:
        record_id = None  # a deleted earlier set holds the id: start a new one beside it
    return AnswerSet.create(**({"id": record_id} if record_id else {}), version=version.id, meeting=meeting.id,
                            role=role, answered_by=by)


def answers_by_code(answer_set: AnswerSet) -> dict[str, Answer]:
    """The set's live answers keyed by item code."""
    rows = (Answer.live().join(TemplateItem).where(Answer.answer_set == answer_set.id)
            .select(Answer, TemplateItem))
    return {row.item.code: row for row in rows}


def parse_answer(item: TemplateItem, raw: Any) -> Any:
    """Turn a submitted value into the stored form for the item's type; ValueError if it does not fit."""
    if raw is None or raw == "" or raw == []:
        return None
    kind = item.type
    if kind == "yes_no":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "co", "có", "yes"):
            return True
        if text in ("0", "false", "khong", "không", "no"):
            return False
        raise ValueError("Chọn Có hoặc Không.")
    if kind in ("count", "score", "computed"):
        if isinstance(raw, bool) and kind == "computed":
            return raw
        try:
            value = finite_number(raw)
        except ValueError:
            raise ValueError("Vui lòng nhập một số.") from None
        if value < 0:
            raise ValueError("Giá trị không được âm.")
        if kind == "count" and not value.is_integer():
            raise ValueError("Số lượng phải là số nguyên.")
        if kind == "score" and value > item.points:
            raise ValueError(f"Điểm tối đa là {_num(item.points)}.")
        return int(value) if value.is_integer() else value
    if kind == "single_choice":
        values = {str(c.get("value")) for c in item.choices}
        if str(raw) not in values:
            raise ValueError("Lựa chọn không hợp lệ.")
        return str(raw)
    if kind == "multi_choice":
        chosen = [str(v) for v in (raw if isinstance(raw, list) else [raw])]
        values = {str(c.get("value")) for c in item.choices}
        if any(v not in values for v in chosen):
            raise ValueError("Lựa chọn không hợp lệ.")
        return chosen
    if kind == "datetime":
        text = str(raw).strip()
        for parse in (dt.datetime.fromisoformat, lambda t: dt.datetime.strptime(t, "%d/%m/%Y %H:%M")):
            try:
                return parse(text).isoformat(timespec="minutes")
            except ValueError:
                continue
        raise ValueError("Ngày giờ không hợp lệ (dd/mm/yyyy HH:MM).")
    return str(raw).strip()


def set_answer(answer_set: AnswerSet, item: TemplateItem, raw: Any, na: bool = False, note: str = "") -> Answer:
    """Record one answer (or N/A); raise ValidationError in Vietnamese when it does not fit the item."""
    if item.version_id != answer_set.version_id:
        raise ValidationError({"item": "Tiêu chí không thuộc phiên bản của phiếu này."})
    if na and not item.allow_na:
        raise ValidationError({"item": f"Tiêu chí {item.code} không được đánh dấu “không áp dụng”."})
    try:
        value = None if na else parse_answer(item, raw)
    except ValueError as exc:  # parse_answer raises only Vietnamese messages
        raise ValidationError({"value": f"{item.code}: {exc}"}) from None
    row = Answer.get_or_none((Answer.answer_set == answer_set.id) & (Answer.item == item.id))
    if row is None:
        row = Answer(answer_set=answer_set.id, item=item.id)
    row.value_json = json.dumps(value, ensure_ascii=False)
    row.na = bool(na)
    row.note = note
    row.deleted_at = None
    row.save()
    return row


def rule_set_of(answer_set: AnswerSet) -> RuleSet | None:
    """The rule set an answer set is judged by: its meeting's pinned one, else the one in force today."""
    from .rules import rule_set_for

    if answer_set.meeting_id:
        meeting = Meeting.get_by_id(answer_set.meeting_id)
        if meeting.rule_set_id:
            return RuleSet.get_by_id(meeting.rule_set_id)
        return rule_set_for(meeting.held_on)
    return rule_set_for(local_today())


def _num(value: float) -> str:
    """85 rather than 85.0; a decimal comma otherwise."""
    return str(int(value)) if float(value).is_integer() else str(value).replace(".", ",")


# -- editor forms ----------------------------------------------------------------------------------

def choices_to_text(item: TemplateItem) -> str:
    """Choices as the editor shows them: one per line, 'Nhãn | điểm'."""
    lines = []
    for choice in item.choices:
        points = choice.get("points") or 0
        lines.append(f"{choice.get('label', '')} | {_num(float(points))}" if points else str(choice.get("label", "")))
    return "\n".join(lines)


def finite_number(raw: Any) -> float:
    """A typed number (decimal comma accepted); ValueError for text, nan, inf, 1e400 or beyond ±10^9.

    One published `inf` once made every cell's sheet fail to render: no such value gets stored.
    """
    try:
        value = float(str(raw).strip().replace(",", "."))
    except OverflowError:
        raise ValueError(raw) from None
    if not math.isfinite(value) or abs(value) > 1e9:
        raise ValueError(raw)
    return value


def parse_choices(text: str) -> list[dict[str, Any]]:
    """Parse 'Nhãn | điểm' lines into choices (value = line number); ValueError on a bad number."""
    choices = []
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        label, _sep, points = line.partition("|")
        value = finite_number(points) if points.strip() else 0
        choices.append({"value": str(len(choices) + 1), "label": label.strip(),
                        "points": int(value) if float(value).is_integer() else value})
    return choices


def item_form(item: TemplateItem | None) -> dict[str, str]:
    """The editor form's fields (text) for an item, or defaults for a new one."""
    if item is None:
        return {"code": "", "text": "", "type": "yes_no", "points": "0", "required": "", "allow_na": "",
                "help_text": "", "source": "", "choices": "", "computed_source": "", "min_value": ""}
    return {"code": item.code, "text": item.text, "type": item.type, "points": _num(item.points),
            "required": "1" if item.required else "", "allow_na": "1" if item.allow_na else "",
            "help_text": item.help_text, "source": item.source, "choices": choices_to_text(item),
            "computed_source": item.computed_source,
            "min_value": "" if item.min_value is None else _num(item.min_value)}


def apply_item_form(item: TemplateItem, form: dict[str, str]) -> dict[str, str]:
    """Copy the editor form onto an item and save it; return errors by field (nothing saved then)."""
    errors: dict[str, str] = {}
    item.code = (form.get("code") or "").strip()
    item.text = (form.get("text") or "").strip()
    item.type = form.get("type") or ""
    item.required = bool(form.get("required"))
    item.allow_na = bool(form.get("allow_na"))
    item.help_text = (form.get("help_text") or "").strip()
    item.source = (form.get("source") or "").strip()[:200]
    item.computed_source = (form.get("computed_source") or "").strip() if item.type == "computed" else ""
    try:
        item.points = finite_number(form.get("points") or "0")
    except ValueError:
        errors["points"] = "Điểm phải là một số (ví dụ 5 hoặc 2,5)."
        item.points = 0
    try:
        text = (form.get("min_value") or "").strip()
        item.min_value = finite_number(text) if text else None
    except ValueError:
        errors["min_value"] = "Giá trị tối thiểu phải là một số."
    try:
        choices = parse_choices(form.get("choices", "")) if item.type in ("single_choice", "multi_choice") else []
        item.choices_json = json.dumps(choices, ensure_ascii=False)
    except ValueError:
        errors["choices"] = "Mỗi dòng lựa chọn có dạng “Nhãn | điểm”, điểm là một số."
    if errors:
        return errors
    try:
        item.save()
    except ValidationError as exc:
        return exc.errors
    return {}
