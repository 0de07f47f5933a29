"""Rego benchmark: the generated Rego against hand-written idiomatic Rego, both in real OPA.

    python benchmarks/rego.py [--quick]

For 1,000 and 10,000 rules it builds the engine benchmark's tree
(`benchmarks/engine.py`: 100 services, `allow|deny service A -> service B on
GET, POST "/vN/items/**" when ...`, two risk terms, one `require`), compiles it
with the OPA target, and writes the same rules by hand the way a Rego author
would: one rule body per rule, equality on principal, resource and action at
the top, `glob.match` for the path, plain two-valued conditions, the risk as a
sum of weights.  Both are loaded into the real OPA engine in-process
(`opa-golib-python-bindings`, one engine each in a process of its own, its
prepared-query cache) and
asked for a decision document (`data.mcp.main.decision` and
`data.hand.authz.decision`) on the same requests, request by request in turn
(every evaluator decides a request before the next one), so that bursts of
load on the shared machine hit all of them alike; p50/p99 are over all samples.  The call includes JSON encoding of the
input, the same for both.

Two hand-written variants are measured: `input.action in {"GET", "POST"}`
(what most authors write) and one body per action with `input.action ==
"GET"` (what OPA's rule indexer sees best).  The ratio is against the faster
of the two.  Before timing, every request's decision is compared between the
generated and the hand-written Rego (allowed, rules, obligations, risk,
default_applied): a benchmark of policies that decide differently would be
meaningless.  Prints a markdown table and writes it into docs/performance.md
between the rego markers (not with --quick).
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import engine as bench  # noqa: E402  (the engine benchmark's tree, requests and timer)

SIZES = (1000, 10000)
BEGIN = "<!-- rego-benchmark:begin -->"
END = "<!-- rego-benchmark:end -->"
HAND_PACKAGE = "hand.authz"
COMPARED = ("allowed", "rules", "obligations", "risk", "default_applied")

# ------------------------------------------------------------------ hand-written Rego


def _hand_condition(s: dict[str, Any]) -> list[str]:
    """The rule's `when` in plain Rego (the benchmark's four condition shapes)."""
    tenant = f'input.context.tenant == "{s["tenant"]}"'
    return [
        ["input.request.auth.mfa == true", tenant, "risk < 0.7"],
        ['input.context.tier in {"gold", "platinum"}', 'input.context.region != "cn"'],
        ["score_or_mfa"],
        ["not input.context.blocked", tenant],
    ][s["kind"]]


def hand_written(n: int, *, per_action: bool) -> str:
    """The benchmark's rules as a Rego author would write them (one package, no library).

    `per_action` writes one body per action with `input.action == "X"`
    instead of one body with `input.action in {...}`.
    """
    out = [
        f"package {HAND_PACKAGE}",
        "",
        "import rego.v1",
        "",
    ]
    for i in range(n):
        s = bench.rule_shape(i)
        head = f'{"deny" if s["deny"] else "allow"}_fired contains "access/r{i}" if {{'
        match = [
            'input.principal.type == "service"',
            f'input.principal.id == "{s["src"]}"',
            'input.resource.type == "service"',
            f'input.resource.id == "{s["dst"]}"',
        ]
        rest = [f'glob.match("{s["path"]}/**", ["/"], input.request.path)', *_hand_condition(s)]
        actions = (
            [[f'input.action == "{a}"'] for a in ("GET", "POST")]
            if per_action
            else [['input.action in {"GET", "POST"}']]
        )
        for action in actions:
            out += [head, *(f"\t{line}" for line in [*match, *action, *rest]), "}", ""]
    out += [
        "score_or_mfa if input.context.score >= 0.5",
        "",
        "score_or_mfa if input.request.auth.mfa == true",
        "",
        'risk_weights["unmanaged device"] := 0.4 if not input.context.device.managed',
        "",
        'risk_weights["failed logins"] := 0.3 if input.context.failed_logins > 5',
        "",
        "risk := min([sum([w | some w in risk_weights]), 1])",
        "",
        'obligations contains "mfa" if risk >= 0.5',
        "",
        'outcome := {"allowed": false, "rules": deny_fired, "default_applied": false} if {',
        "\tcount(deny_fired) > 0",
        '} else := {"allowed": true, "rules": allow_fired, "default_applied": false} if {',
        "\tcount(allow_fired) > 0",
        '} else := {"allowed": false, "rules": set(), "default_applied": true}',
        "",
        "decision := {",
        '\t"allowed": outcome.allowed,',
        '\t"obligations": [o | outcome.allowed; some o in sort(obligations)],',
        '\t"risk": risk,',
        '\t"rules": sort(outcome.rules),',
        '\t"default_applied": outcome.default_applied,',
        "}",
        "",
    ]
    return "\n".join(out)


# ------------------------------------------------------------------ OPA


class OpaProcess:
    """One OPA engine in a child process of its own, asked over a pipe.

    Several engines of 10,000 rules in one process share one Go heap of
    gigabytes, and Go's collector then slows every evaluation of every engine
    (p50 of the same Rego went from 0.8 ms to 3.4 ms when the two hand-written
    engines were loaded beside it).  One process per engine keeps each
    evaluation as it would be in a server; the child times the call itself,
    so the pipe is not in the numbers.
    """

    def __init__(self, modules: dict[str, str], data: dict[str, Any] | None, path: str) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("fork")  # the parent never starts Go itself
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, modules, data, path), daemon=True)
        self._proc.start()
        child.close()
        self._conn.recv()  # loaded

    def decide(self, request: dict[str, Any]) -> Any:
        self._conn.send(("decide", request))
        return self._conn.recv()

    def timed(self, request: dict[str, Any]) -> int:
        """Nanoseconds of one evaluation of `request`, measured in the child."""
        self._conn.send(("time", request))
        return int(self._conn.recv())

    def close(self) -> None:
        self._conn.send(("stop", None))
        self._proc.join(30)


def _serve(conn: Any, modules: dict[str, str], data: dict[str, Any] | None, path: str) -> None:
    from opa_bindings import OpaEngine

    opa = OpaEngine()
    for name, text in sorted(modules.items()):
        opa.add_policy(name, text)
    if data:
        opa.add_data(data)
    conn.send("loaded")
    clock = time.perf_counter_ns
    gc.disable()
    while True:
        op, request = conn.recv()
        if op == "stop":
            return
        if op == "decide":
            conn.send(opa.eval_document(path, request))
        else:
            t0 = clock()
            opa.eval_document(path, request)
            conn.send(clock() - t0)


def disagreements(left: OpaProcess, right: OpaProcess, requests: list[dict[str, Any]]) -> int:
    """How many requests the two decide differently (on the compared fields)."""
    bad = 0
    for req in requests:
        a, b = left.decide(req), right.decide(req)
        bad += any(a[k] != b[k] for k in COMPARED)
    return bad


def interleaved(
    evaluators: dict[str, OpaProcess],
    requests: list[dict[str, Any]],
    *,
    rounds: int,
    budget: float,
) -> dict[str, dict[str, float]]:
    """p50/p99 (us) of each evaluator, timed request by request in turn.

    Each request is decided by every evaluator one after the other, so a burst
    of load on the shared machine hits all of them alike; `rounds` passes over
    the requests, stopping early once `budget` seconds are spent (the slowest
    evaluator decides how many requests fit).
    """
    clock = time.perf_counter_ns
    for proc in evaluators.values():  # warm-up: prepared queries, caches
        for req in requests[:20]:
            proc.timed(req)
    samples: dict[str, list[int]] = {name: [] for name in evaluators}
    deadline = clock() + int(budget * 1e9)
    for _ in range(rounds):
        for req in requests:
            for name, proc in evaluators.items():
                samples[name].append(proc.timed(req))
            if clock() > deadline and len(samples[name]) >= 50:
                break
        else:
            continue
        break
    out = {}
    for name, times in samples.items():
        times.sort()
        out[name] = {
            "p50": times[len(times) // 2] / 1000,
            "p99": times[min(len(times) - 1, int(len(times) * 0.99))] / 1000,
            "samples": len(times),
        }
    return out


def rows_for(n: int, quick: bool) -> tuple[list[tuple[str, ...]], list[str]]:
    from mcpdsl import Engine

    with tempfile.TemporaryDirectory() as tmp:
        bench.write_tree(Path(tmp), n)
        engine = Engine.load(tmp)
    modules, data = bench.rego_artifacts(engine)
    hand = HAND_PACKAGE + ".decision"
    evaluators = {
        "generated (mcpdsl)": OpaProcess(modules, data, "mcp.main.decision"),
        "hand-written, `in {...}`": OpaProcess(
            {"hand.rego": hand_written(n, per_action=False)}, None, hand
        ),
        "hand-written, one body per action": OpaProcess(
            {"hand.rego": hand_written(n, per_action=True)}, None, hand
        ),
    }
    requests = bench.mixes(n, 300 if quick else 1000)
    notes: list[str] = []
    check = requests["spread"][: 100 if quick else 300] + requests["hot"][:50]
    generated = evaluators["generated (mcpdsl)"]
    for name, proc in evaluators.items():
        if proc is not generated:
            bad = disagreements(generated, proc, check)
            notes.append(
                f"{n:,} rules: {name} and the generated Rego decide "
                f"{len(check) - bad}/{len(check)} requests identically"
            )
    mine = 0
    for req in check:
        theirs, ours = generated.decide(req), engine.authorize(req).as_dict()
        mine += all(ours[k] == theirs[k] for k in ("allowed", "rules", "obligations"))
    notes.append(f"{n:,} rules: the engine and the generated Rego agree on {mine}/{len(check)}")
    results = {
        mix: interleaved(evaluators, reqs, rounds=2 if quick else 3, budget=15 if quick else 40)
        for mix, reqs in requests.items()
    }
    for proc in evaluators.values():
        proc.close()
    rows: list[tuple[str, ...]] = []
    for mix in requests:
        fastest_hand = min(
            results[mix][name]["p50"] for name in evaluators if name.startswith("hand")
        )
        for name in evaluators:
            r = results[mix][name]
            rows.append(
                (
                    f"{n:,}",
                    name,
                    mix,
                    f"{r['p50']:.1f}",
                    f"{r['p99']:.1f}",
                    f"{r['samples']:,}",
                    f"{r['p50'] / fastest_hand:.2f}x",
                )
            )
    return rows, notes


def main() -> None:
    quick = "--quick" in sys.argv
    try:
        import opa_bindings  # noqa: F401
    except ImportError:
        print("the OPA engine (opa-golib-python-bindings) is not installed", file=sys.stderr)
        raise SystemExit(1) from None
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    for n in SIZES:
        table, why = rows_for(n, quick)
        rows += table
        notes += why
        print(f"done {n}", file=sys.stderr, flush=True)
    load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    text = "\n".join(
        [
            f"Measured by `python benchmarks/rego.py` on {os.cpu_count()} cores "
            f"(load average {load_avg:.1f} at the end), Python {sys.version.split()[0]}, "
            "OPA in-process (opa-golib-python-bindings).",
            "",
            "| rules | Rego | requests | p50 (µs) | p99 (µs) | samples | p50 / fastest hand-written |",
            "| ---: | --- | --- | ---: | ---: | ---: | ---: |",
            *["| " + " | ".join(r) + " |" for r in rows],
            "",
            *[f"- {note}" for note in notes],
        ]
    )
    print(text)
    if not quick:
        bench.write_docs(text, BEGIN, END, "Rego")


if __name__ == "__main__":
    main()
