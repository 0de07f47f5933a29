"""`mcpdsl test DIR [--coverage] [--threshold P]`: run every `test` block.

One line per test (`PASS name` / `FAIL name (file:line:col): why`, then the
explanation indented), last line exactly `N passed, M failed`.  Exit 0 when
all pass, 1 on a failure (or coverage below `--threshold`), 2 when the tree
does not compile or cannot be read.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mcpdsl.cli.exit import EXIT_FINDINGS, EXIT_OK


def _location(root: Path, span: object) -> str:
    if span is None:
        return "?"
    file = getattr(span, "file", "")
    path = root / file if file else root
    return f"{path.as_posix()}:{span.line}:{span.column}"  # type: ignore[attr-defined]


@click.command("test")
@click.argument("path", type=click.Path(path_type=str))
@click.option("--coverage", "show_coverage", is_flag=True, help="List rules no test exercised.")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 100),
    default=None,
    metavar="P",
    help="Exit 1 when rule coverage is below P percent.",
)
def test_command(path: str, show_coverage: bool, threshold: float | None) -> None:
    """Run the `test` blocks of a policy tree against the in-process engine."""
    from mcpdsl.cli.common import project_or_exit
    from mcpdsl.engine.engine import compile_project
    from mcpdsl.engine.testing import coverage, run_tests

    project = project_or_exit(path)
    root = Path(path) if Path(path).is_dir() else Path(path).parent
    compiled = compile_project(project, project.root)
    outcomes = run_tests(compiled)
    failed = 0
    for outcome in outcomes:
        if outcome.passed:
            click.echo(f"PASS {outcome.name}")
            continue
        failed += 1
        click.echo(f"FAIL {outcome.name} ({_location(root, outcome.span)}): {outcome.message}")
        for line in outcome.details:
            click.echo(f"    {line}")
    low = False
    if show_coverage or threshold is not None:
        missed, percent = coverage(compiled, outcomes)
        if show_coverage:
            for key, span in missed:
                click.echo(f"not exercised: {key} ({_location(root, span)})")
        total = sum(len(p.rules) for p in compiled.policies.policies)
        click.echo(f"rule coverage: {percent:.1f}% ({total - len(missed)}/{total} rules)")
        low = threshold is not None and percent < threshold
        if low:
            click.echo(f"rule coverage {percent:.1f}% is below the threshold {threshold:g}%")
    click.echo(f"{len(outcomes) - failed} passed, {failed} failed")
    sys.exit(EXIT_FINDINGS if failed or low else EXIT_OK)
