"""`mcpdsl build DIR [--out build] [--force] [--target ...] [--no-analyze] [--strict] [--format F]`.

The z3 analyses of `check` run first and their errors stop the build
(`--no-analyze` skips them); the output directory obeys `mcpdsl.outdir`.

Exit status follows the CLI contract: 0 built (warnings allowed), 1 findings
(the tree has errors, or `--strict` found a clause the targets do not enforce
as written; nothing is written in either case), 2 usage or unreadable input
(or an output directory that cannot be written).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from mcpdsl.cli.exit import EXIT_FINDINGS
from mcpdsl.compile import TARGETS

if TYPE_CHECKING:
    from mcpdsl.builder.artifacts import BuildResult
    from mcpdsl.diagnostics import Diagnostic

FORMATS = ("text", "json", "sarif")
#: Enforcement records are the rows of the table, not one diagnostic block each.
TABLE_CODE = "B0120"


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
@click.option(
    "--quiet",
    "-q",
    is_flag=True,
    help="Hide information (the tables and info diagnostics); warnings and errors stay.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="A clause a target does not enforce as written (dropped, narrowed, not enforced) "
    "is an error: nothing is written and the exit status is 1.",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
def build_command(
    path: str,
    out: str,
    force: bool,
    target: str | None,
    analyze: bool,
    quiet: bool,
    strict: bool,
    fmt: str,
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
    compilation = compile_or_exit(path, fmt, analyze=analyze)
    if compilation.has_errors:
        emit_diagnostics(_shown(compilation.diagnostics, quiet), compilation.sources, fmt)
        _status(fmt, f"build failed; `{out}` left untouched")
        sys.exit(EXIT_FINDINGS)
    result = compile_artifacts(compilation, targets, strict=strict)
    # analysis infos (overlaps, witnesses) are `check`'s to print
    front = [d for d in compilation.diagnostics if d.severity is not Severity.INFO]
    everything = [*front, *result.build_diagnostics]
    if fmt != "text":
        emit_diagnostics(_shown(everything, quiet), compilation.sources, fmt)
    else:
        listed = [d for d in _shown(everything, quiet) if d.code != TABLE_CODE]
        if listed:
            emit_diagnostics(listed, compilation.sources, summary=False)
    if result.has_errors:
        if fmt == "text":
            _summary_line(everything)
        why = "--strict" if strict else "a `strict` policy"
        _status(fmt, f"build failed ({why}); `{out}` left untouched")
        sys.exit(EXIT_FINDINGS)
    try:
        write_result(result, plan, sources=(path,), force=force)
    except OutputError as exc:
        exit_output_error(exc)
    if fmt == "text":
        if not quiet:
            _print_summary(result)
        if any(d.code != TABLE_CODE for d in everything):
            _summary_line(everything)
    total = sum(result.timings.values())
    _status(fmt, f"built {len(result.artifacts)} artifacts into {out}/ in {total * 1000:.0f} ms")


def _shown(diagnostics: list[Diagnostic], quiet: bool) -> list[Diagnostic]:
    """`--quiet` hides information, never a warning or an error."""
    from mcpdsl.diagnostics import Severity

    return [d for d in diagnostics if not (quiet and d.severity is Severity.INFO)]


def _summary_line(diagnostics: list[Diagnostic]) -> None:
    from mcpdsl.diagnostics.render import summary_line

    shown = [d for d in diagnostics if d.code != TABLE_CODE]
    click.echo(summary_line(shown))


def _status(fmt: str, text: str) -> None:
    """The closing line: on stdout for people, on stderr when stdout is JSON or SARIF."""
    click.echo(text, err=fmt != "text")


def _print_summary(result: BuildResult) -> None:
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
        rules.add_column("status")
        rules.add_column("enforced by")
        for e in result.enforcement:
            rules.add_row(escape(e.rule), escape(e.target), e.status.value, escape(e.where))
        console.print(rules)
