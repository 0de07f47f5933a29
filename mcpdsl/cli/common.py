"""Shared CLI plumbing: rendering diagnostics and deciding colour."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from mcpdsl.cli.exit import EXIT_USAGE
from mcpdsl.diagnostics import Diagnostic
from mcpdsl.source import SourceMap

if TYPE_CHECKING:
    from mcpdsl.ir.model import Project
    from mcpdsl.pipeline import Compilation


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


def compile_or_exit(path: str, fmt: str = "text", *, analyze: bool = False) -> Compilation:
    """Run the front end; an unusable path is reported and ends the command with exit 2.

    What a command does with a tree that has errors differs (check reports
    them, build refuses, test treats them as input errors), so that stays with
    the command.
    """
    from mcpdsl.pipeline import InputError, compile_tree

    try:
        return compile_tree(path, analyze=analyze)
    except InputError as exc:
        emit_diagnostics([exc.diagnostic], SourceMap(), fmt, summary=False)
        sys.exit(EXIT_USAGE)


def project_or_exit(path: str) -> Project:
    """For commands that evaluate a tree (test, eval): its errors are input errors, exit 2."""
    compilation = compile_or_exit(path)
    if compilation.project is None:
        emit_diagnostics([d for d in compilation.diagnostics if d.is_error], compilation.sources)
        sys.exit(EXIT_USAGE)
    return compilation.project
