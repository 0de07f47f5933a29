"""`mcpdsl watch DIR [--out build] [--debounce MS]`: rebuild on change, keep the last good build."""

from __future__ import annotations

import contextlib

import click

from mcpdsl.cli.build import FORCE_HELP, _targets


@click.command("watch")
@click.argument("path", type=click.Path(exists=True, path_type=str))
@click.option(
    "--out",
    default="build",
    show_default=True,
    help="Output directory, replaced atomically: absent, empty or an earlier build.",
)
@click.option("--force", is_flag=True, help=FORCE_HELP)
@click.option(
    "--debounce",
    "debounce",
    default=50,
    show_default=True,
    type=click.IntRange(1, 60_000),
    help="Milliseconds to wait for more changes before rebuilding.",
)
@click.option("--target", "target", default=None, help="Comma-separated targets (default: all).")
@click.option(
    "--poll", is_flag=True, help="Poll the file system instead of using OS notifications."
)
def watch_command(
    path: str, out: str, force: bool, debounce: int, target: str | None, poll: bool
) -> None:
    """Re-run check + build whenever a .mcp file changes (Ctrl-C to stop)."""
    from mcpdsl.builder.watch import Watcher
    from mcpdsl.cli.common import output_or_exit, use_colour

    targets = _targets(target)
    output_or_exit(out, sources=(path,), force=force)  # refuse before watching anything
    watcher = Watcher(path, out, targets=targets, echo=click.echo, colour=use_colour(), force=force)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a watch ends: exit 0
        watcher.run(debounce_ms=debounce, force_polling=poll or None)
    click.echo("stopped")
