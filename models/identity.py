"""Which node a database belongs to, decided once, before anything is written.

Design: the first start records the role and node id in `SyncState` (`node_role`, `node_id`); every
later start compares them with the configuration and refuses, with the command that fixes it, a
database made for another role or node. This stops a field machine that was first started with the
default (central) role from keeping reference data of its own that never converges with central's.
Clocks play no part here: a node never refuses to start because of its clock.
A database made before this record existed takes the configuration it is started with.
"""
from __future__ import annotations

from .base import SYNCED_MODELS, SyncState, db

ROLE_KEY = "node_role"
NODE_KEY = "node_id"

# Reference data central seeds; a database holding only these may be recreated without loss.
REFERENCE_TABLES = {"rule_set", "checklist_template", "template_version", "template_section", "template_item"}


class IdentityMismatch(RuntimeError):
    """The database was made for another role or node id than the configuration says."""

    def __init__(self, recorded: tuple[str, str], configured: tuple[str, str], where: str):
        """Build the Vietnamese message with both ways out."""
        (old_role, old_node), (role, node) = recorded, configured
        self.recorded, self.configured = recorded, configured
        super().__init__(
            f"Cơ sở dữ liệu {where} được tạo cho nút “{old_node}” (vai trò {old_role}), nhưng lần chạy này "
            f"được cấu hình là nút “{node}” (vai trò {role}). Không chạy tiếp để dữ liệu của hai nút không "
            f"bị trộn lẫn.\n"
            f"- Nếu cấu hình sai: đặt lại CHIBO_ROLE={old_role} CHIBO_NODE_ID={old_node} rồi chạy lại.\n"
            f"- Nếu máy này đúng là nút “{node}” và cơ sở dữ liệu chưa có dữ liệu cần giữ: chạy "
            f"`python app.py --reset-database` với cấu hình hiện tại để tạo lại cơ sở dữ liệu trống, "
            f"rồi chạy lại như bình thường (nút field nhận dữ liệu tham chiếu từ trung tâm khi đồng bộ).")


class DatabaseNotEmpty(RuntimeError):
    """A reset was asked for, but the database holds records beyond seeded reference data."""


def recorded_identity() -> tuple[str, str] | None:
    """The (role, node id) this database was made for, or None when it was never recorded."""
    role, node = SyncState.get_value(ROLE_KEY), SyncState.get_value(NODE_KEY)
    return (role, node) if role and node else None


def ensure_identity(role: str, node_id: str, where: str) -> None:
    """Record the identity at first start; raise IdentityMismatch when it differs from the configuration."""
    with db.atomic():
        recorded = recorded_identity()
        if recorded is None:
            SyncState.set_value(ROLE_KEY, role)
            SyncState.set_value(NODE_KEY, node_id)
            return
    if recorded != (role, node_id):
        raise IdentityMismatch(recorded, (role, node_id), where)


def records_to_keep() -> int:
    """How many rows the database holds beyond seeded reference data (what a reset would lose)."""
    count = 0
    for table, model in SYNCED_MODELS.items():
        if table in REFERENCE_TABLES or not model.table_exists():
            continue
        query = model.select()
        if table == "audit_entry":
            # The trail of the seeding itself is part of the reference data.
            query = query.where(model.table.not_in(sorted(REFERENCE_TABLES)))
        count += query.count()
    from .nodes import Node

    if Node.table_exists():
        count += Node.select().count()
    return count


def reset_database(models) -> None:
    """Drop every table of a database that holds nothing but reference data (caller recreates them)."""
    kept = records_to_keep()
    if kept:
        raise DatabaseNotEmpty(
            f"Cơ sở dữ liệu đã có {kept} bản ghi ngoài dữ liệu tham chiếu: không tự xoá. Hãy sao chép "
            "cơ sở dữ liệu này sang chỗ khác để giữ lại, rồi đặt CHIBO_DATABASE_URL tới một cơ sở dữ "
            "liệu mới (hoặc xoá tệp cũ sau khi đã sao chép).")
    with db.atomic():
        db.drop_tables(list(reversed(models)), safe=True)
