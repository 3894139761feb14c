"""Column constraints checked before every synced write, so a field node never queues a change that
central will refuse.

Design: SQLite does not enforce `varchar(n)`, integer width or NOT NULL on every path, while central
(`from_wire`, PostgreSQL) does: a 200-character name saved on a field node used to block its push
queue for ever. `column_errors()` reads each column's declared type and limits from the peewee
field itself (so a new column is covered without extra code), brings a value to the column's type
when that loses nothing ("1990" -> 1990 for an integer column) so the wire carries the right JSON
type, and returns a Vietnamese message per field for what cannot be stored anywhere: too long, empty
where required, not a whole number or beyond 64 bits, not a finite number, a NUL character or text
that is not valid Unicode (PostgreSQL refuses both).
"""
from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

from peewee import (
    AutoField,
    BooleanField,
    CharField,
    DateField,
    DateTimeField,
    Field,
    FloatField,
    ForeignKeyField,
    IntegerField,
    TextField,
    TimeField,
)

INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
_NUMBER_TEXT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


class _Bad(ValueError):
    """A value the column cannot hold; the message is Vietnamese."""


def column_errors(instance, only: set[str] | None = None) -> dict[str, str]:
    """Check (and losslessly normalise) every column of a model instance (or the fields named in
    `only`); field name -> message."""
    errors: dict[str, str] = {}
    for field in instance._meta.sorted_fields:
        if isinstance(field, AutoField) or (only is not None and field.name not in only):
            continue
        value = instance.__data__.get(field.name)
        try:
            instance.__data__[field.name] = check_value(field, value)
        except _Bad as exc:
            errors[field.name] = str(exc)
    return errors


def check_value(field: Field, value: Any) -> Any:
    """The value as the column stores it; raise _Bad with a Vietnamese message when it cannot be."""
    if value is None:
        if not field.null:
            raise _Bad("Vui lòng nhập giá trị này.")
        return None
    if isinstance(field, ForeignKeyField):
        target = field.rel_field
        value = getattr(value, target.name, value) if not isinstance(value, (str, int)) else value
        return check_value(target, value) if not isinstance(target, AutoField) else value
    if isinstance(field, BooleanField):
        if isinstance(value, bool):
            return value
        if value in (0, 1):
            return bool(value)
        raise _Bad("Giá trị phải là có hoặc không.")
    if isinstance(field, IntegerField):
        return _integer(value)
    if isinstance(field, FloatField):
        return _number(value)
    if isinstance(field, DateTimeField):
        return _temporal(value, dt.datetime, "ngày giờ")
    if isinstance(field, DateField):
        if isinstance(value, dt.datetime):
            return value.date()
        return _temporal(value, dt.date, "ngày")
    if isinstance(field, TimeField):
        return _temporal(value, dt.time, "giờ")
    if isinstance(field, (CharField, TextField)):
        return _text(field, value)
    return value


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise _Bad("Giá trị phải là số nguyên.")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str):
        text = value.strip()
        # Only ASCII digits: int() would also read "²" or Thai digits, which no form means.
        if not _INTEGER_TEXT.fullmatch(text):
            raise _Bad("Giá trị phải là số nguyên (chỉ gồm chữ số 0–9).")
        value = int(text)
    if not isinstance(value, int):
        raise _Bad("Giá trị phải là số nguyên.")
    if not INT64_MIN <= value <= INT64_MAX:
        raise _Bad("Số quá lớn.")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise _Bad("Giá trị phải là một số.")
    if isinstance(value, str):
        text = value.strip().replace(",", ".")
        if not _NUMBER_TEXT.fullmatch(text):
            raise _Bad("Giá trị phải là một số.")
        value = float(text)
    if not isinstance(value, (int, float)):
        raise _Bad("Giá trị phải là một số.")
    try:
        value = float(value)
    except OverflowError:
        raise _Bad("Số quá lớn.") from None
    if not math.isfinite(value):
        raise _Bad("Giá trị phải là một số hữu hạn (không nhận nan, inf).")
    return value


def _temporal(value: Any, kind: type, label: str) -> Any:
    if isinstance(value, kind):
        return value
    if isinstance(value, str):
        try:
            return kind.fromisoformat(value)
        except ValueError:
            pass
    raise _Bad(f"Giá trị phải là {label} hợp lệ.")


def _text(field: Field, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _Bad("Giá trị phải là văn bản.")
    text = value if isinstance(value, str) else str(value)
    if "\x00" in text:
        raise _Bad("Văn bản chứa ký tự không hợp lệ (NUL).")
    if not text.isascii():  # only non-ASCII text can hold a lone surrogate
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _Bad("Văn bản chứa ký tự không hợp lệ.") from None
    limit = getattr(field, "max_length", None)
    if isinstance(field, CharField) and limit and len(text) > limit:
        raise _Bad(f"Dài tối đa {limit} ký tự (hiện có {len(text)} ký tự).")
    return text
