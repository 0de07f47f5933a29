"""`mcpdsl check DIR [--format text|json|sarif|github] [--severity L] [--explain CODE] [--no-analyze]`.

`--format github` prints GitHub Actions workflow commands, so findings appear as
annotations on the pull request's diff.  `--severity` is the lowest severity
reported (`info` reports everything); the exit code still depends on errors only.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from mcpdsl.cli.common import echo_error, fail
from mcpdsl.cli.exit import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    from mcpdsl.pipeline import Compilation

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
    from mcpdsl.cli.common import emit_diagnostics
    from mcpdsl.diagnostics import explain as explain_code

    if explain:
        text = explain_code(explain)
        if text is None:
            fail(f"unknown diagnostic code `{explain}`")
        click.echo(text, nl=False)
        return
    if path is None:
        raise click.UsageError("missing argument PATH (a policy directory or file)")
    compilation = _compile(path, fmt, analyze)
    floor = SEVERITIES.index(severity)
    shown = [d for d in compilation.diagnostics if d.severity.rank <= floor]
    base = path if os.path.isdir(path) else os.path.dirname(path)
    emit_diagnostics(shown, compilation.sources, fmt, base=base)
    sys.exit(EXIT_FINDINGS if compilation.has_errors else EXIT_OK)


def _compile(path: str, fmt: str, analyze: bool) -> Compilation:
    """The compilation; an engine crash while confirming a witness ends the run with exit 2.

    Such a crash is a bug in mcpdsl, not a finding about the policy, so nothing
    was judged: it is reported as an internal error (with the request that
    crashed) rather than as a diagnostic or a traceback.
    """
    from mcpdsl.cli.common import compile_or_exit

    if not analyze:
        return compile_or_exit(path, fmt)
    from mcpdsl.analysis import WitnessCrash

    try:
        return compile_or_exit(path, fmt, analyze=True)
    except WitnessCrash as exc:
        echo_error(f"internal error: {exc}")
        click.echo(
            "  = help: this is a bug in mcpdsl, not in the policy; please report it", err=True
        )
        sys.exit(EXIT_USAGE)
