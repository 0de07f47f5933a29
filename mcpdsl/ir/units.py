"""Typed literals: read a number-with-suffix in the light of the expected type.

The lexer produces one QUANTITY token for `500m`, `5m`, `512Mi`, `100/s`,
`28g/kWh`, `$0.38/h`, ...; only the clause that holds it knows whether `m`
means millicores or minutes.  Every reader here returns either a value in
base units or a human message saying what was expected, with an example.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from mcpdsl.ir.model import Rate

MAX_DIGITS = 30

_QUANTITY = re.compile(r"^(\$?)([0-9]+(?:\.[0-9]+)?)(.*)$")


@dataclass(frozen=True)
class UnitKind:
    """An expected unit: its name for messages and an example literal."""

    name: str
    example: str


CPU = UnitKind("a cpu amount", "500m or 2")
BYTES = UnitKind("a size in bytes", "512Mi")
DURATION = UnitKind("a duration", "30s")
PERCENT = UnitKind("a percent", "70%")
RATE = UnitKind("a rate", "100/s")
ENERGY = UnitKind("an energy", "12kWh")
POWER = UnitKind("a power", "350W")
MASS = UnitKind("a CO2e mass", "1200kg")
INTENSITY = UnitKind("a carbon intensity", "28g/kWh")
MONEY = UnitKind("an amount of money", "$0.38")
MONEY_RATE = UnitKind("a price per hour", "$0.38/h")
COUNT = UnitKind("a whole number", "3")
NUMBER = UnitKind("a number", "1.5")

_BYTES = {
    "": 1,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_SECONDS = {
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
    "min": Decimal(60),
    "h": Decimal(3600),
    "d": Decimal(86400),
}
_PERIODS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_ENERGY = {"Wh": Decimal("0.001"), "kWh": Decimal(1), "MWh": Decimal(1000), "GWh": Decimal(10**6)}
_POWER = {"W": Decimal(1), "kW": Decimal(1000), "MW": Decimal(10**6)}
_MASS = {"g": Decimal("0.001"), "kg": Decimal(1), "t": Decimal(1000)}
_COUNT_MULT = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9}

# Suffixes whose unit is clear without context (used inside expressions).
_UNAMBIGUOUS: dict[str, UnitKind] = {
    **{s: DURATION for s in ("ms", "s", "h", "d", "min")},
    "%": PERCENT,
    **{s: BYTES for s in ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei")},
    **{s: ENERGY for s in _ENERGY},
    **{s: POWER for s in _POWER},
    "g": MASS,
    "kg": MASS,
    "t": MASS,
    "g/kWh": INTENSITY,
}


class UnitError(ValueError):
    """A literal that does not fit the expected type; the message is user-facing."""

    def __init__(self, message: str, code: str = "E0301", help: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.help = help


def split(text: str) -> tuple[bool, Decimal, str]:
    """Split `$0.38/h` into (money?, 0.38, "/h")."""
    m = _QUANTITY.match(text)
    if m is None:
        raise UnitError(f"`{text}` is not a number", "E0311")
    digits = m.group(2).replace(".", "").lstrip("0")
    if len(digits) > MAX_DIGITS:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise UnitError(f"number `{shown}` has more than {MAX_DIGITS} digits", "E0109")
    try:
        value = Decimal(m.group(2))
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only digits
        raise UnitError(f"`{text}` is not a number", "E0311") from exc
    return bool(m.group(1)), value, m.group(3)


def _wrong(kind: UnitKind, text: str) -> UnitError:
    return UnitError(f"expected {kind.name} like `{kind.example}`, found `{text}`")


def read_cpu(text: str) -> Decimal:
    money, value, suffix = split(text)
    if money:
        raise _wrong(CPU, text)
    if suffix == "":
        return value
    if suffix == "m":
        return value / 1000
    raise _wrong(CPU, text)


def read_bytes(text: str) -> int:
    money, value, suffix = split(text)
    if money or suffix not in _BYTES:
        raise _wrong(BYTES, text)
    result = value * _BYTES[suffix]
    if result != result.to_integral_value():
        raise UnitError(f"`{text}` is not a whole number of bytes", "E0311")
    return int(result)


def read_duration(text: str) -> Decimal:
    money, value, suffix = split(text)
    if money or suffix not in _SECONDS:
        raise _wrong(DURATION, text)
    return value * _SECONDS[suffix]


def read_percent(text: str) -> Decimal:
    money, value, suffix = split(text)
    if money or suffix != "%":
        raise _wrong(PERCENT, text)
    return value / 100


def read_rate(text: str) -> Rate:
    money, value, suffix = split(text)
    if money or "/" not in suffix:
        raise _wrong(RATE, text)
    mult, _, period = suffix.partition("/")
    if mult not in _COUNT_MULT or period not in _PERIODS:
        raise _wrong(RATE, text)
    return Rate.model_construct(amount=value * _COUNT_MULT[mult], per=Decimal(_PERIODS[period]))


def _scaled(kind: UnitKind, table: dict[str, Decimal], text: str) -> Decimal:
    money, value, suffix = split(text)
    if money or suffix not in table:
        raise _wrong(kind, text)
    return value * table[suffix]


def read_energy(text: str) -> Decimal:
    """Energy in kWh."""
    return _scaled(ENERGY, _ENERGY, text)


def read_power(text: str) -> Decimal:
    """Power in watts."""
    return _scaled(POWER, _POWER, text)


def read_mass(text: str) -> Decimal:
    """CO2e mass in kg."""
    return _scaled(MASS, _MASS, text)


def read_intensity(text: str) -> Decimal:
    """Grid intensity in gCO2e/kWh."""
    return _scaled(INTENSITY, {"g/kWh": Decimal(1), "kg/MWh": Decimal(1)}, text)


def read_money(text: str) -> Decimal:
    money, value, suffix = split(text)
    if not money or suffix:
        raise _wrong(MONEY, text)
    return value


def read_money_per_hour(text: str) -> Decimal:
    money, value, suffix = split(text)
    if not money or suffix not in ("/h", "/d", "/month"):
        raise _wrong(MONEY_RATE, text)
    return {"/h": value, "/d": value / 24, "/month": value / 730}[suffix]


def read_count(text: str) -> int:
    money, value, suffix = split(text)
    if money or suffix:
        raise _wrong(COUNT, text)
    if value != value.to_integral_value():
        raise UnitError(f"expected a whole number, found `{text}`", "E0311")
    return int(value)


def read_number(text: str) -> Decimal:
    money, value, suffix = split(text)
    if money or suffix:
        raise _wrong(NUMBER, text)
    return value


def read_percent_or_count(text: str) -> tuple[Decimal, str]:
    """`100%` is a percent, `4` a count of pods (HPA step policies)."""
    _, _, suffix = split(text)
    if suffix == "%":
        return read_percent(text), "percent"
    return Decimal(read_count(text)), "pods"


def read_ratio(text: str) -> Decimal:
    """A percent (`95%`) or a plain ratio (`0.95`); PUE-like factors are plain numbers."""
    _, _, suffix = split(text)
    if suffix == "%":
        return read_percent(text)
    return read_number(text)


def read_expression_literal(text: str) -> tuple[Decimal, str | None]:
    """A quantity inside an expression, where no clause says what to expect.

    Returns the value in base units and the unit's name; ambiguous suffixes are
    refused with E0304.
    """
    money, value, suffix = split(text)
    if money:
        return read_money(text), "money"
    if suffix == "":
        return value, None
    kind = _UNAMBIGUOUS.get(suffix)
    if kind is None:
        if suffix in ("m", "M", "k", "K", "G", "T", "P", "E"):
            number = text[: len(text) - len(suffix)]
            explicit = (
                f"`{number}min` for minutes or `{value / 1000}` cores"
                if suffix == "m"
                else f"`{number}{suffix.upper()}i` for bytes or `{value * _BYTES[suffix]}` for a count"
            )
            raise UnitError(
                f"the unit of `{text}` is ambiguous here (cpu, bytes, duration or count)",
                "E0304",
                help=f"write the explicit form: {explicit}",
            )
        if "/" in suffix:
            rate = read_rate(text)
            return rate.per_second, "rate"
        raise UnitError(f"`{suffix}` is not a known unit", "E0301")
    reader = {
        DURATION.name: read_duration,
        PERCENT.name: read_percent,
        BYTES.name: lambda t: Decimal(read_bytes(t)),
        ENERGY.name: read_energy,
        POWER.name: read_power,
        MASS.name: read_mass,
        INTENSITY.name: read_intensity,
    }[kind.name]
    unit = {
        DURATION.name: "duration",
        PERCENT.name: "percent",
        BYTES.name: "bytes",
        ENERGY.name: "energy",
        POWER.name: "power",
        MASS.name: "mass",
        INTENSITY.name: "intensity",
    }[kind.name]
    return reader(text), unit


def parse_time(text: str) -> int:
    """`08:30` as minutes after midnight; `24:00` is allowed as the end of a day."""
    hours, minutes = int(text[:2]), int(text[3:5])
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise UnitError(f"`{text}` is not a time of day (00:00..24:00)", "E0311")
    return hours * 60 + minutes
