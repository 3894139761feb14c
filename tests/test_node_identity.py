"""A node's role is decided before anything is written, and reference data comes from one origin.

A database remembers the role and node id it was made for; started with another, the app refuses
with a Vietnamese message that says how to fix it, and `python app.py --reset-database` recreates a
database that holds nothing but seeded reference data. Field nodes never seed; central's seeded
records get the same ids wherever and whenever they are made.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import create_app
from models import ChecklistTemplate, Organisation, RuleSet, SyncState, db
from models.checklists import TemplateItem, TemplateSection, TemplateVersion
from models.identity import IdentityMismatch
from models.seeds import seed_reference_data

ROOT = Path(__file__).resolve().parent.parent
# These tests make their own SQLite databases; one SQLite pass covers them.
pytestmark = pytest.mark.sqlite_only


def make(tmp_path: Path, role: str = "central", node_id: str = "central", name: str = "node.sqlite3", **extra):
    """An app on a SQLite file in tmp_path, seeding as it would in production."""
    return create_app({"TESTING": True, "SECRET_KEY": "test", "ROLE": role, "NODE_ID": node_id,
                       "DATABASE_URL": f"sqlite:///{tmp_path / name}", **extra})


def count(model) -> int:
    """Rows of a table in the currently bound database."""
    with db.connection_context():
        return model.select().count()


def test_a_database_first_started_as_central_refuses_to_start_as_a_field_node(tmp_path):
    """The default role seeded it; started as doi-1 it stops with both names and the fixing command."""
    make(tmp_path)
    assert count(RuleSet) == 2
    with pytest.raises(IdentityMismatch) as refused:
        make(tmp_path, role="field", node_id="doi-1")
    message = str(refused.value)
    assert "“central” (vai trò central)" in message and "“doi-1” (vai trò field)" in message
    assert "python app.py --reset-database" in message and "CHIBO_ROLE=central" in message
    # Started again as what it was made for, it runs as before.
    make(tmp_path)
    with db.connection_context():
        assert SyncState.get_value("node_role") == "central" and SyncState.get_value("node_id") == "central"


def test_a_field_node_database_refuses_another_node_id_and_never_seeds(tmp_path):
    """A field database made for doi-1 holds no reference data of its own and refuses to become doi-2."""
    make(tmp_path, role="field", node_id="doi-1")
    assert count(RuleSet) == 0 and count(ChecklistTemplate) == 0
    with pytest.raises(IdentityMismatch, match="doi-2"):
        make(tmp_path, role="field", node_id="doi-2")
    make(tmp_path, role="field", node_id="doi-1")


def field_env(tmp_path: Path, node_id: str = "doi-1") -> dict[str, str]:
    """The environment `python app.py` reads for a field node on tmp_path's database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHIBO_") or k == "CHIBO_TEST_FAST_HASH"}
    env.update({"CHIBO_ROLE": "field", "CHIBO_NODE_ID": node_id, "CHIBO_SECRET_KEY": "khoa",
                "CHIBO_DATABASE_URL": f"sqlite:///{tmp_path / 'node.sqlite3'}", "CHIBO_SYNC_INTERVAL": "0"})
    return env


def app_py(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """Run `python app.py …` as an operator would (bounded)."""
    return subprocess.run([sys.executable, "app.py", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def test_reset_database_recreates_a_database_that_holds_only_reference_data(tmp_path):
    """The operator's way out: the seeded central copy is dropped; the node starts empty as doi-1."""
    make(tmp_path)
    refused = app_py(field_env(tmp_path), "--reset-database")
    assert refused.returncode == 0, refused.stderr
    assert "sẵn sàng cho nút doi-1" in refused.stdout
    make(tmp_path, role="field", node_id="doi-1")
    assert count(RuleSet) == 0 and count(ChecklistTemplate) == 0


def test_reset_database_keeps_a_database_with_real_records(tmp_path):
    """A database with an organisation in it is never dropped; the message says how to keep it."""
    app = make(tmp_path)
    with app.app_context(), db.connection_context():
        Organisation.create(name="Đảng bộ Có Dữ Liệu")
    result = app_py(field_env(tmp_path), "--reset-database")
    assert result.returncode != 0
    assert "không tự xoá" in result.stderr and "Traceback" not in result.stderr
    make(tmp_path)
    assert count(Organisation) == 1


def test_starting_with_the_wrong_role_answers_a_message_not_a_traceback(tmp_path):
    """`python app.py` on a central database configured as a field node exits with the message."""
    make(tmp_path)
    result = app_py(field_env(tmp_path))
    assert result.returncode != 0
    assert "Không khởi động được" in result.stderr and "--reset-database" in result.stderr
    assert "Traceback" not in result.stderr


def test_seeded_reference_data_has_the_same_ids_wherever_it_is_made(tmp_path):
    """Two centrals seeding independently make the very same rule sets and sheets, id for id."""
    def ids(name: str) -> dict[str, set[str]]:
        app = make(tmp_path, name=name, SEED_REFERENCE_DATA=False)
        with app.app_context(), db.connection_context():
            seed_reference_data()
            return {m.__name__: {r.id for r in m.select(m.id)}
                    for m in (RuleSet, ChecklistTemplate, TemplateVersion, TemplateSection, TemplateItem)}

    first, second = ids("a.sqlite3"), ids("b.sqlite3")
    assert first == second
    assert len(first["RuleSet"]) == 2 and len(first["ChecklistTemplate"]) == 5 and len(first["TemplateItem"]) > 50
