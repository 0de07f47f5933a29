"""The `mcpdsl` command line: one module per subcommand, registered on one group.

Exit codes (binding): 0 ok, 1 findings / test failures / widened access,
2 usage or unreadable input (named in `mcpdsl.cli.exit`).
"""

from __future__ import annotations

import click

from mcpdsl._version import __version__
from mcpdsl.cli.build import build_command
from mcpdsl.cli.check import check_command
from mcpdsl.cli.diff_cmd import diff_command
from mcpdsl.cli.eval_cmd import eval_command
from mcpdsl.cli.exit import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE
from mcpdsl.cli.fmt_cmd import fmt_command
from mcpdsl.cli.init_cmd import init_command
from mcpdsl.cli.keys_cmd import keys_command
from mcpdsl.cli.logs_cmd import logs_command
from mcpdsl.cli.lsp_cmd import lsp_command
from mcpdsl.cli.plan_cmd import plan_command
from mcpdsl.cli.report_cmd import report_command
from mcpdsl.cli.serve_cmd import serve_command
from mcpdsl.cli.sign_cmd import sign_command, verify_command
from mcpdsl.cli.test_cmd import test_command
from mcpdsl.cli.watch_cmd import watch_command

__all__ = ["EXIT_FINDINGS", "EXIT_OK", "EXIT_USAGE", "main", "run"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mcpdsl")
def main() -> None:
    """Policy as code for AI infrastructure: scaling, carbon, zero-trust and integrations."""


main.add_command(check_command)
main.add_command(diff_command)
main.add_command(build_command)
main.add_command(keys_command)
main.add_command(sign_command)
main.add_command(verify_command)
main.add_command(watch_command)
main.add_command(fmt_command)
main.add_command(test_command)
main.add_command(eval_command)
main.add_command(plan_command)
main.add_command(report_command)
main.add_command(init_command)
main.add_command(lsp_command)
main.add_command(serve_command)
main.add_command(logs_command)


def run() -> None:
    """Console-script entry point."""
    main(prog_name="mcpdsl")
