"""Start-up benchmark: process wall time of short `mcpdsl` commands, cold and warm.

    python benchmarks/startup.py [--runs N] [--write-docs] [--source] [--against DIR]

Runs each command N times (default 9) as a fresh process and prints the median
wall time, the median CPU time (user + system of the child) and the wall time
as a multiple of `python -c pass` measured in the same run, so that numbers
taken on a loaded machine can still be compared.  "cold" gives every run a new,
empty cache directory (`XDG_CACHE_HOME`: the parser is built from the grammar and
every file is parsed and lowered); "warm" shares one directory, filled by a
first run that is not counted (the parser tables, each file's front-end
result, each JWKS verdict and the analyses' result are loaded from it).
"warm, analyses uncached" (for `check` with the analyses) is warm with the
stored analyses' results (`an-*.pickle`) deleted before each run: the front end
comes from the cache and every z3 query is solved, what the first `check` after
an edit pays.  `--write-docs` replaces the table in docs/performance.md.

Bytecode: an installed package has its modules compiled (pip writes `.pyc`
files), so by default every process reads and writes bytecode in a private
`PYTHONPYCACHEPREFIX` of this run (`PYTHONDONTWRITEBYTECODE` is dropped) and one
uncounted process per command writes it first.  `--source` keeps the caller's
environment instead: with `PYTHONDONTWRITEBYTECODE=1` and no `__pycache__`,
every process compiles mcpdsl's sources again (about 0.05 s more).

`--against DIR` measures another checkout of mcpdsl (e.g. an earlier commit,
unpacked with `git archive`) in the same run, its processes alternating with
this tree's, so that both see the same load; it prints a before/after table.
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
    ("`mcpdsl --help`", ("-m", "mcpdsl", "--help"), ("",), None),
    (
        "`mcpdsl check --no-analyze policies/`",
        ("-m", "mcpdsl", "check", "--no-analyze", "policies"),
        CACHED,
        0.35,
    ),
    (
        "`mcpdsl check policies/`",
        ("-m", "mcpdsl", "check", "policies"),
        (COLD, WARM, UNANALYSED),
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


@dataclass(frozen=True)
class Setup:
    """Where a process runs: the checkout it imports and its bytecode directory."""

    root: Path
    pycache: Path | None  # None: the caller's environment (`--source`)

    def env(self, cache_home: str) -> dict[str, str]:
        env = {**os.environ, "XDG_CACHE_HOME": cache_home, "PYTHONPATH": str(self.root)}
        if self.pycache is not None:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(self.pycache)
        return env


def run_once(args: tuple[str, ...], cache_home: str, setup: Setup) -> Sample:
    """One process: its wall time and the CPU time it used (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, *args],
        cwd=setup.root,
        env=setup.env(cache_home),
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


def measure(
    args: tuple[str, ...], runs: int, setups: tuple[Setup, ...], *, state: str
) -> list[Sample]:
    """Medians over `runs` processes per setup, the setups' processes alternating.

    Cold runs each get a new, empty cache directory; warm runs share one per
    setup, filled by an uncounted first run (which also writes the bytecode).
    """
    cold = state == COLD
    samples: list[list[Sample]] = [[] for _ in setups]
    with tempfile.TemporaryDirectory(prefix="mcpdsl-startup-") as tmp:
        shared = []
        for number, setup in enumerate(setups):
            home = Path(tmp) / f"warm-{number}"
            home.mkdir()
            shared.append(home)
            run_once(args, str(home), setup)  # bytecode, and the cache of warm runs
        for index in range(runs):
            for number, setup in enumerate(setups):
                home = Path(tmp) / f"cold-{number}-{index}" if cold else shared[number]
                home.mkdir(exist_ok=True)
                if state == UNANALYSED:
                    forget_analyses(home)
                samples[number].append(run_once(args, str(home), setup))
    return [
        Sample(statistics.median(s.wall for s in mine), statistics.median(s.cpu for s in mine))
        for mine in samples
    ]


def load() -> str:
    if not hasattr(os, "getloadavg"):
        return "n/a"
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=9, help="processes per row (median)")
    parser.add_argument("--write-docs", action="store_true", help="update docs/performance.md")
    parser.add_argument(
        "--source", action="store_true", help="no private bytecode directory (see the docstring)"
    )
    parser.add_argument("--against", type=Path, help="another checkout, measured alternately")
    options = parser.parse_args()
    load_before = load()
    with tempfile.TemporaryDirectory(prefix="mcpdsl-pycache-") as pycache:
        setups = [Setup(ROOT, None if options.source else Path(pycache) / "this")]
        if options.against is not None:
            other = options.against.resolve()
            setups.append(Setup(other, None if options.source else Path(pycache) / "other"))
        rows = measure_all(options.runs, tuple(setups))
    bytecode = "sources compiled by every process" if options.source else "bytecode"
    flags = " --source" if options.source else ""
    if options.against is not None:
        print(compare_table(rows, options, load_before, bytecode))
        return
    lines = [
        f"Measured by `python benchmarks/startup.py --runs {options.runs}{flags}` on "
        f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, {bytecode}; load average "
        f"(1, 5, 15 min) {load_before} before and {load()} after.",
        "",
        "| command | cache | wall, median (s) | CPU, median (s) | wall / `python -c pass` | goal |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    baseline = rows[0][2][0].wall
    for label, cache, (sample, *_), goal in rows:
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


Row = tuple[str, str, list[Sample], float | None]


def measure_all(runs: int, setups: tuple[Setup, ...]) -> list[Row]:
    rows: list[Row] = []
    for label, args, states, goal in COMMANDS:
        for state in states:
            samples = measure(args, runs, setups, state=state)
            rows.append((label, state, samples, goal))
            print(f"done {label} {state}", file=sys.stderr, flush=True)
    return rows


def compare_table(
    rows: list[Row], options: argparse.Namespace, load_before: str, bytecode: str
) -> str:
    """This tree (after) against `--against` (before): median wall and CPU seconds."""
    flags = " --source" if options.source else ""
    lines = [
        f"Measured by `python benchmarks/startup.py --runs {options.runs}{flags} --against "
        f"BEFORE` on {os.cpu_count()} cores, Python {sys.version.split()[0]}, {bytecode}; "
        f"load average (1, 5, 15 min) {load_before} before and {load()} after.",
        "",
        "| command | cache | before: wall (CPU) s | after: wall (CPU) s | goal |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for label, cache, (after, before), goal in rows:
        target = f"≤ {goal:g} s" if goal is not None and cache == WARM else ""
        lines.append(
            f"| {label} | {cache} | {before.wall:.3f} ({before.cpu:.3f}) "
            f"| {after.wall:.3f} ({after.cpu:.3f}) | {target} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
