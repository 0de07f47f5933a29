"""`mcpdsl check DIR [--format text|json|sarif] [--explain CODE] [--no-analyze]`."""

from __future__ import annotations

import sys

import click

from mcpdsl.cli.exit import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE

FORMATS = ("text", "json", "sarif")


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
def check_command(path: str | None, fmt: str, explain: str | None, analyze: bool) -> None:
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
            sys.exit(EXIT_USAGE)
        click.echo(text, nl=False)
        return
    if path is None:
        raise click.UsageError("missing argument PATH (a policy directory or file)")
    compilation = compile_or_exit(path, fmt, analyze=analyze)
    emit_diagnostics(compilation.diagnostics, compilation.sources, fmt)
    sys.exit(EXIT_FINDINGS if compilation.has_errors else EXIT_OK)
