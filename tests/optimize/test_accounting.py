"""Carbon accounting by the Cloud Carbon Footprint method, and intensity data."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

import mcpdsl
from mcpdsl.ir import model as m
from mcpdsl.optimize import accounting
from mcpdsl.optimize.coefficients import (
    DEFAULT_GPU,
    MEMORY_KWH_PER_GB_HOUR,
    Embodied,
    it_watts,
    provider_of,
)
from mcpdsl.optimize.intensity import IntensityTable, RegionFacts, Segment, _timespan
from mcpdsl.optimize.plan import compute_plan

REPO = Path(__file__).resolve().parents[2]
FORECAST = Path(__file__).parent / "fixtures" / "forecast"


def test_ccf_worked_example() -> None:
    """1 vCPU-hour on AWS at 50 % in us-east-1 (CCF's 379.069 g/kWh, PUE 1.135) is about 0.91 g."""
    watts = it_watts("us-east-1", Decimal(1), 0, 0, Decimal("0.5"))
    assert watts == Decimal("2.12")  # 0.74 + 0.5 x (3.5 - 0.74)
    grams = float(watts) / 1000 * 1.135 * 379.069
    assert grams == pytest.approx(0.912, abs=0.001)


def test_memory_and_gpu_coefficients() -> None:
    one_gb = it_watts("us-east-1", None, 10**9, 0, Decimal("0.5"))
    assert one_gb == MEMORY_KWH_PER_GB_HOUR * 1000  # 0.392 W per GB
    gpu = it_watts("us-east-1", None, None, 1, Decimal(1))
    assert gpu == DEFAULT_GPU.max_watts


@pytest.mark.parametrize(
    ("region", "cloud"),
    [
        ("eu-north-1", "aws"),
        ("us-gov-west-1", "aws"),
        ("europe-north1", "gcp"),
        ("northamerica-northeast1", "gcp"),
        ("swedencentral", "azure"),
        ("Sweden Central", "azure"),
        ("somewhere-odd", "aws"),
    ],
)
def test_provider_by_region_name(region: str, cloud: str) -> None:
    assert provider_of(region).name == cloud


def test_flagship_service_line() -> None:
    """api-gateway in us-east-1: 6 replicas x (1 vCPU at its 60 % target + 1 GiB), a month."""
    project = mcpdsl.load(REPO / "policies")
    acc = accounting.services(project)
    line = next(
        x for x in acc.lines if x.name == "platform.api-gateway" and x.region == "us-east-1"
    )
    watts = 6 * ((0.74 + 0.6 * (3.5 - 0.74)) + 1.073741824 * 0.392)
    kwh = watts * 730.5 / 1000
    assert line.it_kwh == pytest.approx(kwh)
    assert line.kg == pytest.approx(kwh * 1.135 * 415.755 / 1000)
    assert not acc.unpriced


@pytest.mark.parametrize(
    ("mass", "period", "monthly"),
    [("1", "day", 30.4375), ("7", "week", 30.4375), ("12", "year", 1.0), ("5", "month", 5.0)],
)
def test_budget_periods(mass: str, period: str, monthly: float) -> None:
    budget = m.Budget(mass_kg=Decimal(mass), period=period)  # type: ignore[arg-type]
    assert accounting.budget_kg_per_month(budget) == pytest.approx(monthly)


def test_embodied_is_optional_and_small() -> None:
    per = Embodied().kg_per_vcpu_hour()
    assert float(per) == pytest.approx(1610.79 / (4 * 8766) / 96)
    project = mcpdsl.load(REPO / "policies")
    plain = accounting.services(project).total_kg()
    with_embodied = accounting.services(project, Embodied()).total_kg()
    assert plain < with_embodied < plain * 1.5


def test_forecast_prices_the_planned_hours() -> None:
    """`train` runs 03:00-06:00 UTC in eu-north-1, where the forecast says 10 g/kWh."""
    plan = compute_plan(mcpdsl.load(FORECAST))
    assert not plan.diagnostics
    train = plan.assignments["green.train"]
    assert (train.region, train.start, train.zone) == ("eu-north-1", "03:00", "UTC")
    assert train.grams == pytest.approx(6 * 1.1 * 10)
    line = next(x for x in plan.accounting.lines if x.name == "green.train")  # type: ignore[union-attr]
    assert line.intensity == pytest.approx(10)
    assert line.kg == pytest.approx(66 * 30.4375 / 1000)


def test_intensity_average_falls_back_to_the_annual_value() -> None:
    table = IntensityTable(
        "c",
        {"r": RegionFacts("r", 100.0, None, 1.0, False)},
        {"r": (Segment(0, 3600, 10.0), Segment(3600, 7200, 20.0))},
    )
    assert table.average("r", 0, 7200) == pytest.approx(15)
    assert table.average("r", 1800, 5400) == pytest.approx(15)
    assert table.average("r", 3600, 10800) == pytest.approx((20 + 100) / 2)  # half uncovered
    assert table.horizon == (0, 7200)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("01:00", 3600), ("00:05:00", 300), ("1.00:00:00", 86400), ("00:30", 1800), ("x", None)],
)
def test_carbon_aware_sdk_durations(text: str, seconds: int | None) -> None:
    assert _timespan(text) == seconds


def test_carbon_aware_sdk_json_is_read(tmp_path: Path) -> None:
    (tmp_path / "carbon.mcp").write_text(
        "package t\n\ncarbon grid {\n"
        '  intensity from "emissions.json"\n'
        '  region "eu-north-1" { intensity 30g/kWh }\n}\n',
        encoding="utf-8",
    )
    records = ",\n".join(
        f'{{"Location": "eu-north-1", "Time": "2025-03-03T{h:02d}:50:00+00:00", '
        f'"Rating": {20 + h}, "Duration": "01:00"}}'
        for h in range(6)
    )
    (tmp_path / "emissions.json").write_text('{"Emissions": [' + records + "]}\n", encoding="utf-8")
    plan = compute_plan(mcpdsl.load(tmp_path), packing=False)
    assert not plan.diagnostics
    table = plan.tables["t.grid"]
    assert table.source == "emissions.json"
    (segments,) = table.series.values()
    assert len(segments) == 6 and segments[0].end - segments[0].start == 3600
    assert segments[0].g_per_kwh == 20
