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

from mcpdsl._gc import gc_paused
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


#: Command name -> the first paragraph of its help, which `mcpdsl --help` shortens
#: to its one-line summary: listing the commands must not import them all (the
#: target compilers and pydantic among them).  tests/cli/test_startup.py checks
#: that each is the command's own text.
SUMMARIES: dict[str, str] = {
    "check": "Parse, resolve, typecheck and analyse (z3) a policy tree; report every diagnostic.",
    "diff": "Semantic difference of two policy trees: access (with witnesses) and parameters.",
    "build": "Compile a policy tree to Kubernetes, Envoy and OPA artifacts.",
    "keys": "Create signing keys and manage keyrings (rotation, revocation).",
    "sign": "Sign a build: the OPA bundle (ES256 JWT), then manifest.json (Ed25519 + ML-DSA-65).",
    "verify": "Verify a signed build: every artifact hash, both signatures, key validity, "
    "revocation.",
    "watch": "Re-run check + build whenever a .mcp file changes (Ctrl-C to stop).",
    "fmt": "Format policy files (directories are searched for `.mcp` files; `-` is stdin).",
    "test": "Run the `test` blocks of a policy tree against the in-process engine.",
    "eval": "Evaluate one input against a policy tree and print the decision.",
    "plan": "Schedule jobs where and when the grid is cleanest, pack pools, account for carbon.",
    "report": "Write the sustainability report (HTML with SVG charts, and Markdown).",
    "init": "Create a small policy tree with tests in DIRECTORY (default: here).",
    "lsp": "Run the language server (diagnostics, hover, navigation, completion, formatting).",
    "serve": "Serve decisions over gRPC (Envoy ext_authz) and HTTP (OPA Data API) until SIGTERM.",
    "logs": "Decision logs: verify their hash chain.",
    "simulate": "Replay load and carbon through the policy: replicas, nodes, cost, energy, carbon.",
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
        with gc_paused():
            command = getattr(importlib.import_module(f"mcpdsl.cli.{module}"), attribute)
        assert isinstance(command, click.Command) and command.name == cmd_name, cmd_name
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The "Commands" section of `--help`, as click writes it, from `SUMMARIES`.

        A lazy command is listed through a stand-in holding its summary, so that
        `--help` shortens the same text the command would give, without importing it.
        """
        commands: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            if name in SUMMARIES and super().get_command(ctx, name) is None:
                command: click.Command | None = click.Command(name, help=SUMMARIES[name])
            else:
                command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                commands.append((name, command))
        if commands:
            limit = formatter.width - 6 - max(len(name) for name, _ in commands)
            rows = [(name, command.get_short_help_str(limit)) for name, command in commands]
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mcpdsl")
def main() -> None:
    """Policy as code for AI infrastructure: scaling, carbon, zero-trust and integrations."""


def run() -> None:
    """Console-script entry point."""
    main(prog_name="mcpdsl")
