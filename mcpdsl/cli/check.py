"""`mcpdsl check DIR [--format text|json|sarif|github] [--severity L] [--explain CODE] [--no-analyze]`.

`--format github` prints GitHub Actions workflow commands, so findings appear as
annotations on the pull request's diff.  `--severity` is the lowest severity
reported (`info` reports everything); the exit code still depends on errors only.
"""

from __future__ import annotations

import os
import sys

import click

FORMATS = ("text", "json", "sarif", "github")
SEVERITIES = ("error", "warning", "info")


@click.command("check")
@click.argument("path", required=False, type=click.Path(path_type=str))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option("--explain", metavar="CODE", help="Print the long explanation of a diagnostic code.")
@click.option(
    "--analyze/--no-analyze",
    default=True,
    show_default=True,
    help="Run the z3 proofs (dead rules, shadowing, capacity, carbon). "
    "--no-analyze checks syntax, names and types only, for editor-speed feedback.",
)
@click.option(
    "--severity",
    type=click.Choice(SEVERITIES),
    default="info",
    show_default=True,
    help="The lowest severity reported.",
)
def check_command(
    path: str | None, fmt: str, explain: str | None, analyze: bool, severity: str
) -> None:
    """Parse, resolve, typecheck and analyse (z3) a policy tree; report every diagnostic.

    Exit 0 when there is no error (warnings allowed), 1 when there are errors,
    2 for usage errors or unreadable input.
    """
    from mcpdsl.cli.common import compile_or_exit, emit_diagnostics
    from mcpdsl.diagnostics import explain as explain_code

    if explain:
        text = explain_code(explain)
        if text is None:
            click.echo(f"error: unknown diagnostic code `{explain}`", err=True)
            sys.exit(2)
        click.echo(text, nl=False)
        return
    if path is None:
        raise click.UsageError("missing argument PATH (a policy directory or file)")
    compilation = compile_or_exit(path, fmt, analyze=analyze)
    floor = SEVERITIES.index(severity)
    shown = [d for d in compilation.diagnostics if d.severity.rank <= floor]
    base = path if os.path.isdir(path) else os.path.dirname(path)
    emit_diagnostics(shown, compilation.sources, fmt, base=base)
    sys.exit(1 if compilation.has_errors else 0)
