"""Run-time values of the evaluator: JSON data, MISSING and ERROR (docs/semantics.md).

Numbers are compared by their *decimal* meaning: a JSON float is the decimal
its shortest representation spells (`0.7` is exactly 0.7, as OPA reads it),
literals and arithmetic results are exact `Decimal`s, and `true` is never a
number even though Python's `bool` is an `int`.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import cache
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


# ------------------------------------------------------------ the boundary

#: Deepest nesting a request may have (the request object itself is depth 1).
MAX_DEPTH: Final = 64
#: Largest magnitude of an integer in a request: beyond a 64-bit float's range a
#: JSON number is not interoperable (RFC 8259 section 6).
MAX_INT_BITS: Final = 1024
INT_LIMIT: Final = 1 << MAX_INT_BITS  # |n| < INT_LIMIT is `n.bit_length() <= MAX_INT_BITS`
_SURROGATE = re.compile("[\ud800-\udfff]")


class Refused(ValueError):
    """A request that is not plain JSON data within the engine's limits."""


def plain_request(request: Any) -> Any:
    """`request` as plain JSON data, or raises `Refused` with the reason.

    Why: the evaluator reads values by their exact type (`type(v) is str`), so a
    `str`/`int`/`float`/`dict`/`list` subclass (an `enum.StrEnum` action) would
    be read differently from the plain value it stands for, and could skip a
    rule or poison a memo keyed by equal-hashing values.  Subclasses and tuples
    are therefore copied to the plain types (the request itself is returned
    when nothing needs converting: the common case costs one walk, no copy).
    Refused: a non-object request, non-string object keys, NaN and infinities,
    integers beyond a float's range, lone surrogates in strings, nesting deeper
    than `MAX_DEPTH` (and so cycles), and any other Python type.
    """
    if type(request) is not dict and not isinstance(request, dict):
        raise Refused(f"the request is {_what(request)}, not a JSON object")
    return _object(request, 1)


def _what(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (int, float, Decimal)):
        return "a number"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a `{type(value).__name__}`"


def _string(value: str) -> str:
    if type(value) is not str:
        value = str.__str__(value)  # the plain string a subclass holds, whatever it overrides
    if not value.isascii() and _SURROGATE.search(value) is not None:
        raise Refused("a string contains a lone surrogate (not a Unicode scalar value)")
    return value


def _object(value: Any, depth: int) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise Refused(f"the request is nested deeper than {MAX_DEPTH} levels")
    out: dict[str, Any] | None = None if type(value) is dict else {}
    for i, (key, item) in enumerate(dict.items(value)):
        if type(key) is not str or not key.isascii():
            if not isinstance(key, str):
                raise Refused(f"an object key is {_what(key)}, not a string")
            new_key = _string(key)
        else:
            new_key = key
        t = type(item)
        if t is str:
            new = item if item.isascii() else _string(item)
        elif t is bool or item is None:
            new = item
        elif t is int:
            new = item if item.bit_length() <= MAX_INT_BITS else _number(item)
        elif t is float:
            new = item if item - item == 0.0 else _number(item)
        else:
            new = _value(item, depth + 1)
        if out is None and (new is not item or new_key is not key):
            out = dict(list(dict.items(value))[:i])
        if out is not None:
            out[new_key] = new
    return value if out is None else out


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        value = int.__index__(value)
        if value.bit_length() > MAX_INT_BITS:
            raise Refused(f"an integer has more than {MAX_INT_BITS} bits (beyond a float's range)")
        return value
    if isinstance(value, float):
        value = float.__float__(value)
        if value - value != 0.0:
            raise Refused(f"a number is {value!r}: NaN and infinities are not JSON")
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise Refused(f"a number is {value}: NaN and infinities are not JSON")
        if value and value.adjusted() > 308:
            raise Refused("a number is beyond a float's range")
        return value
    raise Refused(f"a value is {_what(value)}, not JSON")  # pragma: no cover - callers check


def _value(value: Any, depth: int) -> Any:
    t = type(value)
    if t is str:
        return _string(value)
    if t is bool or value is None:
        return value
    if t is list:
        return _list(value, depth)
    if t is dict:
        return _object(value, depth)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (int, float, Decimal)):
        return _number(value)
    if isinstance(value, (list, tuple)):
        return _list(value, depth)
    if isinstance(value, dict):
        return _object(value, depth)
    raise Refused(f"a value is {_what(value)}, not JSON")


def _list(value: Any, depth: int) -> list[Any]:
    if depth > MAX_DEPTH:
        raise Refused(f"the request is nested deeper than {MAX_DEPTH} levels")
    items = list.__iter__(value) if isinstance(value, list) else tuple.__iter__(value)
    out = [_value(x, depth + 1) for x in items]
    if type(value) is list and all(a is b for a, b in zip(out, value, strict=True)):
        return value
    return out


def checked(value: Any) -> Any:
    """A value the evaluator read, as plain JSON data; raises `Refused` when it is not JSON.

    Called by the compiled attribute getters for anything but a plain string,
    boolean or null (so the common reads cost one type test): numbers are
    checked (finite, within a float's range), containers walked (depth-bounded)
    and subclasses copied to their plain type.
    """
    t = type(value)
    if (t is int and -INT_LIMIT < value < INT_LIMIT) or (t is float and value - value == 0.0):
        return value
    return _value(value, 1)


def lookup_slow(value: Any, steps: tuple[str, ...]) -> Any:
    """The rest of an attribute path below a `dict` subclass (what the getters fall back to)."""
    for step in steps:
        if not isinstance(value, dict):
            return MISSING
        value = dict.get(value, step, MISSING)
    if value is MISSING:
        return value
    return checked(value)


# ------------------------------------------------------------ case mapping


@cache
def _simple_upper() -> dict[str, str]:
    """The characters whose full uppercase (Python's) is not their simple one (Go's).

    Every character whose `str.upper()` has several characters (`ß` -> `SS`,
    `ᾀ` -> `ἈΙ`; all in the BMP, tests/engine/test_engine_strings.py checks
    the whole code space) maps to its simple uppercase: the single-character
    titlecase when there is one (`ᾀ` -> `ᾈ`, as in UnicodeData.txt), else itself.
    """
    out: dict[str, str] = {}
    for code in range(0x80, 0x10000):
        c = chr(code)
        if len(c.upper()) > 1:
            title = c.title()
            out[c] = title if len(title) == 1 else c
    return out


def go_lower(text: str) -> str:
    """`strings.ToLower` of Go (OPA's `lower`): each character's simple lowercase.

    Python's `str.lower` differs in two places only: `İ` becomes `i̇` (two
    characters; Go: `i`) and a final `Σ` becomes `ς` (Go: always `σ`).
    """
    if text.isascii():
        return text.lower()
    return text.replace("\u0130", "i").replace("\u03a3", "\u03c3").lower()


def go_upper(text: str) -> str:
    """`strings.ToUpper` of Go (OPA's `upper`): each character's simple uppercase."""
    if text.isascii():
        return text.upper()
    table = _simple_upper()
    return "".join([table[c] if c in table else c.upper() for c in text])
