"""`mcpdsl build DIR [--out build] [--target kubernetes,envoy,opa]`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from mcpdsl.cli.exit import EXIT_FINDINGS, EXIT_USAGE
from mcpdsl.compile import TARGETS

if TYPE_CHECKING:
    from mcpdsl.builder import BuildResult


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


@click.command("build")
@click.argument("path", type=click.Path(path_type=str))
@click.option(
    "--out", default="build", show_default=True, help="Output directory (replaced atomically)."
)
@click.option("--target", "target", default=None, help="Comma-separated targets (default: all).")
@click.option("--quiet", "-q", is_flag=True, help="Print only diagnostics and the summary line.")
def build_command(path: str, out: str, target: str | None, quiet: bool) -> None:
    """Compile a policy tree to Kubernetes, Envoy and OPA artifacts."""
    from mcpdsl.builder import compile_artifacts, write_result
    from mcpdsl.cli.common import compile_or_exit, emit_diagnostics

    targets = _targets(target)
    compilation = compile_or_exit(path)
    if compilation.has_errors:
        emit_diagnostics(compilation.diagnostics, compilation.sources)
        click.echo(f"build failed; `{out}` left untouched")
        sys.exit(EXIT_FINDINGS)
    if compilation.diagnostics:
        emit_diagnostics(compilation.diagnostics, compilation.sources)
    result = compile_artifacts(compilation, targets)
    try:
        write_result(result, out)
    except OSError as exc:
        click.echo(f"error: cannot write `{out}`: {exc}", err=True)
        sys.exit(EXIT_USAGE)
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
