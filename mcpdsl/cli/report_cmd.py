"""`mcpdsl report DIR [--out build] [--embodied]`: the sustainability report.

Writes `OUT/report/sustainability.html` (self-contained, SVG charts) and its
Markdown twin `OUT/report/sustainability.md`; other files under `OUT` are left
alone.  Exit 0 when the plan has no error, 1 when it has (the report is still
written: a budget overrun is exactly what it should show), 2 for unusable input.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import click

from mcpdsl.cli.exit import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE


@click.command("report")
@click.argument("path", type=click.Path(path_type=str))
@click.option("--out", default="build", show_default=True, help="Output directory.")
@click.option(
    "--embodied", is_flag=True, help="Add embodied (manufacturing) emissions, CCF method."
)
def report_command(path: str, out: str, embodied: bool) -> None:
    """Write the sustainability report (HTML with SVG charts, and Markdown)."""
    from mcpdsl.cli.common import emit_diagnostics
    from mcpdsl.cli.plan_cmd import compile_and_plan
    from mcpdsl.optimize.report import render

    compilation, plan = compile_and_plan(path, embodied=embodied)
    assert compilation.project is not None
    title = Path(path).resolve().name or str(path)
    report = render(compilation.project, plan, title)
    folder = Path(out) / "report"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / "sustainability.html", report.html)
        _write(folder / "sustainability.md", report.markdown)
    except OSError as exc:
        click.echo(f"error: cannot write `{folder}`: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    diagnostics = [*compilation.diagnostics, *plan.diagnostics]
    if diagnostics:
        emit_diagnostics(diagnostics, compilation.sources)
    click.echo(f"wrote {folder / 'sustainability.html'} and {folder / 'sustainability.md'}")
    sys.exit(EXIT_FINDINGS if any(d.is_error for d in diagnostics) else EXIT_OK)


def _write(target: Path, text: str) -> None:
    """Write through a temporary file and a rename, so a reader never sees half a report."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
