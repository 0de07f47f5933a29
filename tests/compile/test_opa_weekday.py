"""The weekday of `now` agrees in OPA, rego-cpp and the engine on every day of a leap year.

rego-cpp computes `%` wrong for some operands (20796 % 7 gives 1), so a weekday
derived with `%` was right on some dates and wrong on others: a test that read
the clock passed or failed by the calendar.  Here every day of 2028 (a leap
year, so 29 February too) is checked at the start, middle and end of the UTC
day, against a weekday computed independently from the day count since the
epoch (1970-01-01 was a Thursday).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from validators import opa_available, run_opa, run_rego

from mcpdsl.compile import opa as target
from mcpdsl.evaluate.values import now_fields

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
LEAP_YEAR = [date(2028, 1, 1) + timedelta(days=i) for i in range(366)]
# Whole seconds only: a JSON number near 1.8e18 is exact to 256 ns as a double.
TIMES_OF_DAY = (time(0, 0, 0), time(12, 34, 56), time(23, 59, 59))


def expected_weekday(day: date) -> str:
    since_epoch = (day - date(1970, 1, 1)).days
    return DAYS[(since_epoch + 3) % 7]  # Python's `%` is the reference here


def stamps() -> list[tuple[date, int]]:
    out = []
    for day in LEAP_YEAR:
        for clock in TIMES_OF_DAY:
            moment = datetime.combine(day, clock, tzinfo=UTC)
            out.append((day, int(moment.timestamp()) * 1_000_000_000))
    return out


def modules() -> dict[str, str]:
    lib = target.render_template("lib.rego.j2", version="test", cidr=False)
    probe = (
        "package probe\n\nimport rego.v1\n\nimport data.mcp.lib\n\n"
        "result := [lib.weekday_of(ns) | some ns in input.stamps]\n"
    )
    return {"mcp/lib.rego": lib, "probe.rego": probe}


def test_the_table_has_every_day_of_a_leap_year() -> None:
    assert len(LEAP_YEAR) == 366 and date(2028, 2, 29) in LEAP_YEAR
    assert LEAP_YEAR[-1] == date(2028, 12, 31)
    assert expected_weekday(date(2028, 2, 29)) == "tue"  # a known date


@pytest.mark.parametrize("engine", ["opa", "regopy"])
def test_rego_weekday_on_every_day_of_a_leap_year(engine: str) -> None:
    if engine == "opa" and not opa_available():
        pytest.skip("the OPA Go bindings are not installed")
    table = stamps()
    run = run_opa if engine == "opa" else run_rego
    got = run(modules(), None, {"stamps": [ns for _, ns in table]}, "data.probe.result")
    assert isinstance(got, list) and len(got) == len(table)
    wrong = [
        (day.isoformat(), ns, g)
        for (day, ns), g in zip(table, got, strict=True)
        if g != expected_weekday(day)
    ]
    assert not wrong, f"{engine}: wrong weekdays {wrong[:5]}"


def test_engine_weekday_on_every_day_of_a_leap_year() -> None:
    for day, ns in stamps():
        moment = datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC)
        assert now_fields(moment)["weekday"] == expected_weekday(day), day
