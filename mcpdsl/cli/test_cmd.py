"""`mcpdsl test DIR [--format text|json|junit] [--run REGEX] [-v] [--coverage] [--threshold P]`.

Text (the default): one line per test (`PASS name` / `FAIL name (file:line:col): why`,
then the explanation indented), last line exactly `N passed, M failed`; `-v`
adds each test's location and duration.  `json` is one document for scripts
(the shape is in `docs/ci.md`); `junit` is JUnit XML, which CI systems
(GitHub, GitLab, Jenkins) render as a test report.  `--run` keeps the tests whose
name matches a Python regular expression (searched, as `opa test --run` does);
when it matches none, a warning on stderr says so.

Exit 0 when all selected tests pass, 1 on a failure (or coverage below
`--threshold`), 2 when the tree does not compile or cannot be read, or when
`--run` is not a valid expression.
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import click

from mcpdsl.cli.common import fail
from mcpdsl.cli.exit import EXIT_FINDINGS, EXIT_OK
from mcpdsl.diagnostics.render import escape_controls

FORMATS = ("text", "json", "junit")


@dataclass(frozen=True)
class _Result:
    """One test's outcome with its place and how long it took."""

    name: str
    location: str
    passed: bool
    message: str
    details: tuple[str, ...]
    seconds: float


def _location(root: Path, span: object) -> str:
    if span is None:
        return "?"
    file = getattr(span, "file", "")
    path = root / file if file else root
    return f"{path.as_posix()}:{span.line}:{span.column}"  # type: ignore[attr-defined]


def _select(tests: list[Any], pattern: re.Pattern[str] | None) -> list[Any]:
    return [t for t in tests if pattern is None or pattern.search(t.name)]


def _render_text(results: list[_Result], verbose: bool) -> list[str]:
    lines = []
    for r in results:
        timing = f" ({r.location}, {r.seconds * 1000:.2f} ms)" if verbose else ""
        if r.passed:
            lines.append(f"PASS {r.name}{timing}")
            continue
        suffix = f", {r.seconds * 1000:.2f} ms" if verbose else ""
        lines.append(f"FAIL {r.name} ({r.location}{suffix}): {r.message}")
        lines.extend(f"    {line}" for line in r.details)
    # test names, locations and values come from the tree: no terminal escapes
    return [escape_controls(line) for line in lines]


def _render_json(results: list[_Result], coverage: dict[str, Any] | None) -> str:
    doc: dict[str, Any] = {
        "tests": [
            {
                "name": r.name,
                "location": r.location,
                "passed": r.passed,
                "message": r.message,
                "details": list(r.details),
                "duration_ms": round(r.seconds * 1000, 3),
            }
            for r in results
        ],
        "summary": {
            "passed": sum(r.passed for r in results),
            "failed": sum(not r.passed for r in results),
        },
    }
    if coverage is not None:
        doc["coverage"] = coverage
    return json.dumps(doc, indent=2, ensure_ascii=False)


def _render_junit(results: list[_Result], suite: str) -> str:
    """JUnit XML: one `testsuite` per tree, one `testcase` per test block.

    The `classname` is the file the test is written in, so CI report viewers
    group tests by file; a failure carries the message as attribute and the
    decision trace as text.
    """
    failures = sum(not r.passed for r in results)
    total_time = sum(r.seconds for r in results)
    root = ET.Element(
        "testsuites", tests=str(len(results)), failures=str(failures), time=f"{total_time:.6f}"
    )
    node = ET.SubElement(
        root,
        "testsuite",
        name=suite,
        tests=str(len(results)),
        failures=str(failures),
        errors="0",
        skipped="0",
        time=f"{total_time:.6f}",
    )
    for r in results:
        classname = r.location.rsplit(":", 2)[0] if r.location != "?" else suite
        case = ET.SubElement(
            node, "testcase", classname=classname, name=r.name, time=f"{r.seconds:.6f}"
        )
        if not r.passed:
            failure = ET.SubElement(case, "failure", message=r.message, type="AssertionError")
            failure.text = "\n".join((f"{r.location}: {r.message}", *r.details))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


@click.command("test")
@click.argument("path", type=click.Path(path_type=str))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option("--run", "run_pattern", metavar="REGEX", help="Run only tests whose name matches.")
@click.option("-v", "--verbose", is_flag=True, help="Show each test's location and duration.")
@click.option("--coverage", "show_coverage", is_flag=True, help="List rules no test exercised.")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 100),
    default=None,
    metavar="P",
    help="Exit 1 when rule coverage is below P percent.",
)
def test_command(
    path: str,
    fmt: str,
    run_pattern: str | None,
    verbose: bool,
    show_coverage: bool,
    threshold: float | None,
) -> None:
    """Run the `test` blocks of a policy tree against the in-process engine."""
    from mcpdsl.cli.common import project_or_exit
    from mcpdsl.evaluate.project import prepare_project
    from mcpdsl.evaluate.testing import _sort_key, coverage, run_test

    pattern = None
    if run_pattern is not None:
        try:
            pattern = re.compile(run_pattern)
        except re.error as exc:
            fail(f"`--run {run_pattern}` is not a regular expression: {exc}")
    project = project_or_exit(path)
    root = Path(path) if Path(path).is_dir() else Path(path).parent
    compiled = prepare_project(project, project.root)
    selected = _select(sorted(project.tests, key=_sort_key), pattern)
    if run_pattern is not None and not selected and project.tests:
        # Still exit 0 (as `opa test --run` does), but say so: a typo in the
        # expression would otherwise read as a green run of nothing.
        click.echo(
            f"warning: no test name matches `--run {run_pattern}` "
            f"({len(project.tests)} tests in the tree)",
            err=True,
        )
    outcomes, results = [], []
    for test in selected:
        start = time.perf_counter()
        outcome = run_test(compiled, test)
        elapsed = time.perf_counter() - start
        outcomes.append(outcome)
        results.append(
            _Result(
                outcome.name,
                _location(root, outcome.span or test.span),
                outcome.passed,
                outcome.message,
                outcome.details,
                elapsed,
            )
        )
    failed = sum(not r.passed for r in results)
    low = False
    coverage_doc: dict[str, Any] | None = None
    coverage_lines: list[str] = []
    if show_coverage or threshold is not None:
        missed, percent = coverage(compiled, outcomes)
        total = sum(len(p.rules) for p in compiled.policies.policies)
        coverage_doc = {
            "percent": round(percent, 3),
            "rules": total,
            "not_exercised": [{"rule": k, "location": _location(root, s)} for k, s in missed],
        }
        if show_coverage:
            coverage_lines += [f"not exercised: {k} ({_location(root, s)})" for k, s in missed]
        coverage_lines.append(
            f"rule coverage: {percent:.1f}% ({total - len(missed)}/{total} rules)"
        )
        low = threshold is not None and percent < threshold
        if low:
            coverage_lines.append(
                f"rule coverage {percent:.1f}% is below the threshold {threshold:g}%"
            )
    if fmt == "json":
        click.echo(_render_json(results, coverage_doc))
    elif fmt == "junit":
        click.echo(_render_junit(results, root.resolve().name or "mcpdsl"), nl=False)
        for line in coverage_lines:
            click.echo(line, err=True)
    else:
        for line in (*_render_text(results, verbose), *coverage_lines):
            click.echo(line)
        click.echo(f"{len(results) - failed} passed, {failed} failed")
    sys.exit(EXIT_FINDINGS if failed or low else EXIT_OK)
