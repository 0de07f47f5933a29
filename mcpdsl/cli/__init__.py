"""The `mcpdsl` command line: one module per subcommand, registered on one group.

Exit codes (binding): 0 ok, 1 findings / test failures / widened access,
2 usage or unreadable input (named in `mcpdsl.cli.exit`).

Subcommands are registered by module name and imported only when run (or
listed, for `--help` and shell completion): `mcpdsl check` must not pay for
the imports of `build` (the target compilers), `sign` (cryptography) or
`serve` (the server stack) at start-up (docs/performance.md).
"""

from __future__ import annotations

import importlib

import click

from mcpdsl._version import __version__
from mcpdsl.cli.exit import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE

__all__ = ["COMMANDS", "EXIT_FINDINGS", "EXIT_OK", "EXIT_USAGE", "main", "run"]

#: Command name -> (module under `mcpdsl.cli`, attribute); `--help` lists them sorted.
COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("check", "check_command"),
    "diff": ("diff_cmd", "diff_command"),
    "build": ("build", "build_command"),
    "keys": ("keys_cmd", "keys_command"),
    "sign": ("sign_cmd", "sign_command"),
    "verify": ("sign_cmd", "verify_command"),
    "watch": ("watch_cmd", "watch_command"),
    "fmt": ("fmt_cmd", "fmt_command"),
    "test": ("test_cmd", "test_command"),
    "eval": ("eval_cmd", "eval_command"),
    "plan": ("plan_cmd", "plan_command"),
    "report": ("report_cmd", "report_command"),
    "init": ("init_cmd", "init_command"),
    "lsp": ("lsp_cmd", "lsp_command"),
    "serve": ("serve_cmd", "serve_command"),
    "logs": ("logs_cmd", "logs_command"),
    "simulate": ("simulate_cmd", "simulate_command"),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use, by name."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None or cmd_name not in COMMANDS:
            return found
        module, attribute = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(f"mcpdsl.cli.{module}"), attribute)
        assert isinstance(command, click.Command) and command.name == cmd_name, cmd_name
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mcpdsl")
def main() -> None:
    """Policy as code for AI infrastructure: scaling, carbon, zero-trust and integrations."""


def run() -> None:
    """Console-script entry point."""
    main(prog_name="mcpdsl")
