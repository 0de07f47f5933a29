"""examples/simulate: the shipped traces are what make_traces.py generates, and well-formed."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = REPO / "examples" / "simulate"
TRACES = ("week-diurnal.csv", "flash-crowd.csv", "slow-ramp.csv")
SERVICE = re.compile(r"^service ([a-z0-9-]+) \{", re.MULTILINE)


def test_the_generator_reproduces_the_committed_files(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(HERE / "make_traces.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == sorted([*TRACES, "week-intensity.csv"])
    for name in made:
        assert (tmp_path / name).read_bytes() == (HERE / name).read_bytes(), name


def _rows(name: str) -> list[dict[str, str]]:
    text = (HERE / name).read_text(encoding="utf-8")
    assert text.startswith("# ")  # provenance first
    assert "Apache-2.0" in text.split("\ntime,")[0]
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    return list(csv.DictReader(lines))


@pytest.mark.parametrize("name", TRACES)
def test_traces_cover_every_service_of_policies(name: str) -> None:
    services = set(SERVICE.findall((REPO / "policies" / "services.mcp").read_text("utf-8")))
    rows = _rows(name)
    assert set(rows[0]) == {"time", "service", "metric", "value"}
    assert {r["service"] for r in rows} == services
    assert {r["metric"] for r in rows} == {"rps", "cpu"}
    times = sorted({datetime.fromisoformat(r["time"]) for r in rows})
    assert all(t.tzinfo is not None for t in times)
    per_point = len(rows) // len(times)
    assert per_point == 2 * len(services) and len(rows) == per_point * len(times)
    assert all(float(r["value"]) >= 0 for r in rows)
    assert (HERE / name).stat().st_size < 512 * 1024


def test_the_flash_crowd_is_a_five_to_tenfold_spike() -> None:
    gateway = [
        float(r["value"])
        for r in _rows("flash-crowd.csv")
        if r["service"] == "api-gateway" and r["metric"] == "rps"
    ]
    before = sum(gateway[60:120]) / 60
    assert 5 <= max(gateway) / before <= 10


def test_the_week_has_a_weekly_cycle_and_the_ramp_climbs() -> None:
    week = [
        float(r["value"])
        for r in _rows("week-diurnal.csv")
        if r["service"] == "mcp-api" and r["metric"] == "rps"
    ]
    assert len(week) == 7 * 96
    weekday, weekend = max(week[: 5 * 96]), max(week[5 * 96 :])
    assert weekend < 0.7 * weekday
    assert min(week[:96]) < 0.3 * max(week[:96])  # a day and a night
    ramp = [
        float(r["value"])
        for r in _rows("slow-ramp.csv")
        if r["service"] == "mcp-api" and r["metric"] == "rps"
    ]
    assert sum(ramp[-24:]) > 4 * sum(ramp[:24])


def test_the_week_of_intensity_loads_as_a_forecast_of_policies() -> None:
    """The intensity file is valid for `intensity from` against policies/carbon.mcp."""
    import mcpdsl
    from mcpdsl.optimize.intensity import load

    project = mcpdsl.load(REPO / "policies")
    carbon = project.carbons[0]
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(HERE / "week-intensity.csv", Path(tmp) / "week.csv")
        moved = project.model_copy(update={"root": tmp})
        loaded = load(moved, carbon.model_copy(update={"intensity_file": "week.csv"}))
    assert loaded.diagnostics == []
    table = loaded.table
    assert set(table.series) == {r.region for r in carbon.regions}
    for region, segments in table.series.items():
        assert len(segments) == 7 * 24
        mean = sum(s.g_per_kwh for s in segments) / len(segments)
        assert abs(mean / table.regions[region].intensity - 1) < 0.1
