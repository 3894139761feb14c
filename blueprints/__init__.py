"""Blueprints, one per feature. Views stay thin: they load (with scope checks), call domain
functions from models/ or sync/, and render."""
from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    """Attach every feature blueprint to the app."""
    from . import accounts, auth, cells, meetings, members

    app.register_blueprint(auth.bp)
    app.register_blueprint(cells.bp)
    app.register_blueprint(meetings.bp)
    app.register_blueprint(members.bp)
    app.register_blueprint(accounts.bp)
    from .sync_api import bp as sync_api_bp  # the sync API and the top-level `flask sync` command
    app.register_blueprint(sync_api_bp)
    from . import checklists, rules  # rule sets and checklist templates (central writes)

    app.register_blueprint(rules.bp)
    app.register_blueprint(checklists.bp)
    app.register_blueprint(checklists.sheets_bp)
