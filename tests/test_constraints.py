"""Column constraints (issue 8, part 2): what a field node accepts, central accepts too."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from peewee import (
    AutoField,
    BooleanField,
    CharField,
    DateField,
    DateTimeField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    TextField,
    TimeField,
)

from models import SYNCED_MODELS, Member, ValidationError, db


def _values_for(field):
    """Values a hostile or careless caller could put in a column: of its type and of others."""
    junk = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                     st.text(max_size=300), st.just("²"), st.just("1990"), st.just("a\x00b"),
                     st.just("\ud800"))
    if isinstance(field, (CharField, ForeignKeyField)):
        limit = getattr(field, "max_length", None) or 36
        typed = st.text(min_size=max(0, limit - 2), max_size=limit + 2) | st.text(max_size=10)
    elif isinstance(field, BooleanField):
        typed = st.booleans()
    elif isinstance(field, IntegerField):
        typed = st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
    elif isinstance(field, FloatField):
        typed = st.floats(allow_nan=True, allow_infinity=True)
    elif isinstance(field, DateTimeField):
        typed = st.datetimes()
    elif isinstance(field, DateField):
        typed = st.dates()
    elif isinstance(field, TimeField):
        typed = st.times()
    elif isinstance(field, TextField):
        typed = st.text(max_size=50)
    else:
        typed = st.none()
    return st.one_of(typed, typed, junk)


@st.composite
def instances(draw):
    """An instance of any synced model with arbitrary column values."""
    model = draw(st.sampled_from(sorted(SYNCED_MODELS.values(), key=lambda m: m._meta.table_name)))
    instance = model()
    for field in model._meta.sorted_fields:
        if isinstance(field, AutoField):
            continue
        if field.name == "id":
            continue  # the uuid made where the record is created
        instance.__data__[field.name] = draw(_values_for(field))
    return instance


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_what_passes_the_field_nodes_checks_passes_centrals(instance):
    """Any record whose columns pass check_columns() survives the wire and central's from_wire."""
    try:
        instance.check_columns()
    except ValidationError as exc:
        assert all(isinstance(m, str) and m for m in exc.errors.values())
        return
    model = type(instance)
    wire = json.loads(json.dumps(instance.to_wire(), ensure_ascii=False).encode("utf-8"))
    values = model.from_wire(wire)  # raises on anything central would refuse
    again = model(**values)
    again.check_columns()
    assert again.to_wire() == wire


def test_every_synced_model_is_covered():
    """The property test draws from every registered synced model (a new one is covered at once)."""
    assert {"member", "app_user", "answer", "meeting", "cell"} <= set(SYNCED_MODELS)


def test_a_too_long_name_is_refused_before_it_reaches_the_outbox(app, org):
    """A 200-character name is refused with a Vietnamese message instead of blocking the push queue."""
    from models import ChangeLog

    with app.app_context(), db.connection_context():
        before = ChangeLog.select().count()
        member = Member.get_by_id(org.members[0].id)
        member.full_name = "Nguyễn " * 40
        with pytest.raises(ValidationError) as caught:
            member.save()
        assert "Dài tối đa" in caught.value.errors["full_name"]
        assert ChangeLog.select().count() == before


@pytest.mark.parametrize("value, ok", [("1990", True), (1990, True), ("²", False), (2 ** 64, False),
                                       ("", False), ("19 90", False)])
def test_integer_columns_take_only_whole_numbers(app, org, value, ok):
    """An integer column takes ASCII digits within 64 bits; '²' or 2**64 is a message, never a 500."""
    with app.app_context(), db.connection_context():
        member = Member.get_by_id(org.members[1].id)
        member.birth_year = value
        if ok:
            member.save()
            assert Member.get_by_id(member.id).birth_year == 1990
        else:
            with pytest.raises(ValidationError):
                member.save()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_what_central_reads_from_the_wire_passes_the_column_checks(instance):
    """The converse, which lets the sync engine skip check_columns(): whatever from_wire() accepts fits its columns."""
    model = type(instance)
    wire = {}
    for field in model._meta.sorted_fields:
        value = instance.__data__.get(field.name)
        wire[field.column_name] = value.isoformat() if hasattr(value, "isoformat") else value
    try:
        values = model.from_wire(wire, partial=True)
    except ValidationError:
        return
    again = model(**values)
    errors = {}
    try:
        again.check_columns(only=set(values))
    except ValidationError as exc:
        errors = exc.errors
    assert errors == {}
