"""`mcpdsl eval DIR --input FILE|- [--kind K] [--explain] [--fail | --fail-defined]`.

One decision, printed as JSON (sorted keys).  `--kind` picks the decision the
engine makes — `authorize` (the default; the input is the canonical request),
`scale`, `route` or `transform` (the input is a small object naming what to
decide, see `docs/engine.md`).

Exit codes follow OPA's `opa eval --fail/--fail-defined`, so that a shell
script or CI step can gate on a decision: without either flag 0 whatever the
decision; `--fail` exits 1 when the decision is *negative* (deny, no route, a
transform error); `--fail-defined` exits 1 when it is *positive* (allow, a
route, a transform output, a replica count).  2 when the tree does not compile
or the input is not usable (not a JSON object; NaN, a number too large or a lone
surrogate inside).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import click

from mcpdsl.cli.common import fail
from mcpdsl.cli.exit import EXIT_FINDINGS

KINDS = ("authorize", "scale", "route", "transform")


def _field(data: dict[str, Any], name: str, kind: type, what: str) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        fail(f"the `{what}` input needs `{name}` ({kind.__name__})")
    return value


def _authorize(engine: Any, data: dict[str, Any], explain: bool) -> tuple[dict[str, Any], bool]:
    decision = engine.authorize(data)
    out = decision.as_dict()
    if explain:
        out["explain"] = decision.explain().splitlines()
    return out, bool(decision.allowed)


def _scale(engine: Any, data: dict[str, Any], explain: bool) -> tuple[dict[str, Any], bool]:
    from mcpdsl.evaluate.scale import ScaleError, parse_at

    service = _field(data, "service", str, "scale")
    replicas = _field(data, "replicas", int, "scale")
    metrics = data.get("metrics", {})
    if not isinstance(metrics, dict):
        fail("the `scale` input's `metrics` must be an object")
    now = None
    if "at" in data:
        try:
            now = parse_at(_field(data, "at", str, "scale"))
        except (ValueError, KeyError) as exc:
            fail(f"`at` is not a moment: {exc}")
    try:
        decision = engine.scale(service, metrics, replicas, now=now)
    except (ScaleError, KeyError, ValueError, TypeError) as exc:
        fail(str(exc.args[0] if exc.args else exc))
    out: dict[str, Any] = {"replicas": decision.desired, "reason": decision.reason}
    if explain:
        out["explain"] = list(decision.steps)
    return out, True


def _route(engine: Any, data: dict[str, Any], explain: bool) -> tuple[dict[str, Any], bool]:
    gateway = _field(data, "gateway", str, "route")
    method = _field(data, "method", str, "route")
    path = _field(data, "path", str, "route")
    headers = data.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        fail("the `route` input's `headers` must map names to strings")
    try:
        decision = engine.route(gateway, method, path, headers)
    except KeyError as exc:
        fail(str(exc.args[0] if exc.args else exc))
    except ValueError as exc:  # a path the gateway rejects (400)
        return {"route": None, "rejected": str(exc)}, False
    if decision is None:
        return {"route": None}, False
    out = {
        "route": {
            "index": decision.index,
            "target": decision.target_qualified or decision.target,
            "kind": decision.target_kind,
            "path": decision.path,
            "timeout_s": None if decision.timeout is None else str(decision.timeout),
            "retries": decision.retries,
        }
    }
    return out, True


def _transform(engine: Any, data: dict[str, Any], explain: bool) -> tuple[dict[str, Any], bool]:
    from mcpdsl.evaluate.transform import TransformError

    integration = _field(data, "integration", str, "transform")
    payload = _field(data, "payload", dict, "transform")
    try:
        return {"output": engine.transform(integration, payload)}, True
    except TransformError as exc:
        return {"error": str(exc), "field": exc.field}, False
    except KeyError as exc:
        fail(str(exc.args[0] if exc.args else exc))


DECIDERS: dict[str, Callable[[Any, dict[str, Any], bool], tuple[dict[str, Any], bool]]] = {
    "authorize": _authorize,
    "scale": _scale,
    "route": _route,
    "transform": _transform,
}


@click.command("eval")
@click.argument("path", type=click.Path(path_type=str))
@click.option(
    "--input",
    "input_file",
    required=True,
    metavar="FILE|-",
    help="The input as JSON (`-` reads standard input).",
)
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    default="authorize",
    show_default=True,
    help="Which decision to make.",
)
@click.option(
    "--explain", is_flag=True, help="Add the reasons: rules matched, conditions that failed."
)
@click.option(
    "--fail",
    "fail_negative",
    is_flag=True,
    help="Exit 1 when the decision is negative (deny, no route).",
)
@click.option(
    "--fail-defined", is_flag=True, help="Exit 1 when the decision is positive (allow, a route)."
)
def eval_command(
    path: str, input_file: str, kind: str, explain: bool, fail_negative: bool, fail_defined: bool
) -> None:
    """Evaluate one input against a policy tree and print the decision."""
    from mcpdsl.cli.common import project_or_exit
    from mcpdsl.engine.engine import Engine
    from mcpdsl.evaluate.project import prepare_project
    from mcpdsl.evaluate.values import Refused, plain_request
    from mcpdsl.reader import MAX_FILE_BYTES as MAX_INPUT_BYTES
    from mcpdsl.reader import NotRegularFile, read_regular

    if fail_negative and fail_defined:
        raise click.UsageError("--fail and --fail-defined exclude each other")
    project = project_or_exit(path)
    try:
        if input_file == "-":  # a pipe is what `-` is for; only its length is bounded
            raw = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
            if len(raw) > MAX_INPUT_BYTES:
                raise NotRegularFile("-", f"larger than {MAX_INPUT_BYTES >> 20} MiB")
        else:  # a FIFO or `/dev/zero` named as a file is refused, not read forever
            raw = read_regular(input_file, MAX_INPUT_BYTES)
        text = raw.decode("utf-8")
        # `authorize` compares numbers exactly, as OPA does: `0.49999999999999999999`
        # read as a float is 0.5, and `score < 0.5` would not fire where the Rego's does
        parse_float = Decimal if kind == "authorize" else float
        data = plain_request(json.loads(text, parse_constant=_no_constant, parse_float=parse_float))
    except OSError as exc:
        fail(f"cannot read `{input_file}`: {exc.strerror}")
    except UnicodeDecodeError as exc:
        fail(f"`{input_file}` is not UTF-8 text: {exc.reason}")
    except json.JSONDecodeError as exc:
        fail(f"`{input_file}` is not JSON: {exc}")
    except RecursionError:
        fail(f"`{input_file}` is nested too deeply")
    except (Refused, ValueError) as exc:  # NaN, 5,000-digit numbers, not an object
        why = str(exc)
        if "integer string conversion" in why:  # Python's own words name an internal knob
            why = "a number in it has more digits than any JSON consumer accepts"
        fail(f"`{input_file}` is not usable input: {why}")
    engine = Engine(prepare_project(project, project.root))
    out, positive = DECIDERS[kind](engine, data, explain)
    click.echo(json.dumps(out, sort_keys=True, indent=2, ensure_ascii=False))
    if (fail_negative and not positive) or (fail_defined and positive):
        sys.exit(EXIT_FINDINGS)


def _no_constant(name: str) -> object:
    """`json.loads` accepts NaN and Infinity, which are not JSON: refuse them."""
    raise ValueError(f"`{name}` is not a JSON number")
