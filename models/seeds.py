"""Reference data every central node starts with: the national rule sets and the seeded sheets.

Both use fixed ids, so seeding is idempotent and every node agrees on them; field nodes never seed
(they receive these records from central on their first sync).
"""
from __future__ import annotations

from .checklist_seed import seed_checklists
from .rules import seed_rule_sets


def seed_reference_data() -> tuple[int, int]:
    """Create the missing rule sets and checklist templates; return how many of each were made."""
    return seed_rule_sets(), seed_checklists()
