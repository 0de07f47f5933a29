"""`mcpdsl simulate DIR --load TRACE [--compare OLD NEW] [--fail-on EXPR ...]`.

Replays a load trace (and the grid's carbon intensity) through a policy tree:
the HPA/KEDA behaviour the build emits, pod start-up, node provisioning,
scheduling and quotas (docs/simulate.md).  `--compare OLD NEW` runs the same
trace through two trees (directories or `git:REV[:DIR]`, as `mcpdsl diff`).

`--fail-on` grammar: `FIGURE OP VALUE` where FIGURE is a total (`availability`,
`carbon` = carbon_g, `cost` = cost_usd, `energy` = energy_kwh, `requests`,
`served`, `renewable`, `carbon_per_1k`, `energy_vs_baseline`), OP is one of
`<`, `<=`, `>`, `>=`, and VALUE is a number, a percentage (`99.9%` = 0.999) or,
with `--compare`, a relative change (`+5%`: NEW more than 5 % above OLD).

Exit codes: 0 ok; 1 a `--fail-on` threshold breached or the simulation has an
error; 2 usage or unreadable input.
"""

from __future__ import annotations

import json
import re
import sys
from contextlib import ExitStack
from typing import Any

import click

from mcpdsl.cli.common import emit_diagnostics, fail
from mcpdsl.cli.exit import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE

ALIASES = {
    "availability": "availability",
    "carbon": "carbon_g",
    "cost": "cost_usd",
    "energy": "energy_kwh",
    "requests": "requests",
    "served": "served",
    "renewable": "renewable_share",
    "carbon_per_1k": "carbon_g_per_1k_requests",
    "energy_vs_baseline": "energy_vs_baseline",
}
_EXPR = re.compile(r"^\s*([a-z_0-9]+)\s*(<=|>=|<|>)\s*([+-]?)(\d+(?:\.\d+)?)(%?)\s*$")


def parse_fail_on(text: str) -> tuple[str, str, float, bool]:
    """(total key, op, value, relative) or ValueError with the reason."""
    found = _EXPR.match(text)
    if not found:
        raise ValueError(f"`{text}`: expected FIGURE OP VALUE, e.g. `availability<99.9%`")
    name, op, sign, number, percent = found.groups()
    if name not in ALIASES:
        raise ValueError(f"`{name}` is not a figure (one of {', '.join(sorted(ALIASES))})")
    value = float(number) / (100 if percent else 1)
    relative = bool(sign)
    if relative:
        value = -value if sign == "-" else value
    return ALIASES[name], op, value, relative


def breached(op: str, found: float, limit: float) -> bool:
    return {
        "<": found < limit,
        "<=": found <= limit,
        ">": found > limit,
        ">=": found >= limit,
    }[op]


def check_fail_on(
    exprs: tuple[str, ...], new: dict[str, Any], old: dict[str, Any] | None
) -> list[str]:
    """The breached expressions, each with the value that breached it."""
    out = []
    for text in exprs:
        key, op, limit, relative = parse_fail_on(text)
        value = new.get(key)
        if value is None:
            continue
        if relative:
            base = (old or {}).get(key)
            if not base:
                continue
            change = value / base - 1
            if breached(op, change, limit):
                out.append(f"{text.strip()}: {key} changed by {change:+.2%}")
        elif breached(op, value, limit):
            out.append(f"{text.strip()}: {key} is {value:g}")
    return out


def _simulate(path: str, load: str, opts: dict[str, Any]) -> dict[str, Any]:
    from mcpdsl.cli.common import compile_or_exit
    from mcpdsl.simulate import run

    compilation = compile_or_exit(path)
    if compilation.project is None:
        emit_diagnostics([d for d in compilation.diagnostics if d.is_error], compilation.sources)
        sys.exit(EXIT_USAGE)
    outcome = run(compilation.project, load, policy=path, **opts)
    for source in outcome.sources:
        compilation.sources.add(source)
    if outcome.diagnostics:  # on stderr: stdout holds the report (json, html, markdown)
        from mcpdsl.diagnostics.render import render_human

        click.echo(render_human(outcome.diagnostics, compilation.sources), err=True, nl=False)
    if outcome.result is None:
        sys.exit(EXIT_USAGE)
    return outcome.result.to_data()


def _duration(text: str) -> int:
    found = re.fullmatch(r"\s*(\d+)\s*(s|m|h)?\s*", text)
    if not found:
        fail(f"bad --step `{text[:40]}`: expected e.g. `15s`, `1m`")
    value = int(found.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[found.group(2)]
    if not 1 <= value <= 3600:
        fail(f"--step {text} is not between 1s and 1h")
    return value


@click.command("simulate")
@click.argument("path", required=False)
@click.option("--load", "load", required=True, help="Load trace (CSV or JSON).")
@click.option("--intensity", default=None, help="Hourly carbon-intensity forecast.")
@click.option("--from", "start", default=None, help="Start: seconds or an ISO instant.")
@click.option("--to", "end", default=None, help="End: seconds or an ISO instant.")
@click.option("--step", default="15s", show_default=True)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--region", default=None, help="Region whose cluster is simulated.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("text", "json", "html", "markdown")),
    default="text",
    show_default=True,
)
@click.option("--out", default=None, help="Write the output to this file.")
@click.option("--compare", nargs=2, default=None, help="OLD NEW: two trees, the same trace.")
@click.option("--fail-on", "fail_on", multiple=True, help="e.g. `availability<99.9%`.")
def simulate_command(
    path: str | None,
    load: str,
    intensity: str | None,
    start: str | None,
    end: str | None,
    step: str,
    seed: int,
    region: str | None,
    fmt: str,
    out: str | None,
    compare: tuple[str, str] | None,
    fail_on: tuple[str, ...],
) -> None:
    """Replay load and carbon through the policy: replicas, nodes, cost, energy, carbon."""
    for expr in fail_on:
        try:
            parse_fail_on(expr)
        except ValueError as exc:
            fail(str(exc))
    opts = {
        "step": _duration(step),
        "start": start,
        "end": end,
        "seed": seed,
        "region": region,
        "intensity": intensity,
    }
    if compare is None and path is None:
        fail("give DIR or --compare OLD NEW")
    if compare is not None:
        from mcpdsl.cli.diff_cmd import SideError, checkout

        datas = []
        with ExitStack() as stack:
            for spec, other in ((compare[0], compare[1]), (compare[1], compare[0])):
                try:
                    root = checkout(spec, stack, other)
                except SideError as exc:
                    fail(str(exc))
                data = _simulate(str(root), load, opts)
                data["policy"] = spec
                datas.append(data)
        old, new = datas
        text = render_compare(old, new, "markdown" if fmt == "markdown" else fmt)
        _write(text, out)
        rel = check_fail_on(fail_on, new["figures"]["totals"], old["figures"]["totals"])
        _report(rel)
        sys.exit(EXIT_FINDINGS if rel else EXIT_OK)
    assert path is not None
    data = _simulate(path, load, opts)
    if fmt == "json":
        text = json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n"
    elif fmt == "html":
        try:
            from mcpdsl.simulate.report import render_html  # type: ignore[import-not-found]
        except ImportError:
            fail("the HTML report is not available in this build (mcpdsl.simulate.report)")
        text = render_html(data)
    else:
        text = render_text(data) if fmt == "text" else render_markdown(data)
    _write(text, out)
    breaches = check_fail_on(fail_on, data["figures"]["totals"], None)
    _report(breaches)
    sys.exit(EXIT_FINDINGS if breaches else EXIT_OK)


def _report(breaches: list[str]) -> None:
    for b in breaches:
        click.echo(f"fail-on: {b}", err=True)


def _write(text: str, out: str | None) -> None:
    """stdout, or `--out FILE` written whole (temporary file, then rename): never partial."""
    if out is None:
        click.echo(text, nl=False)
        return
    import os
    import tempfile
    from pathlib import Path

    target = Path(out)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".simulate-", dir=target.parent or Path("."))
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
        os.replace(tmp, target)
    except OSError as exc:
        fail(f"cannot write `{out}`: {exc.strerror or exc}")


# ------------------------------------------------------------------ text


def _fmt(value: Any, percent: bool = False) -> str:
    if value is None:
        return "–"
    if percent:
        return f"{value * 100:.2f}%"
    if isinstance(value, float) and abs(value) >= 1000:
        return f"{value:,.0f}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


SERVICE_COLUMNS = (
    ("scale_up_s", "scale-up s", False),
    ("predict_mape", "MAPE", True),
    ("predict_within_10pct", "±10%", True),
    ("utilisation_requested", "req/pool", True),
    ("utilisation_used", "used/req", True),
    ("availability", "avail.", True),
    ("slo_violations", "SLO viol.", False),
    ("max_replicas", "max repl.", False),
)
TOTALS = (
    ("requests", "requests", False),
    ("availability", "availability", True),
    ("cost_usd", "cost USD", False),
    ("energy_kwh", "energy kWh", False),
    ("carbon_g", "carbon g", False),
    ("carbon_g_per_1k_requests", "g per 1k requests", False),
    ("renewable_share", "renewable share", True),
    ("energy_vs_baseline", "energy vs baseline", True),
)


def render_text(data: dict[str, Any]) -> str:
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    buffer = StringIO()
    console = Console(file=buffer, width=120, color_system=None, force_terminal=False)
    fig = data["figures"]
    console.print(
        f"simulated {data['policy']} with {data['trace']}: {data['steps']} steps of "
        f"{data['step_s']}s from {data['start']} in {data.get('region', '?')}"
    )
    table = Table(title="services")
    table.add_column("service")
    for _, title, _p in SERVICE_COLUMNS:
        table.add_column(title, justify="right")
    for name, f in sorted(fig["services"].items()):
        table.add_row(name, *(_fmt(f.get(k), p) for k, _, p in SERVICE_COLUMNS))
    console.print(table)
    pools = Table(title="pools")
    for col in ("pool", "utilisation", "node hours", "cost USD", "energy kWh"):
        pools.add_column(col, justify="right" if col != "pool" else "left")
    for name, f in sorted(fig["pools"].items()):
        pools.add_row(
            name,
            _fmt(f["utilisation"], True),
            _fmt(f["node_hours"]),
            _fmt(f["cost_usd"]),
            _fmt(f["energy_kwh"]),
        )
    console.print(pools)
    totals = Table(title="totals")
    totals.add_column("figure")
    totals.add_column("value", justify="right")
    for key, title, p in TOTALS:
        totals.add_row(title, _fmt(fig["totals"].get(key), p))
    console.print(totals)
    return buffer.getvalue()


def render_markdown(data: dict[str, Any]) -> str:
    fig = data["figures"]["totals"]
    rows = [f"| {t} | {_fmt(fig.get(k), p)} |" for k, t, p in TOTALS]
    return "| figure | value |\n| --- | ---: |\n" + "\n".join(rows) + "\n"


def render_compare(old: dict[str, Any], new: dict[str, Any], fmt: str) -> str:
    a, b = old["figures"]["totals"], new["figures"]["totals"]
    if fmt == "json":
        return json.dumps({"old": old["figures"], "new": new["figures"]}, sort_keys=True) + "\n"
    lines = []
    for key, title, p in TOTALS:
        x, y = a.get(key), b.get(key)
        change = f"{y / x - 1:+.2%}" if x and y is not None else "–"
        lines.append((title, _fmt(x, p), _fmt(y, p), change))
    if fmt == "markdown":
        head = (
            f"### mcpdsl simulate: `{old['policy']}` → `{new['policy']}` ({new['trace']})\n\n"
            "| figure | old | new | change |\n| --- | ---: | ---: | ---: |\n"
        )
        body = "\n".join(f"| {t} | {x} | {y} | {c} |" for t, x, y, c in lines)
        svc = ["", "| service | availability old | new | max replicas old | new |",
               "| --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
        for name in sorted(new["figures"]["services"]):
            o = old["figures"]["services"].get(name, {})
            n = new["figures"]["services"][name]
            svc.append(
                f"| {name} | {_fmt(o.get('availability'), True)} | "
                f"{_fmt(n.get('availability'), True)} | {_fmt(o.get('max_replicas'))} | "
                f"{_fmt(n.get('max_replicas'))} |"
            )
        return head + body + "\n" + "\n".join(svc) + "\n"
    width = max(len(t) for t, *_ in lines)
    out = [f"{'figure'.ljust(width)}  {'old':>14}  {'new':>14}  {'change':>9}"]
    out += [f"{t.ljust(width)}  {x:>14}  {y:>14}  {c:>9}" for t, x, y, c in lines]
    return "\n".join(out) + "\n"
