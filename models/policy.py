"""The write policy of field nodes: what a node may create, change and delete, table by table.

Design: a field node holds a valid token, so central must not take its word for anything beyond the
records it is the single writer of. `POLICIES` says, per synced table, as data: may a node create,
update, delete (tombstone) records of it at all; which columns it may change on a record it holds;
and which invariants across records must hold (small functions over the database, each naming the
columns it guards). Everything not granted is refused ("default deny"): a table without an entry,
a column not listed, owner/id/created_at on an update, an owner other than the node on a create.
The scope rule (a node writes only records whose scope is its id, before and after) is checked
beside this by the sync engine and by `SyncedModel.save()`; the policy narrows it further.

The same rules run in two places:
- at central on every pushed change: `check_remote_change()` raises `PolicyViolation` (a
  ValueError with a short Vietnamese message that never echoes a long value);
- on a field node before anything is queued: `check_local_write()` (called from
  `SyncedModel.save()`) raises `ValidationError`, so an honest node never queues what central
  would refuse.
Models never import sync; this module imports only models.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

from peewee import DoesNotExist, ForeignKeyField

from .audit import ACTIONS, FIELD_LABELS
from .base import SYNCED_MODELS, SyncedModel, ValidationError
from .checklists import Answer, AnswerSet, TemplateItem, TemplateVersion
from .meetings import Meeting
from .members import CELL_COMMITTEE, Member
from .org import CENTRAL_NODE
from .rowcache import lookup, lookup_row
from .users import User

MAX_MESSAGE = 300
# Columns every write moves (clock stamp, modification time): never a policy question.
BOOKKEEPING = frozenset({"updated_at", "hlc"})
# Columns no node ever changes on an existing record: identity and provenance.
FIXED = frozenset({"id", "owner", "created_at"})
# Account roles a field node may ever write: the people of the cells it holds.
NODE_ACCOUNT_ROLES = ("secretary", "member")


class PolicyViolation(ValueError):
    """A change a field node may not make; the message is Vietnamese and short."""

    def __init__(self, message: str, table: str = "", column: str = ""):
        super().__init__(_clip(message, MAX_MESSAGE))
        self.table = table
        self.column = column


class Change(NamedTuple):
    """One change as the policy sees it: rows as {column: value}, before (None for a create) and after.

    A named tuple (read-only like the frozen dataclass it was, and cheaper to make: one per synced change)."""

    node_id: str
    model: type[SyncedModel]
    before: dict[str, Any] | None
    after: dict[str, Any]
    changed: frozenset[str]

    @property
    def is_create(self) -> bool:
        """True when the record did not exist before."""
        return self.before is None


@dataclass(frozen=True)
class Invariant:
    """A rule across records, checked when the record is created or one of `columns` changes."""

    columns: frozenset[str]
    check: Callable[[Change], str | None]  # a Vietnamese reason when broken, else None
    always: bool = False  # check on every write, whatever changed


@dataclass(frozen=True)
class TablePolicy:
    """What a field node may do to one synced table."""

    label: str
    create: bool = False
    update: frozenset[str] = frozenset()
    delete: bool = False
    invariants: tuple[Invariant, ...] = field(default_factory=tuple)


# -- invariants ------------------------------------------------------------------------------------

def _member_cell(member_id: Any) -> str | None:
    """The cell of a member (tombstones included), or None when central has no such member."""
    return lookup(Member, member_id, "cell") if member_id else None


def _mark_member_in_meeting_cell(c: Change) -> str | None:
    """A roll-call mark names a member of the meeting's own cell."""
    meeting_cell = lookup(Meeting, c.after.get("meeting_id"), "cell")
    member_cell = _member_cell(c.after.get("member_id"))
    if meeting_cell is None or member_cell is None or member_cell != meeting_cell:
        return "đảng viên được điểm danh không thuộc chi bộ của buổi sinh hoạt"
    return None


def _member_in_meeting_cell(column: str, what: str) -> Callable[[Change], str | None]:
    """An invariant: the member named in `column` (when set) belongs to the meeting's cell."""
    def check(c: Change) -> str | None:
        member_id = c.after.get(column)
        if member_id is None:
            return None
        # The meeting row itself names its cell; its records name their meeting.
        meeting_cell = (c.after.get("cell_id") if c.model is Meeting else
                        lookup(Meeting, c.after.get("meeting_id"), "cell"))
        if meeting_cell is None or _member_cell(member_id) != meeting_cell:
            return f"{what} không thuộc chi bộ của buổi sinh hoạt"
        return None
    check.__doc__ = f"The {column} of a meeting record is a member of the meeting's cell."
    return check


def _account_role_is_cell_level(c: Change) -> str | None:
    """A node writes only the accounts of its cells' people, never an admin's or a supervisor's."""
    if c.after.get("role") not in NODE_ACCOUNT_ROLES:
        return "nút chỉ được ghi tài khoản bí thư hoặc đảng viên của chi bộ mình; tài khoản quản trị và " \
               "ủy viên Ban Thường vụ chỉ do trung tâm quản lý"
    return None


def _account_member_in_own_cell(c: Change) -> str | None:
    """An account's member record is in the account's cell."""
    member_id = c.after.get("member_id")
    if member_id and _member_cell(member_id) != c.after.get("cell_id"):
        return "tài khoản chỉ được gắn với đảng viên thuộc chi bộ của chính tài khoản đó"
    return None


def _password_is_argon2(c: Change) -> str | None:
    """A stored password is an argon2id hash (never plain text or a weaker hash)."""
    value = c.after.get("password_hash") or ""
    if not (isinstance(value, str) and value.startswith("$argon2id$") and len(value) <= 255):
        return "mật khẩu phải được lưu dưới dạng mã băm argon2id"
    return None


def _audit_node_is_pusher(c: Change) -> str | None:
    """An audit entry names the pushing node as where the change was made, and its scope."""
    if c.after.get("node") != c.node_id:
        return f"nhật ký thay đổi phải ghi đúng nút đã thực hiện ({c.node_id})"
    if c.after.get("scope") != c.node_id:
        return f"nhật ký thay đổi phải thuộc phạm vi của nút {c.node_id}"
    if c.after.get("action") not in ACTIONS:
        return "loại thao tác trong nhật ký không hợp lệ"
    return None


def _audit_describes_record_in_scope(c: Change) -> str | None:
    """An audit entry describes a synced record the pushing node holds."""
    table = c.after.get("table")
    model = SYNCED_MODELS.get(table)
    if model is None or table == "audit_entry":
        return "nhật ký thay đổi phải mô tả một bản ghi của bảng đồng bộ"
    record = _instance(model, lookup_row(model, c.after.get("record_id")))
    # A record created in the same push arrives after its audit entry: its own change is checked then.
    if record is not None and _scope_of(record) != c.node_id:
        return "nhật ký thay đổi mô tả một bản ghi ngoài phạm vi của nút"
    return None


def _audit_actor_known_here(c: Change) -> str | None:
    """The person in an audit entry is an account that can work at the pushing node."""
    user_id = c.after.get("user_id")
    if not user_id:
        return None
    user = _instance(User, lookup_row(User, user_id))
    if user is None or _scope_of(user) not in (c.node_id, "*"):
        return "người thực hiện trong nhật ký không phải tài khoản làm việc được tại nút này"
    return None


def _position_is_cell_level(c: Change) -> str | None:
    """A node records cell-committee terms only."""
    if c.after.get("kind") not in CELL_COMMITTEE:
        return "nút chỉ được ghi chức vụ trong chi ủy (bí thư, phó bí thư, chi ủy viên); chức vụ cấp ủy " \
               "cấp trên do trung tâm ghi"
    return None


def _answer_set_version_in_use(c: Change) -> str | None:
    """A sheet is filled with a published (or since retired) version, never a draft."""
    status = lookup(TemplateVersion, c.after.get("version_id"), "status")
    if status is None or status == "draft":
        return "phiếu chấm phải dùng một phiên bản mẫu phiếu đã ban hành"
    return None


def _answer_item_in_set_version(c: Change) -> str | None:
    """An answer is for an item of its sheet's version."""
    set_version = lookup(AnswerSet, c.after.get("answer_set_id"), "version")
    item_version = lookup(TemplateItem, c.after.get("item_id"), "version")
    if set_version is None or set_version != item_version:
        return "câu trả lời phải thuộc một tiêu chí của đúng phiên bản phiếu"
    return None


def _cols(*names: str) -> frozenset[str]:
    """A set of column names."""
    return frozenset(names)


# -- the policy, per table -------------------------------------------------------------------------

_CENTRAL_ONLY = dict(create=False, update=frozenset(), delete=False)

POLICIES: dict[str, TablePolicy] = {
    # Central owns the organisation tree, rule sets and checklist templates: nodes only receive them.
    "organisation": TablePolicy("tổ chức đảng", **_CENTRAL_ONLY),
    "cell": TablePolicy("chi bộ", **_CENTRAL_ONLY),
    "rule_set": TablePolicy("bộ quy tắc", **_CENTRAL_ONLY),
    "checklist_template": TablePolicy("mẫu phiếu", **_CENTRAL_ONLY),
    "template_version": TablePolicy("phiên bản mẫu phiếu", **_CENTRAL_ONLY),
    "template_section": TablePolicy("phần của mẫu phiếu", **_CENTRAL_ONLY),
    "template_item": TablePolicy("tiêu chí của mẫu phiếu", **_CENTRAL_ONLY),
    # The cell's roster: the holder adds and edits its members; a move stays among its own cells
    # (the scope check before and after guarantees that). Members leave by status, never by delete.
    "member": TablePolicy(
        "đảng viên", create=True, delete=False,
        update=_cols("cell_id", "full_name", "birth_year", "gender", "admitted_on", "full_member_on",
                     "card_number", "status", "status_note", "position")),
    # Status changes are events: written once, never edited or removed at a node.
    "member_status_change": TablePolicy("thay đổi trạng thái đảng viên", create=True),
    # Terms of the cell committee (a roster import opens them; a new secretary ends the old term).
    "position": TablePolicy(
        "chức vụ", create=True, update=_cols("end_on", "note"),
        invariants=(Invariant(_cols("kind"), _position_is_cell_level, always=True),)),
    # A meeting entered by mistake may be deleted by its cell's node (its roll call goes with it).
    "meeting": TablePolicy(
        "buổi sinh hoạt", create=True, delete=True,
        update=_cols("kind", "held_on", "starts_at", "ends_at", "title", "status", "is_model", "rule_set_id",
                     "place", "started_at", "ended_at", "chair_id", "secretary_id", "conclusion_kind",
                     "conclusion", "moved_from", "move_reason", "lessons"),
        invariants=(Invariant(_cols("chair_id"), _member_in_meeting_cell("chair_id", "chủ trì")),
                    Invariant(_cols("secretary_id"), _member_in_meeting_cell("secretary_id", "thư ký")))),
    # What was said, voted, decided and assigned at a meeting: written by the cell's node.
    "contribution": TablePolicy(
        "phát biểu", create=True, delete=True, update=_cols("kind", "summary"),
        invariants=(Invariant(_cols("meeting_id", "member_id"),
                              _member_in_meeting_cell("member_id", "người phát biểu")),)),
    "meeting_guest": TablePolicy("khách mời", create=True, delete=True, update=_cols("kind", "name", "position")),
    "vote": TablePolicy("biểu quyết", create=True, delete=True,
                        update=_cols("subject", "in_favour", "against", "abstain", "eligible")),
    "task": TablePolicy(
        "nhiệm vụ", create=True, delete=True, update=_cols("text", "assignee_id", "due_on", "carried_from_id"),
        invariants=(Invariant(_cols("meeting_id", "assignee_id"),
                              _member_in_meeting_cell("assignee_id", "người được giao")),)),
    "task_review": TablePolicy("đánh giá nhiệm vụ", create=True, delete=True, update=_cols("outcome", "note")),
    # The minutes and their revisions (a change after signing is a new revision with a reason).
    "minutes_revision": TablePolicy(
        "biên bản", create=True,
        update=_cols("number", "reason", "read_back_at", "approved_at", "chair_signed_at", "secretary_signed_at",
                     "signed_at", "snapshot_json")),
    # The Party committee's monthly orientation is written at central.
    "orientation": TablePolicy("định hướng nội dung", **_CENTRAL_ONLY),
    "attendance": TablePolicy(
        "điểm danh", create=True, delete=True, update=_cols("status", "reason", "arrived_late", "left_early"),
        invariants=(Invariant(_cols("meeting_id", "member_id"), _mark_member_in_meeting_cell),)),
    "answer_set": TablePolicy(
        "phiếu chấm", create=True, update=_cols("answered_by", "note", "submitted_at"),
        invariants=(Invariant(_cols("version_id"), _answer_set_version_in_use),)),
    "answer": TablePolicy(
        "câu trả lời phiếu chấm", create=True, delete=True, update=_cols("value_json", "na", "note"),
        invariants=(Invariant(_cols("answer_set_id", "item_id"), _answer_item_in_set_version),)),
    # The history is written where the change was made, once; it describes the node's own records.
    "audit_entry": TablePolicy(
        "lịch sử thay đổi", create=True,
        invariants=(Invariant(frozenset(), _audit_node_is_pusher, always=True),
                    Invariant(frozenset(), _audit_describes_record_in_scope, always=True),
                    Invariant(frozenset(), _audit_actor_known_here, always=True))),
    # Accounts are made, named, given roles, cells, members and locked at central only. A node may
    # store a new password hash for an account it holds (own password change, rehash at login).
    "app_user": TablePolicy(
        "tài khoản", create=False, update=_cols("password_hash"),
        invariants=(Invariant(frozenset(), _account_role_is_cell_level, always=True),
                    Invariant(_cols("member_id", "cell_id"), _account_member_in_own_cell),
                    Invariant(_cols("password_hash"), _password_is_argon2))),
    # Supervision (issue 11). The rotation plan, annual inspections and the model-meeting programme
    # are the Party committee's: written at central, received everywhere.
    "supervision_assignment": TablePolicy("phân công giám sát", **_CENTRAL_ONLY),
    "annual_inspection": TablePolicy("kiểm tra hằng năm", **_CENTRAL_ONLY),
    "model_meeting": TablePolicy("sinh hoạt chi bộ mẫu", **_CENTRAL_ONLY),
    "model_meeting_observer": TablePolicy("chi bộ dự quan sát sinh hoạt mẫu", **_CENTRAL_ONLY),
    # The supervisor's on-site record is written on the node holding the meeting (the person is
    # checked by the views: only a supervisor account writes it) and is never removed there.
    "supervision_visit": TablePolicy(
        "biên bản giám sát", create=True,
        update=_cols("answer_set_id", "verified_present", "attendance_note", "score", "strengths", "weaknesses",
                     "remarks", "confirmed_at")),
    "supervision_recommendation": TablePolicy("kiến nghị sau giám sát", create=True, update=_cols("text", "deadline")),
    # Follow-up moves are events: written once by the cell or the supervisor, never edited or removed.
    "recommendation_event": TablePolicy("tiến độ khắc phục kiến nghị", create=True),
}


# -- the checks ------------------------------------------------------------------------------------

def check_remote_change(node_id: str, model: type[SyncedModel], current: SyncedModel | dict | None,
                        merged: SyncedModel, changed_columns: set[str]) -> None:
    """Central: refuse (PolicyViolation) a change pushed by `node_id` that its policy does not allow."""
    before = row_of(model, current) if current is not None else None
    _check(Change(node_id, model, before, row_of(model, merged), frozenset(changed_columns)))


def check_local_write(instance: SyncedModel, old: dict[str, Any] | None, node_id: str) -> None:
    """Field node: refuse (ValidationError) a write central would refuse, before it is queued."""
    model = type(instance)
    before = row_of(model, old) if old is not None else None
    after = row_of(model, instance)
    if before is None and not after.get("owner"):
        after["owner"] = node_id  # save() fills the owner of a new record with this node's id
    try:
        _check(Change(node_id, model, before, after, frozenset(changed_columns(model, before, after))))
    except PolicyViolation as exc:
        raise ValidationError({exc.column or "policy": f"Trung tâm sẽ từ chối thay đổi này. {exc}"}) from None


def changed_columns(model: type[SyncedModel], current: Any, merged: Any) -> set[str]:
    """Column names whose value differs between `current` (None: a create, every column) and `merged`."""
    after = row_of(model, merged)
    if current is None:
        return set(after)
    before = row_of(model, current)
    return {col for col in after if _plain(after[col]) != _plain(before.get(col))}


def row_of(model: type[SyncedModel], record: Any) -> dict[str, Any]:
    """A record (model instance, or a dict keyed by field or column name) as {column: value}."""
    if isinstance(record, SyncedModel):
        data = record.__data__
    else:
        data = record if isinstance(record, dict) else dict(record)  # only read: no copy of a dict
    out = {}
    for name, column, key in _names_and_columns(model):
        value = data[name] if name in data else data.get(column)
        # Only a foreign key may hold a model instance.
        out[column] = value.id if key and isinstance(value, SyncedModel) else value
    return out


_NAMES: dict[type, tuple] = {}


def _names_and_columns(model: type[SyncedModel]) -> tuple[tuple[str, str, bool], ...]:
    """(field name, column name, is a foreign key) of every field of the model, in order (worked out once)."""
    fields = model._meta.sorted_fields
    known = _NAMES.get(model)
    if known is None or known[0] is not fields:
        known = _NAMES[model] = (fields, tuple((f.name, f.column_name, isinstance(f, ForeignKeyField))
                                               for f in fields))
    return known[1]


def _check(c: Change) -> None:
    """Raise PolicyViolation when the change is not granted by its table's policy."""
    table = c.model._meta.table_name
    policy = POLICIES.get(table)
    where = f"Nút {c.node_id}"
    if policy is None:
        raise PolicyViolation(f"{where} không được ghi bảng {table}: bảng chưa có chính sách ghi.", table)
    what = f"{policy.label} ({table})"
    deleting = "deleted_at" in c.changed and (c.before is not None or c.after.get("deleted_at") is not None)
    if c.is_create:
        if not policy.create:
            raise PolicyViolation(f"{where} không được tạo {what}: chỉ trung tâm tạo được.", table)
        if c.after.get("owner") != c.node_id:
            raise PolicyViolation(f"{where} không được tạo {what} mang chủ sở hữu "
                                  f"“{_clip(str(c.after.get('owner')), 32)}”: bản ghi do nút tạo thuộc về nút đó.",
                                  table, "owner")
    else:
        for column in sorted(c.changed - BOOKKEEPING - {"deleted_at"}):
            if column in FIXED or column not in policy.update:
                label = _column_label(c.model, column)
                message = (f"{where} không được sửa {label} của {what}." if policy.update
                           else f"{where} không được sửa {what} ({label}): chỉ trung tâm sửa được.")
                raise PolicyViolation(message, table, _field_name(c.model, column))
    if deleting and not policy.delete:
        action = "khôi phục" if c.after.get("deleted_at") is None else "xóa"
        raise PolicyViolation(f"{where} không được {action} {what}.", table, "deleted_at")
    for invariant in policy.invariants:
        if invariant.always or c.is_create or (c.changed & invariant.columns):
            reason = invariant.check(c)
            if reason:
                raise PolicyViolation(f"{where} không được ghi {what}: {reason}.", table)


def _instance(model: type[SyncedModel], row: dict[str, Any] | None) -> SyncedModel | None:
    """A model instance from a looked-up row (None stays None)."""
    if row is None:
        return None
    record = model(__no_default__=True)
    record.__data__.update(row)
    record._is_new = False
    return record


def _scope_of(record: SyncedModel) -> str:
    """A record's scope; a record whose parent is missing counts as outside every node."""
    try:
        return record.sync_scope()
    except (ValidationError, DoesNotExist):
        return CENTRAL_NODE


def _field_name(model: type[SyncedModel], column: str) -> str:
    """The field name behind a column name."""
    for f in model._meta.sorted_fields:
        if f.column_name == column:
            return f.name
    return column


def _column_label(model: type[SyncedModel], column: str) -> str:
    """A column as a person reads it: its Vietnamese label and its name."""
    name = _field_name(model, column)
    label = FIELD_LABELS.get(name)
    return f"trường {label} ({column})" if label else f"trường {column}"


def _plain(value: Any) -> Any:
    """A value in a form that compares equal across storage and the wire."""
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return value


def _clip(text: str, limit: int) -> str:
    """At most `limit` characters, marked with an ellipsis when cut."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
