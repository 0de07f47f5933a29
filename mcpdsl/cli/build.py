"""`mcpdsl build DIR [--out build] [--force] [--target ...] [--no-analyze]`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from mcpdsl.compile import TARGETS

if TYPE_CHECKING:
    from mcpdsl.builder.artifacts import BuildResult


def _targets(value: str | None) -> tuple[str, ...]:
    if not value:
        return TARGETS
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        raise click.BadParameter(
            f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}"
        )
    return names


FORCE_HELP = (
    "Replace a non-empty output directory that is not an earlier mcpdsl output. Never "
    "applies to the current directory, the sources, or a path that is not a directory."
)


@click.command("build")
@click.argument("path", type=click.Path(path_type=str))
@click.option(
    "--out",
    default="build",
    show_default=True,
    help="Output directory, replaced atomically: absent, empty or an earlier build.",
)
@click.option("--force", is_flag=True, help=FORCE_HELP)
@click.option("--target", "target", default=None, help="Comma-separated targets (default: all).")
@click.option(
    "--analyze/--no-analyze",
    default=True,
    show_default=True,
    help="Run the z3 analyses first and refuse to build when they find errors, as `check` "
    "does. --no-analyze skips them.",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only diagnostics and the summary line.")
def build_command(
    path: str, out: str, force: bool, target: str | None, analyze: bool, quiet: bool
) -> None:
    """Compile a policy tree to Kubernetes, Envoy and OPA artifacts."""
    from mcpdsl.builder.artifacts import compile_artifacts, write_result
    from mcpdsl.cli.common import (
        compile_or_exit,
        emit_diagnostics,
        exit_output_error,
        output_or_exit,
    )
    from mcpdsl.diagnostics import Severity
    from mcpdsl.outdir import OutputError

    targets = _targets(target)
    plan = output_or_exit(out, sources=(path,), force=force)
    compilation = compile_or_exit(path, analyze=analyze)
    if compilation.has_errors:
        emit_diagnostics(compilation.diagnostics, compilation.sources)
        click.echo(f"build failed; `{out}` left untouched")
        sys.exit(1)
    shown = [d for d in compilation.diagnostics if d.severity is not Severity.INFO]
    if shown:  # analysis infos (overlaps, witnesses) are `check`'s to print
        emit_diagnostics(shown, compilation.sources)
    result = compile_artifacts(compilation, targets)
    try:
        write_result(result, plan, sources=(path,), force=force)
    except OutputError as exc:
        exit_output_error(exc)
    if not quiet:
        _print_summary(result, out)
    total = sum(result.timings.values())
    click.echo(f"built {len(result.artifacts)} artifacts into {out}/ in {total * 1000:.0f} ms")


def _print_summary(result: BuildResult, out: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=True)
    table = Table(title="artifacts", show_edge=False)
    table.add_column("target")
    table.add_column("files", justify="right")
    for name, count in result.per_target.items():
        table.add_row(name, str(count))
    console.print(table)
    stages = Table(title="time per stage", show_edge=False)
    stages.add_column("stage")
    stages.add_column("ms", justify="right")
    for stage, seconds in result.timings.items():
        stages.add_row(stage, f"{seconds * 1000:.1f}")
    console.print(stages)
    if result.enforcement:
        rules = Table(title="where each access rule is enforced", show_edge=False)
        rules.add_column("rule")
        rules.add_column("target")
        rules.add_column("enforced by")
        for e in result.enforcement:
            rules.add_row(escape(e.rule), escape(e.target), escape(e.where))
        console.print(rules)
    for note in result.notes:
        console.print(f"note: {escape(note)}")
