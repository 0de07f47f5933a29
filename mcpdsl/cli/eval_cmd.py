"""`mcpdsl eval DIR --input FILE|- [--explain]`: one decision, printed as JSON (sorted keys).

Exit 0 whatever the decision; 2 when the tree does not compile or the input
is not a JSON object.
"""

from __future__ import annotations

import json
import sys

import click

from mcpdsl.cli.exit import EXIT_USAGE


@click.command("eval")
@click.argument("path", type=click.Path(path_type=str))
@click.option(
    "--input",
    "input_file",
    required=True,
    metavar="FILE|-",
    help="The request as JSON (`-` reads standard input).",
)
@click.option(
    "--explain", is_flag=True, help="Add the reasons: rules matched, conditions that failed."
)
def eval_command(path: str, input_file: str, explain: bool) -> None:
    """Evaluate one request against a policy tree and print the decision."""
    from mcpdsl.cli.common import project_or_exit
    from mcpdsl.engine.engine import Engine, compile_project

    project = project_or_exit(path)
    try:
        if input_file == "-":
            text = sys.stdin.read()
        else:
            with open(input_file, encoding="utf-8") as fh:
                text = fh.read()
        request = json.loads(text)
    except OSError as exc:
        click.echo(f"error: cannot read `{input_file}`: {exc.strerror}", err=True)
        sys.exit(EXIT_USAGE)
    except json.JSONDecodeError as exc:
        click.echo(f"error: `{input_file}` is not JSON: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    if not isinstance(request, dict):
        click.echo("error: the request must be a JSON object", err=True)
        sys.exit(EXIT_USAGE)
    engine = Engine(compile_project(project, project.root))
    decision = engine.authorize(request)
    out = decision.as_dict()
    if explain:
        out["explain"] = decision.explain().splitlines()
    click.echo(json.dumps(out, sort_keys=True, indent=2, ensure_ascii=False))
