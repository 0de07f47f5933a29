"""Generate the load traces and the week of grid intensity shipped in examples/simulate/.

    python examples/simulate/make_traces.py            # rewrite the files next to this script
    python examples/simulate/make_traces.py --out DIR  # write them somewhere else

Everything here is synthetic: no public trace is copied.  The shapes are made
of a few smooth curves plus seeded noise (`random.Random` with fixed seeds,
standard library only), so running the script again gives the same bytes and
tests/simulate/test_traces.py checks that.  Values are written with three
decimals so that last-bit differences of the platform's `math` functions
cannot change the files.

Files (README.md next to this script explains the shapes and units):

- `week-diurnal.csv`  one week at 15-minute points, diurnal with a weekly cycle;
- `flash-crowd.csv`   six hours at 1-minute points with a sudden spike;
- `slow-ramp.csv`     three days at 15-minute points, a slow ramp with noise;
- `week-intensity.csv` hourly grid intensity for the regions of `policies/`,
  one week, illustrative, built from the daily curves of
  `examples/carbon-forecast/forecast.csv`.
"""

from __future__ import annotations

import argparse
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
FORECAST = HERE.parent / "carbon-forecast" / "forecast.csv"
#: A Monday, and the day of examples/carbon-forecast/forecast.csv.
WEEK_START = datetime(2025, 6, 2, tzinfo=UTC)


@dataclass(frozen=True)
class Service:
    """Nominal load of one service of policies/ at its weekday peak, per region.

    `rps` is requests per second offered at the peak; CPU demand is
    `base_cores + cores_per_request * rps` (a linear cost model: fixed work
    such as health checks and caches, plus a cost per request).  The peaks are
    sized so that the weekday peak sits near the `expected` replicas of
    policies/scaling.mcp and the flash crowd pushes past the maximums.
    """

    name: str
    rps: float
    cores_per_request: float
    base_cores: float
    #: How strongly a spike on the front door reaches this service (1 = fully).
    coupling: float


SERVICES = (
    Service("api-gateway", 3000.0, 0.0015, 0.5, 1.0),
    Service("mcp-api", 2400.0, 0.0025, 0.5, 1.0),
    Service("agent-runtime", 120.0, 0.08, 0.5, 0.9),
    Service("tool-runner", 600.0, 0.003, 0.2, 0.9),
    Service("vector-store", 900.0, 0.006, 1.5, 0.5),
    Service("postgres", 1500.0, 0.004, 1.5, 0.3),
    Service("embedder", 300.0, 0.01, 0.5, 0.6),
)

HEADER = "time,service,metric,value\n"


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _bump(hour: float, centre: float, width: float) -> float:
    """A smooth daily bump (a wrapped Gaussian in hours), 1 at its centre."""
    d = (hour - centre + 12.0) % 24.0 - 12.0
    return math.exp(-0.5 * (d / width) ** 2)


def diurnal(moment: datetime) -> float:
    """Share of the weekday peak at a moment: Europe's working day, then the US's.

    European traffic peaks around 10:00 UTC (noon in Stockholm, summer time),
    North American around 16:00 UTC; nights fall to about 15 % of the peak.
    Saturday and Sunday carry 55 % of a weekday; Monday morning a little more
    (the login wave the `during weekdays` rule of mcp-api keeps pods warm for).
    """
    hour = moment.hour + moment.minute / 60.0
    level = 0.15 + 0.65 * _bump(hour, 10.0, 3.0) + 0.45 * _bump(hour, 16.0, 3.5)
    weekday = moment.weekday()
    if weekday >= 5:
        level *= 0.55
    elif weekday == 0:
        level *= 1.0 + 0.1 * _bump(hour, 7.5, 1.0)
    return min(level, 1.1)


def _noise(rng: random.Random, state: float, rho: float, sigma: float) -> float:
    """One step of an AR(1) process: correlated noise, as real traffic has."""
    return rho * state + rng.gauss(0.0, sigma)


def _rows(
    start: datetime,
    steps: int,
    step: timedelta,
    share: Callable[[int, datetime, Service], float],
    seed: int,
    sigma: float,
) -> list[str]:
    """CSV rows: for each point and service, offered rps and the CPU cores it demands."""
    rng = random.Random(seed)
    noise = {s.name: 0.0 for s in SERVICES}
    rows = []
    for i in range(steps):
        moment = start + step * i
        stamp = _iso(moment)
        for service in SERVICES:
            noise[service.name] = _noise(rng, noise[service.name], 0.8, sigma)
            level = max(share(i, moment, service) * (1.0 + noise[service.name]), 0.0)
            rps = service.rps * level
            cpu = service.base_cores + service.cores_per_request * rps
            rows.append(f"{stamp},{service.name},rps,{rps:.3f}")
            rows.append(f"{stamp},{service.name},cpu,{cpu:.3f}")
    return rows


def week_diurnal() -> str:
    start = WEEK_START
    rows = _rows(start, 7 * 96, timedelta(minutes=15), lambda i, t, s: diurnal(t), 7, 0.03)
    return _file(
        [
            "week-diurnal: one week (Monday 2025-06-02 00:00 UTC to Sunday) at 15-minute points.",
            "Diurnal with a weekly cycle: a European and a North American working-day peak,",
            "nights at ~15 % of the peak, weekends at 55 % of a weekday. Seed 7.",
        ],
        rows,
    )


#: The flash crowd: starts two hours in, at 8x the front door's level in 3 minutes.
SPIKE_AT = 120
SPIKE_RISE = 3
SPIKE_HOLD = 25
SPIKE_DECAY = 30.0  # minutes, e-folding time back to the baseline
SPIKE_FACTOR = 8.0


def spike(minute: int) -> float:
    """The multiplier of the front door's load at a minute of the flash crowd."""
    if minute < SPIKE_AT:
        return 1.0
    t = minute - SPIKE_AT
    if t < SPIKE_RISE:
        return 1.0 + (SPIKE_FACTOR - 1.0) * (t + 1) / SPIKE_RISE
    if t < SPIKE_RISE + SPIKE_HOLD:
        return SPIKE_FACTOR
    return 1.0 + (SPIKE_FACTOR - 1.0) * math.exp(-(t - SPIKE_RISE - SPIKE_HOLD) / SPIKE_DECAY)


def flash_crowd() -> str:
    start = WEEK_START + timedelta(days=2, hours=8)  # Wednesday 08:00 UTC

    def share(i: int, moment: datetime, service: Service) -> float:
        base = 0.45  # a quiet mid-morning level, steady so the spike stands out
        return base * (1.0 + (spike(i) - 1.0) * service.coupling)

    rows = _rows(start, 6 * 60, timedelta(minutes=1), share, 11, 0.02)
    return _file(
        [
            "flash-crowd: six hours (Wednesday 2025-06-04 08:00-14:00 UTC) at 1-minute points.",
            f"A steady 45 % of the weekday peak, then at 10:00 the front door's load rises to "
            f"{SPIKE_FACTOR:g}x in {SPIKE_RISE} minutes,",
            f"holds {SPIKE_HOLD} minutes and decays back with a {SPIKE_DECAY:g}-minute e-folding "
            "time; services further from the door see",
            "a share of the spike (agent-runtime, tool-runner 90 %, embedder 60 %, vector-store "
            "50 %, postgres 30 %). Seed 11.",
        ],
        rows,
    )


def slow_ramp() -> str:
    start = WEEK_START + timedelta(days=7)  # the Monday after the week
    steps = 3 * 96

    def share(i: int, moment: datetime, service: Service) -> float:
        return 0.3 + 2.2 * i / (steps - 1)

    rows = _rows(start, steps, timedelta(minutes=15), share, 23, 0.08)
    return _file(
        [
            "slow-ramp: three days (Monday 2025-06-09 00:00 UTC to Wednesday) at 15-minute points.",
            "Every service's load climbs linearly from 30 % to 250 % of its weekday peak (a launch",
            "or a slow leak), with AR(1) noise of about 13 % (rho 0.8, sigma 8 %). Seed 23.",
        ],
        rows,
    )


def _file(description: list[str], rows: list[str]) -> str:
    head = [
        "# Synthetic load trace for `mcpdsl simulate`, generated by examples/simulate/make_traces.py",
        "# (python examples/simulate/make_traces.py); not measured traffic, no public trace used.",
        "# Part of mcpdsl, Apache-2.0.",
        *(f"# {line}" for line in description),
        "# Per service of policies/, per region: `rps` = requests/s offered, `cpu` = CPU cores",
        "# demanded (base + cost per request, see SERVICES in make_traces.py). Each value holds",
        "# until the service's next point.",
    ]
    return "\n".join(head) + "\n" + HEADER + "\n".join(rows) + "\n"


# ------------------------------------------------------------------ intensity

#: Region of policies/ -> (shape from forecast.csv, hours to shift it by).
#: Shapes follow the kind of grid, shifted from central European time to the
#: region's own solar noon: wind-heavy Eemshaven for Sweden and Ireland, the
#: solar dip of Frankfurt for Germany and Virginia, Madrid's deep solar dip
#: for Oregon.
INTENSITY_SHAPES = {
    "eu-north-1": ("europe-west4", 0, 8.0),
    "eu-west-1": ("europe-west4", 1, 316.0),
    "eu-central-1": ("europe-west3", 0, 338.0),
    "us-east-1": ("europe-west3", 6, 415.755),
    "us-west-2": ("europe-southwest1", 9, 350.861),
}


def daily_shapes(text: str) -> dict[str, list[float]]:
    """Each region's 24 hourly values of forecast.csv divided by their mean."""
    values: dict[str, list[float]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or line.startswith("region,"):
            continue
        region, _, value = line.split(",")
        values.setdefault(region, []).append(float(value))
    return {r: [v / (sum(vs) / len(vs)) for v in vs] for r, vs in values.items()}


def week_intensity(forecast: str) -> str:
    shapes = daily_shapes(forecast)
    rng = random.Random(31)
    # One "weather" factor per region and day: windy or still, sunny or cloudy days.
    weather = {r: [1.0 + rng.uniform(-0.15, 0.15) for _ in range(7)] for r in INTENSITY_SHAPES}
    rows = []
    for region, (shape, shift, annual) in INTENSITY_SHAPES.items():
        curve = shapes[shape]
        for hour in range(7 * 24):
            moment = WEEK_START + timedelta(hours=hour)
            value = annual * curve[(hour - shift) % 24] * weather[region][hour // 24]
            rows.append(f"{region},{_iso(moment)},{value:.2f}")
    head = [
        "# ILLUSTRATIVE INTENSITY - SYNTHETIC, NOT MEASURED DATA.",
        "# Generated by examples/simulate/make_traces.py; part of mcpdsl, Apache-2.0.",
        "# One week (Monday 2025-06-02 00:00 UTC to Sunday) of hourly grid carbon intensity",
        "# (gCO2e/kWh) for the regions of policies/carbon.mcp. Each region takes a daily shape",
        "# of examples/carbon-forecast/forecast.csv (itself synthetic), shifted to the region's",
        "# solar noon, scaled to the region's annual average in policies/carbon.mcp (CCF,",
        "# Apache-2.0) and multiplied by a seeded day-to-day weather factor (+-15 %, seed 31).",
        "# Only the annual averages are real; use a real forecast for real decisions.",
    ]
    return "\n".join(head) + "\nregion,timestamp,g_per_kwh\n" + "\n".join(rows) + "\n"


def files() -> dict[str, str]:
    """Every generated file, by name."""
    forecast = FORECAST.read_text(encoding="utf-8")
    return {
        "week-diurnal.csv": week_diurnal(),
        "flash-crowd.csv": flash_crowd(),
        "slow-ramp.csv": slow_ramp(),
        "week-intensity.csv": week_intensity(forecast),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="directory to write to")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files().items():
        (args.out / name).write_bytes(text.encode("utf-8"))
        print(f"wrote {args.out / name} ({len(text.encode('utf-8')):,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
