"""`mcpdsl eval DIR --input FILE|- [--explain]`: one decision, printed as JSON (sorted keys).

Exit 0 whatever the decision; 2 when the tree does not compile or the input
is not a JSON object, holds NaN, a number too large or a lone surrogate.
"""

from __future__ import annotations

import json
import sys

import click


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
    from mcpdsl.engine.values import Refused, plain_request

    project = project_or_exit(path)
    try:
        if input_file == "-":
            text = sys.stdin.read()
        else:
            with open(input_file, encoding="utf-8") as fh:
                text = fh.read()
        request = json.loads(text, parse_constant=_no_constant)
        request = plain_request(request)
    except OSError as exc:
        click.echo(f"error: cannot read `{input_file}`: {exc.strerror}", err=True)
        sys.exit(2)
    except UnicodeDecodeError as exc:
        click.echo(f"error: `{input_file}` is not UTF-8 text: {exc.reason}", err=True)
        sys.exit(2)
    except json.JSONDecodeError as exc:
        click.echo(f"error: `{input_file}` is not JSON: {exc}", err=True)
        sys.exit(2)
    except RecursionError:
        click.echo(f"error: `{input_file}` is nested too deeply", err=True)
        sys.exit(2)
    except (Refused, ValueError) as exc:  # NaN, 5,000-digit numbers, not an object
        click.echo(f"error: `{input_file}` is not a request: {exc}", err=True)
        sys.exit(2)
    engine = Engine(compile_project(project, project.root))
    decision = engine.authorize(request)
    out = decision.as_dict()
    if explain:
        out["explain"] = decision.explain().splitlines()
    click.echo(json.dumps(out, sort_keys=True, indent=2, ensure_ascii=False))


def _no_constant(name: str) -> object:
    """`json.loads` accepts NaN and Infinity, which are not JSON: refuse them."""
    raise ValueError(f"`{name}` is not a JSON number")
