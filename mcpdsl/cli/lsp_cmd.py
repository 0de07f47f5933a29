"""`mcpdsl lsp`: the language server for editors, over stdio."""

from __future__ import annotations

import click


@click.command("lsp")
@click.option("--stdio", is_flag=True, help="Talk over stdin/stdout (the default and only mode).")
def lsp_command(stdio: bool) -> None:
    """Run the language server (diagnostics, hover, navigation, completion, formatting)."""
    from mcpdsl.lsp.server import build_server

    build_server().start_io()
