"""The `mcpdsl` command line: one module per subcommand, registered on one group.

Exit codes (binding): 0 ok, 1 findings / test failures / widened access,
2 usage or unreadable input.
"""

from __future__ import annotations

import click

from mcpdsl import __version__
from mcpdsl.cli.build import build_command
from mcpdsl.cli.check import check_command

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mcpdsl")
def main() -> None:
    """Policy as code for AI infrastructure: scaling, carbon, zero-trust and integrations."""


main.add_command(check_command)
main.add_command(build_command)


def run() -> None:
    """Console-script entry point."""
    main(prog_name="mcpdsl")
