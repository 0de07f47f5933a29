"""`mcpdsl report DIR [--out report] [--force] [--embodied]`: the sustainability report.

Writes `OUT/sustainability.html` (self-contained, SVG charts), its Markdown twin
`OUT/sustainability.md` and a `manifest.json` marking the directory as a report.
`OUT` (default `report`, next to a build rather than inside it: extra files in a
signed build break `verify`, and the next build would delete them) is replaced
atomically under the output-directory policy of `mcpdsl.outdir`, like a build.
Exit 0 when the plan has no error, 1 when it has (the report is still written: a
budget overrun is exactly what it should show), 2 for unusable input or output.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mcpdsl.cli.build import FORCE_HELP
from mcpdsl.cli.exit import EXIT_FINDINGS, EXIT_OK

HTML = "sustainability.html"
MARKDOWN = "sustainability.md"


@click.command("report")
@click.argument("path", type=click.Path(path_type=str))
@click.option(
    "--out",
    default="report",
    show_default=True,
    help="Output directory, replaced atomically: absent, empty or an earlier report.",
)
@click.option("--force", is_flag=True, help=FORCE_HELP)
@click.option(
    "--embodied", is_flag=True, help="Add embodied (manufacturing) emissions, CCF method."
)
def report_command(path: str, out: str, force: bool, embodied: bool) -> None:
    """Write the sustainability report (HTML with SVG charts, and Markdown)."""
    from mcpdsl.builder import manifest, write_atomically
    from mcpdsl.cli.common import emit_diagnostics, exit_output_error, output_or_exit
    from mcpdsl.cli.plan_cmd import compile_and_plan
    from mcpdsl.compile import Artifact
    from mcpdsl.optimize.report import render
    from mcpdsl.outdir import REPORT_FORMAT, OutputError

    plan_out = output_or_exit(out, sources=(path,), force=force, kind=REPORT_FORMAT)
    compilation, plan = compile_and_plan(path, embodied=embodied)
    assert compilation.project is not None
    title = Path(path).resolve().name or str(path)
    report = render(compilation.project, plan, title)
    artifacts = [
        Artifact(HTML, report.html.encode("utf-8")),
        Artifact(MARKDOWN, report.markdown.encode("utf-8")),
    ]
    artifacts.append(manifest(artifacts, REPORT_FORMAT))
    try:
        write_atomically(plan_out, artifacts, sources=(path,), force=force)
    except OutputError as exc:
        exit_output_error(exc)
    diagnostics = [*compilation.diagnostics, *plan.diagnostics]
    if diagnostics:
        emit_diagnostics(diagnostics, compilation.sources)
    folder = Path(out)
    click.echo(f"wrote {folder / HTML} and {folder / MARKDOWN}")
    sys.exit(EXIT_FINDINGS if any(d.is_error for d in diagnostics) else EXIT_OK)
