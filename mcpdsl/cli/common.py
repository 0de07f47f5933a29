"""Shared CLI plumbing: rendering diagnostics and deciding colour."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click

from mcpdsl.diagnostics import Diagnostic
from mcpdsl.source import SourceMap


def use_colour(stream: object = None) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    stream = stream or sys.stdout
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def emit_diagnostics(
    diagnostics: Sequence[Diagnostic],
    sources: SourceMap,
    fmt: str = "text",
    *,
    summary: bool = True,
) -> None:
    from mcpdsl import __version__
    from mcpdsl.diagnostics.render import render_human, render_json, render_sarif, summary_line

    if fmt == "json":
        click.echo(render_json(diagnostics), nl=False)
    elif fmt == "sarif":
        click.echo(render_sarif(diagnostics, version=__version__), nl=False)
    else:
        colour = use_colour()
        text = render_human(diagnostics, sources, colour=colour)
        if text:
            # click strips ANSI codes when stdout is not a terminal; FORCE_COLOR
            # asks for them anyway, so say explicitly what was decided.
            click.echo(text, color=colour)
        if summary:
            click.echo(summary_line(diagnostics))
