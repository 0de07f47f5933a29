"""Start-up benchmark: process wall time of short `mcpdsl` commands, cold and warm.

    python benchmarks/startup.py [--runs N] [--write-docs]

Runs each command N times (default 9) as a fresh process and prints the median
wall time, the median CPU time (user + system of the child) and the wall time
as a multiple of `python -c pass` measured in the same run, so that numbers
taken on a loaded machine can still be compared.  "cold" gives every run a new,
empty cache directory (`XDG_CACHE_HOME`: the parser is built from the grammar and
every file is parsed and lowered); "warm" shares one directory, filled by a
first run that is not counted (the parser tables, each file's front-end
result and the analyses' result are loaded from it).  "warm, analyses
uncached" (for `check` with the analyses) is warm with the stored analyses'
results (`an-*.pickle`) deleted before each run: the front end comes from the
cache and every z3 query is solved, what the first `check` after an edit pays.
`--write-docs` replaces the table in docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- startup-benchmark:begin -->"
END = "<!-- startup-benchmark:end -->"

COLD, WARM, UNANALYSED = "cold", "warm", "warm, analyses uncached"
CACHED = (COLD, WARM)

#: (label, arguments after `python`, the cache states measured, goal in seconds)
COMMANDS: tuple[tuple[str, tuple[str, ...], tuple[str, ...], float | None], ...] = (
    ("`python -c pass`", ("-c", "pass"), ("",), None),
    ("`mcpdsl --version`", ("-m", "mcpdsl", "--version"), ("",), None),
    (
        "`mcpdsl check --no-analyze policies/`",
        ("-m", "mcpdsl", "check", "--no-analyze", "policies"),
        CACHED,
        0.35,
    ),
    (
        "`mcpdsl check policies/`",
        ("-m", "mcpdsl", "check", "policies"),
        (COLD, UNANALYSED, WARM),
        0.6,
    ),
    (
        "`mcpdsl fmt --check policies/`",
        ("-m", "mcpdsl", "fmt", "--check", "policies"),
        CACHED,
        None,
    ),
)


@dataclass(frozen=True)
class Sample:
    wall: float
    cpu: float


def run_once(args: tuple[str, ...], cache_home: str) -> Sample:
    """One process: its wall time and the CPU time it used (user + system)."""
    env = {**os.environ, "XDG_CACHE_HOME": cache_home, "PYTHONPATH": str(ROOT)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Sample(wall, cpu)


def forget_analyses(home: Path) -> None:
    """Delete the stored analyses' results, keeping the parser and front-end entries."""
    for entry in (home / "mcpdsl").glob("an-*.pickle"):
        entry.unlink()


def measure(args: tuple[str, ...], runs: int, *, state: str) -> Sample:
    """Medians over `runs` processes; cold runs each get a new, empty cache directory."""
    cold = state == COLD
    samples = []
    with tempfile.TemporaryDirectory(prefix="mcpdsl-startup-") as tmp:
        shared = Path(tmp) / "warm"
        shared.mkdir()
        if not cold:
            run_once(args, str(shared))  # fills the cache; not counted
        for index in range(runs):
            home = Path(tmp) / f"cold-{index}" if cold else shared
            home.mkdir(exist_ok=True)
            if state == UNANALYSED:
                forget_analyses(home)
            samples.append(run_once(args, str(home)))
    return Sample(
        statistics.median(s.wall for s in samples), statistics.median(s.cpu for s in samples)
    )


def load() -> str:
    if not hasattr(os, "getloadavg"):
        return "n/a"
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=9, help="processes per row (median)")
    parser.add_argument("--write-docs", action="store_true", help="update docs/performance.md")
    options = parser.parse_args()
    load_before = load()
    rows: list[tuple[str, str, Sample, float | None]] = []
    baseline: float | None = None
    for label, args, states, goal in COMMANDS:
        for state in states:
            sample = measure(args, options.runs, state=state)
            if baseline is None:
                baseline = sample.wall
            rows.append((label, state, sample, goal))
            print(f"done {label} {state}", file=sys.stderr, flush=True)
    assert baseline is not None
    lines = [
        f"Measured by `python benchmarks/startup.py --runs {options.runs}` on "
        f"{os.cpu_count()} cores, Python {sys.version.split()[0]}; load average "
        f"(1, 5, 15 min) {load_before} before and {load()} after.",
        "",
        "| command | cache | wall, median (s) | CPU, median (s) | wall / `python -c pass` | goal |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for label, cache, sample, goal in rows:
        ratio = sample.wall / baseline if baseline > 0 else float("nan")
        target = f"≤ {goal:g} s" if goal is not None and cache == WARM else ""
        lines.append(
            f"| {label} | {cache} | {sample.wall:.3f} | {sample.cpu:.3f} | {ratio:.1f} | {target} |"
        )
    text = "\n".join(lines)
    print(text)
    if options.write_docs:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import engine as bench  # the one docs writer of the benchmarks

        bench.write_docs(text, BEGIN, END, "Start-up (`benchmarks/startup.py`)")


if __name__ == "__main__":
    main()
