"""Rule sets at central: list them, read their parameters in Vietnamese, add a committee's own set.

Rule sets are not edited in place: meetings keep the id of the set they were judged under, so a
change of thresholds is a new set with its own effective dates (copied from an existing one).
Everyone may read; only an admin at central may add. Parsing and validation live in models/rules.py.
"""
from __future__ import annotations

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from flask_login import login_required
from peewee import fn

from models import Meeting, Organisation, RuleSet, ValidationError
from models.rules import ANNUAL_LEVELS, BAND_CODES, BAND_LABELS, PARAM_SPECS, form_from_rule_set, rule_set_from_form

from .access import role_required
from .web import htmx

bp = Blueprint("rules", __name__, url_prefix="/rules")


def get_rule_set_or_404(rule_set_id: str) -> RuleSet:
    """Load a live rule set (rule sets are readable by every signed-in user)."""
    rules = RuleSet.get_or_none((RuleSet.id == rule_set_id) & RuleSet.deleted_at.is_null())
    if rules is None:
        abort(404)
    return rules


def central_only() -> None:
    """Rule sets are written only at central (field nodes receive them by sync)."""
    if current_app.config["ROLE"] != "central":
        abort(403, "Bộ quy tắc chỉ được thêm tại trung tâm; nút này nhận qua đồng bộ.")


@bp.route("/")
@login_required
def rule_set_index():
    """Every rule set with its dates, its committee and how many meetings were judged under it."""
    rule_sets = list(RuleSet.live().order_by(RuleSet.effective_from.desc()))
    used = dict(Meeting.live().select(Meeting.rule_set, fn.COUNT(Meeting.id))
                .where(Meeting.rule_set.is_null(False)).group_by(Meeting.rule_set).tuples())
    orgs = {o.id: o for o in Organisation.live()}
    return render_template("rules/index.html", rule_sets=rule_sets, used=used, orgs=orgs)


@bp.route("/<rule_set_id>")
@login_required
def rule_set_view(rule_set_id: str):
    """One rule set's parameters with their Vietnamese labels."""
    rules = get_rule_set_or_404(rule_set_id)
    org = Organisation.get_or_none(Organisation.id == rules.organisation_id) if rules.organisation_id else None
    return render_template("rules/view.html", rules=rules, params=rules.params, specs=PARAM_SPECS,
                           annual_levels=ANNUAL_LEVELS, org=org)


@bp.route("/new", methods=("GET", "POST"))
@role_required("admin")
def rule_set_new():
    """Add a rule set (a committee's own score sheet thresholds), starting from a copy of another."""
    central_only()
    if request.method == "POST":
        form = {key: request.form.get(key, "") for key in request.form}
        rules, errors = rule_set_from_form(form)
        if rules is not None:
            try:
                rules.save()
                target = url_for("rules.rule_set_view", rule_set_id=rules.id)
                # htmx follows a 303 and would draw the next page inside the form: navigate instead.
                return ("", 204, {"HX-Redirect": target}) if htmx else redirect(target, 303)
            except ValidationError as exc:
                errors = exc.errors
    else:
        base = RuleSet.get_or_none(RuleSet.id == request.args.get("based_on")) if request.args.get("based_on") else None
        base = base or RuleSet.live().order_by(RuleSet.effective_from.desc()).first()
        form, errors = form_from_rule_set(base), {}
    template = "rules/_form.html" if htmx and request.method == "POST" else "rules/new.html"
    context = dict(form=form, errors=errors, specs=PARAM_SPECS, band_codes=BAND_CODES, band_labels=BAND_LABELS,
                   annual_levels=ANNUAL_LEVELS, organisations=list(Organisation.live().order_by(Organisation.name)),
                   bases=list(RuleSet.live().order_by(RuleSet.effective_from.desc())))
    return render_template(template, **context), (422 if errors else 200)


@bp.route("/<rule_set_id>/end", methods=("POST",))
@role_required("admin")
def rule_set_end(rule_set_id: str):
    """Set or clear the last day a rule set applies (meetings already judged keep it pinned)."""
    from models.rules import _parse_date

    central_only()
    rules = get_rule_set_or_404(rule_set_id)
    text = request.form.get("effective_to", "").strip()
    error = ""
    try:
        rules.effective_to = _parse_date(text) if text else None
        rules.save()
    except ValidationError as exc:  # a ValueError too: catch it first
        error = " ".join(exc.errors.values())
    except (ValueError, TypeError):
        error = "Ngày hết hiệu lực không hợp lệ (dd/mm/yyyy)."
    if error:
        rules = get_rule_set_or_404(rule_set_id)
        org = Organisation.get_or_none(Organisation.id == rules.organisation_id) if rules.organisation_id else None
        return render_template("rules/view.html", rules=rules, params=rules.params, specs=PARAM_SPECS,
                               annual_levels=ANNUAL_LEVELS, org=org, end_error=error, end_value=text), 422
    return redirect(url_for("rules.rule_set_view", rule_set_id=rules.id), 303)
