"""Blueprints, one per feature. Views stay thin: they load (with scope checks), call domain
functions from models/ or sync/, and render."""
from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    """Attach every feature blueprint to the app."""
    from . import accounts, auth, cells, checklists, meetings, members, reports, rules, supervision, sync_api

    for blueprint in (
        auth.bp, cells.bp, meetings.bp, members.bp, accounts.bp,
        sync_api.bp,  # the sync API (Bearer token, no cookies, CSRF-exempt) and `flask sync`
        sync_api.status_bp,  # the sync screens (ordinary login and CSRF)
        rules.bp, checklists.bp, checklists.sheets_bp,
        supervision.bp,
        reports.bp,
    ):
        app.register_blueprint(blueprint)
