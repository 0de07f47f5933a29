"""Run-time values of the evaluator: JSON data, MISSING and ERROR (docs/semantics.md).

Numbers are compared by their *decimal* meaning: a JSON float is the decimal
its shortest representation spells (`0.7` is exactly 0.7, as OPA reads it),
literals and arithmetic results are exact `Decimal`s, and `true` is never a
number even though Python's `bool` is an `int`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __reduce__(self) -> str:
        return self._name


MISSING: Final[Any] = _Sentinel("MISSING")
"""An attribute that is not there (a path step absent or not an object)."""

ERROR: Final[Any] = _Sentinel("ERROR")
"""A run-time type error (a non-boolean in a condition, `<` on strings, ...)."""

NUMBER_TYPES: Final = (int, float, Decimal)
WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def is_number(value: object) -> bool:
    """A JSON number (never a boolean)."""
    t = type(value)
    return t is int or t is float or t is Decimal


def to_decimal(value: int | float | Decimal) -> Decimal:
    """The exact decimal a JSON number means (floats by their shortest repr)."""
    t = type(value)
    if t is Decimal:
        return value  # type: ignore[return-value]
    if t is float:
        return Decimal(repr(value))
    return Decimal(value)


def fast_literal(value: Decimal) -> int | float | None:
    """A Python int/float that compares with JSON numbers exactly like `value`, or None.

    An integral literal becomes an int (exact).  A fractional literal becomes
    the float that round-trips to it (at most 15 significant digits): float
    ordering is monotone and such a literal is the shortest repr of its float,
    so comparing a JSON float with it gives the decimal answer.
    """
    if not value.is_finite():
        return None
    if value == value.to_integral_value():
        return int(value)
    f = float(value)
    try:
        if Decimal(repr(f)) == value:
            return f
    except InvalidOperation:  # pragma: no cover - inf/nan excluded above
        return None
    return None


def num_eq(a: Any, b: Any) -> bool:
    """Numeric equality by decimal value (both arguments are numbers)."""
    ta, tb = type(a), type(b)
    if ta is Decimal or tb is Decimal:
        if ta is float:
            a = Decimal(repr(a))
        if tb is float:
            b = Decimal(repr(b))
    return bool(a == b)


def num_cmp(a: Any, b: Any) -> int:
    """-1, 0 or 1 comparing two numbers by decimal value."""
    ta, tb = type(a), type(b)
    if ta is Decimal or tb is Decimal:
        if ta is float:
            a = Decimal(repr(a))
        if tb is float:
            b = Decimal(repr(b))
    return -1 if a < b else (1 if a > b else 0)


def json_eq(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value, `true` never equals `1`, deep on lists/objects."""
    ta, tb = type(a), type(b)
    if ta is str or tb is str:
        return ta is tb and a == b
    if ta is bool or tb is bool:
        return ta is tb and a == b
    if ta in NUMBER_TYPES and tb in NUMBER_TYPES:
        return num_eq(a, b)
    if (ta is list or ta is tuple) and (tb is list or tb is tuple):
        return len(a) == len(b) and all(json_eq(x, y) for x, y in zip(a, b, strict=True))
    if ta is dict and tb is dict:
        return a.keys() == b.keys() and all(json_eq(a[k], b[k]) for k in a)
    if a is None or b is None:
        return a is None and b is None
    return False


def json_in(item: Any, collection: list[Any] | tuple[Any, ...]) -> bool:
    return any(json_eq(item, x) for x in collection)


def to_json(value: Any) -> Any:
    """A value as plain JSON data (Decimals become int/float)."""
    if type(value) is Decimal:
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def show(value: Any) -> str:
    """A value as the user would write it, for explanations."""
    import json

    if value is MISSING:
        return "missing"
    if value is ERROR:
        return "error"
    try:
        return json.dumps(to_json(value), sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def type_name(value: Any) -> str:
    if value is MISSING:
        return "missing"
    if value is ERROR:
        return "error"
    if value is None:
        return "null"
    t = type(value)
    if t is bool:
        return "a boolean"
    if t in NUMBER_TYPES:
        return "a number"
    if t is str:
        return "a string"
    if t is list or t is tuple:
        return "a list"
    if t is dict:
        return "an object"
    return t.__name__


def now_fields(moment: datetime) -> dict[str, Any]:
    """The `now` object of a request for a (zone-aware) moment."""
    return {
        "hour": moment.hour,
        "minute": moment.minute,
        "weekday": WEEKDAYS[moment.weekday()],
        "time": moment.hour * 60 + moment.minute,
        "date": moment.date().isoformat(),
    }
