"""`mcpdsl report`: a self-contained HTML report with SVG charts, its Markdown twin, a screenshot."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner
from png_pixels import png_pixels as _png_pixels

from mcpdsl.cli import main

REPO = Path(__file__).resolve().parents[2]
FORECAST = Path(__file__).parent / "fixtures" / "forecast"


def report(tree: Path, out: Path) -> tuple[str, str]:
    result = CliRunner().invoke(main, ["report", str(tree), "--out", str(out)])
    assert result.exit_code == 0, result.output
    folder = out
    return (
        (folder / "sustainability.html").read_text(encoding="utf-8"),
        (folder / "sustainability.md").read_text(encoding="utf-8"),
    )


@pytest.mark.parametrize("tree", [FORECAST, REPO / "policies"], ids=["forecast", "policies"])
def test_report_is_self_contained_with_four_charts(tree: Path, tmp_path: Path) -> None:
    html, markdown = report(tree, tmp_path)
    assert html.startswith("<!DOCTYPE html>")
    outside = html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    for forbidden in ("<script", "src=", "href=", "@import", "url(", "http://", "https://"):
        assert forbidden not in outside, forbidden
    svgs = re.findall(r"<svg .*?</svg>", html, re.DOTALL)
    assert len(svgs) >= 4
    for svg in svgs:
        ET.fromstring(svg)  # well-formed
    titles = " ".join(re.findall(r'aria-label="([^"]+)"', html))
    for chart in ("Emissions by region", "hour", "burn-down", "both baselines"):
        assert chart in titles
    assert "location-based" in html.lower() and "not marginal" in html
    assert markdown.startswith("# Sustainability report")
    for section in ("## Emissions by region", "## Emissions by hour", "## Budget burn-down"):
        assert section in markdown


def test_report_numbers_match_the_plan(tmp_path: Path) -> None:
    html, markdown = report(FORECAST, tmp_path)
    plan = CliRunner().invoke(main, ["plan", str(FORECAST), "--format", "json"])
    import json

    data = json.loads(plan.output)
    total = sum(line["kg_per_month"] for line in data["accounting"]["lines"])
    assert f"**Total: {total:.2f} kg CO2e a month.**" in markdown
    for name, job in data["jobs"].items():
        row = next(line for line in markdown.splitlines() if line.startswith(f"| {name} |"))
        assert job["region"] in row and job["start"] in row
        assert f"{job['kg_per_month']:.2f}" in row
    assert f"{total:.2f} kg" in html


def test_report_is_deterministic(tmp_path: Path) -> None:
    first = report(FORECAST, tmp_path / "a")
    second = report(FORECAST, tmp_path / "b")
    assert first == second


def test_report_is_written_next_to_a_build_not_into_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report inside a (signed) build breaks `verify` and dies with the next build."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    built = runner.invoke(main, ["build", str(FORECAST), "--no-analyze", "-q"])
    assert built.exit_code == 0, built.output
    before = sorted((p.relative_to(tmp_path), p.read_bytes()) for p in tmp_path.rglob("*.json"))
    default = runner.invoke(main, ["report", str(FORECAST)])
    assert default.exit_code == 0, default.output
    assert (tmp_path / "report" / "sustainability.html").is_file()
    assert not (tmp_path / "build" / "report").exists()
    into = runner.invoke(main, ["report", str(FORECAST), "--out", "build"])
    assert into.exit_code == 2
    assert "error[E0804]: refusing to replace `build`" in into.output
    assert not (tmp_path / "build" / "sustainability.html").exists()
    after = [
        e
        for e in sorted((p.relative_to(tmp_path), p.read_bytes()) for p in tmp_path.rglob("*.json"))
        if e[0].parts[0] == "build"
    ]
    assert after == before
    again = runner.invoke(main, ["report", str(FORECAST)])  # an earlier report is replaced
    assert again.exit_code == 0, again.output


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    CHROMIUM is None, reason="system component missing: headless Chromium (Debian `chromium`)"
)
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    report(FORECAST, tmp_path)
    page = (tmp_path / "sustainability.html").resolve()
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
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.exists(), done.stderr[-2000:]
    width, height, pixels = _png_pixels(shot.read_bytes())
    assert (width, height) == (1100, 2600)
    colours = set(pixels)
    assert len(colours) > 50  # text and charts, not a blank page
    green = sum(1 for p in pixels if p == (0x2E, 0x7D, 0x32))  # the plan's bars and lines
    blue = sum(1 for p in pixels if p == (0x15, 0x65, 0xC0))  # services
    red = sum(1 for p in pixels if p == (0xC6, 0x28, 0x28))  # the window-start baseline
    assert green > 200 and red > 200, (green, blue, red)
