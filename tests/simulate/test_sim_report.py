"""The simulation report: a self-contained page with SVG charts, escaped, deterministic, drawn."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from png_pixels import png_pixels

from mcpdsl.simulate.report import BUCKETS, render_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def synthetic(
    steps: int, step_s: int = 15, names: tuple[str, ...] = ("api", "db")
) -> dict[str, Any]:
    """A `Result.to_data()`-shaped dict: a daily wave of demand, capacity chasing it."""
    t = [i * step_s for i in range(steps)]
    day = 86400
    services: dict[str, Any] = {}
    for k, name in enumerate(names):
        offered = [100 * (k + 1) * (1.2 + math.sin(2 * math.pi * s / day)) for s in t]
        replicas = [max(1, math.ceil(o / 40)) for o in offered]
        ready = [replicas[max(i - 2, 0)] for i in range(steps)]
        capacity = [r * 40.0 for r in ready]
        served = [min(o, c) for o, c in zip(offered, capacity, strict=True)]
        services[name] = {
            "offered": offered,
            "served": served,
            "replicas": replicas,
            "ready": ready,
            "capacity": capacity,
            "cpu_used": [s / 100 for s in served],
            "cpu_requested": [r * 1.0 for r in replicas],
            "predicted": [o * 1.05 for o in offered] if k == 0 else None,
        }
    nodes = [
        max(1, math.ceil(sum(services[n]["replicas"][i] for n in names) / 8)) for i in range(steps)
    ]
    pools = {
        "standard": {
            "nodes": nodes,
            "cost_per_h": [n * 0.768 for n in nodes],
            "cpu_capacity": [n * 16.0 for n in nodes],
            "cpu_requested": [
                sum(services[n]["cpu_requested"][i] for n in names) for i in range(steps)
            ],
            "power_w": [n * 60.0 for n in nodes],
        }
    }
    intensity = [300 + 80 * math.cos(2 * math.pi * s / day) for s in t]
    grams = [
        p * step_s / 3.6e6 * g for p, g in zip(pools["standard"]["power_w"], intensity, strict=True)
    ]
    return {
        "version": 1,
        "policy": "policies",
        "trace": "week.csv",
        "step_s": step_s,
        "start": "2025-06-02T00:00:00+00:00",
        "steps": steps,
        "t": t,
        "services": services,
        "pools": pools,
        "carbon": {
            "intensity_g_per_kwh": intensity,
            "grams": grams,
            "renewable_share": [0.5 - 0.2 * math.cos(2 * math.pi * s / day) for s in t],
        },
        "jobs": [
            {
                "name": "nightly-etl",
                "pool": "standard",
                "region": "eu-north-1",
                "start_s": 3600,
                "end_s": 3 * 3600,
                "energy_kwh": 0.136,
                "grams": 1.2,
            }
        ],
        "figures": {
            "services": {
                name: {
                    "scale_up_s": 30,
                    "predict_mape": 0.05 if name == "api" else None,
                    "predict_within_10pct": 0.97 if name == "api" else None,
                    "utilisation_requested": 0.71,
                    "utilisation_used": 0.64,
                    "availability": 0.9993,
                    "slo_violations": 3,
                }
                for name in names
            },
            "pools": {
                "standard": {
                    "utilisation": 0.68,
                    "node_hours": 96.5,
                    "cost_usd": 74.11,
                    "energy_kwh": 5.79,
                }
            },
            "totals": {
                "requests": 123456789,
                "served": 123400000,
                "availability": 0.99954,
                "cost_usd": 74.11,
                "energy_kwh": 5.79,
                "carbon_g": 1737.0,
                "carbon_g_per_1k_requests": 0.0141,
                "renewable_share": 0.52,
                "energy_vs_baseline": 0.81,
            },
        },
    }


def test_the_page_is_self_contained_with_every_chart() -> None:
    page = render_html(synthetic(2 * 5760))  # two days at 15 s
    assert page.startswith("<!DOCTYPE html>")
    outside = page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    for forbidden in ("<script", "src=", "href=", "@import", "url(", "http://", "https://"):
        assert forbidden not in outside, forbidden
    svgs = re.findall(r"<svg .*?</svg>", page, re.DOTALL)
    for svg in svgs:
        ET.fromstring(svg)
    titles = re.findall(r'aria-label="([^"]+)"', page)
    assert titles == [
        "api: demand against capacity",
        "api: replicas",
        "db: demand against capacity",
        "db: replicas",
        "Nodes per pool",
        "Cost per pool",
        "Power per pool",
        "Grid carbon intensity",
        "Emissions",
        "Renewable share",
    ]
    for svg in svgs:  # downsampled: no path has more than BUCKETS points (x2 for step lines)
        for d in re.findall(r' d="([^"]+)"', svg):
            assert d.count("L") + d.count("M") <= 2 * BUCKETS + 2
    assert "99.954 %" in page and "123,456,789" in page and "$74.11" in page
    assert "Mon 2025-06-02 00:00 UTC" in page and "nightly-etl" in page


def test_the_page_is_deterministic() -> None:
    assert render_html(synthetic(5000)) == render_html(synthetic(5000))


HOSTILE = '<script>alert("x")</script>&"\''


def test_every_string_of_the_data_is_escaped() -> None:
    data = synthetic(50, names=(HOSTILE, "b<img src=x onerror=alert(1)>"))
    data["policy"] = HOSTILE
    data["trace"] = "</title><script>1</script>"
    data["start"] = HOSTILE  # not a time: the axis falls back to seconds
    data["pools"] = {HOSTILE: data["pools"]["standard"]}
    data["figures"]["pools"] = {HOSTILE: {"utilisation": HOSTILE, HOSTILE: 1}}
    data["jobs"][0]["name"] = HOSTILE
    page = render_html(data)
    assert "<script" not in page and "<img" not in page and "</title><script" not in page
    assert "&lt;script&gt;" in page
    for svg in re.findall(r"<svg .*?</svg>", page, re.DOTALL):
        ET.fromstring(svg)


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"t": [], "services": {}, "pools": {}},
        {"t": "nope", "services": {"a": "nope"}, "pools": {"p": None}, "jobs": [None, 3]},
        {
            "t": [0, 15],
            "step_s": 15,
            "services": {"a": {"offered": [float("nan"), None], "capacity": [float("inf"), 1]}},
            "carbon": {"grams": ["x", True]},
        },
    ],
    ids=["empty", "no-steps", "wrong-types", "non-finite"],
)
def test_odd_data_gives_a_page_not_a_traceback(data: dict[str, Any]) -> None:
    page = render_html(data)
    assert page.startswith("<!DOCTYPE html>") and page.endswith("</html>\n")


def test_snapshot_of_a_small_run(snapshot: Any) -> None:
    assert render_html(synthetic(12, step_s=300)) == snapshot


@pytest.mark.skipif(
    CHROMIUM is None, reason="system component missing: headless Chromium (Debian `chromium`)"
)
def test_the_page_renders_in_headless_chromium(tmp_path: Path) -> None:
    page = tmp_path / "simulation.html"
    page.write_text(render_html(synthetic(7 * 5760)), encoding="utf-8")  # a week at 15 s
    shot = tmp_path / "shot.png"
    done = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1100,2600",
            f"--screenshot={shot}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.exists(), done.stderr[-2000:]
    width, height, pixels = png_pixels(shot.read_bytes())
    assert (width, height) == (1100, 2600)
    assert len(set(pixels)) > 50  # text and charts, not a blank page
    red = sum(1 for p in pixels if p == (0xC6, 0x28, 0x28))  # offered demand
    blue = sum(1 for p in pixels if p == (0x15, 0x65, 0xC0))  # capacity, replicas
    assert red > 30 and blue > 30, (red, blue)


def test_the_cli_writes_the_page_of_a_real_run(tmp_path: Path) -> None:
    """`mcpdsl simulate policies/ --load flash-crowd.csv --format html` end to end."""
    from click.testing import CliRunner

    from mcpdsl.cli import main

    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "flash.html"
    result = CliRunner().invoke(
        main,
        [
            "simulate",
            str(repo / "policies"),
            "--load",
            str(repo / "examples" / "simulate" / "flash-crowd.csv"),
            "--intensity",
            str(repo / "examples" / "simulate" / "week-intensity.csv"),
            "--format",
            "html",
        ],
    )
    assert result.exit_code in (0, 1), result.output
    page = result.stdout if hasattr(result, "stdout") else result.output
    page = page[page.index("<!DOCTYPE html>") :]
    out.write_text(page, encoding="utf-8")
    titles = re.findall(r'aria-label="([^"]+)"', page)
    for service in ("api-gateway", "mcp-api", "embedder"):
        assert f"{service}: demand against capacity" in titles
    assert "Nodes per pool" in titles and "Grid carbon intensity" in titles
    assert "<script" not in page
