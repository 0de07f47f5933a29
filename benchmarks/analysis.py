"""Analysis benchmark: the z3 analyses of `mcpdsl check`, and `mcpdsl diff`.

    python benchmarks/analysis.py

Prints a markdown table (wall clock on this machine, best of N where noted):

- the analyses of `policies/` (target < 5 s) and `mcpdsl check policies/` as a process;
- a generated policy of 1,000 rules (target < 30 s): 50 services, allows with
  conditions on MFA, tenant and risk, guarding denies (embargo, network,
  admin paths), risk terms and an obligation, plus planted defects (dead,
  redundant, never-effective rules) so that every analysis does real work;
- `diff` of two 1,000-rule versions (target < 30 s): a deny removed, conditions
  narrowed, rules added, a route added, scaling parameters changed.

Candidate pairs come from the rule index, so the solver sees a few thousand
small queries, never all n² pairs.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = [f"svc-{i}" for i in range(50)]


def generate(root: Path, rules: int = 1000, variant: bool = False) -> int:
    """A tree with one policy of `rules` rules; `variant` applies the diff edits."""
    services = "\n".join(
        f'service {s} {{ image "ghcr.io/bench/{s}:1" port 8080 cpu 500m memory 1Gi pool general }}'
        for s in SERVICES
    )
    scales = "\n".join(
        f"scale {s} {{ replicas 2..{6 if not (variant and i < 3) else 8} target cpu 70% }}"
        for i, s in enumerate(SERVICES)
    )
    routes = [f'  route "/v1/{s}/**" -> service {s}' for s in SERVICES[:30]]
    if variant:
        routes.insert(5, '  route "/v2/**" -> service svc-0')
    (root / "platform.mcp").write_text(
        "package bench\n\n"
        + services
        + "\n\n"
        + scales
        + "\n\npool general {\n  node { cpu 16, memory 64Gi }\n  nodes 4..40\n}\n\n"
        + "gateway edge {\n  listen 8443\n"
        + "\n".join(routes)
        + "\n}\n"
    )
    lines = ["package bench", "", "policy mesh {", "  default deny"]
    count = 0
    for r in range(rules):
        src, dst = SERVICES[(r * 7) % 50], SERVICES[(r * 13 + 1) % 50]
        kind = r % 10
        if kind == 0:  # a network guard per destination
            if variant and r in (100, 500):
                continue  # a deny removed
            rule = (
                f'deny any -> service {SERVICES[(r // 10) % 50]} on DELETE "/v{r % 3}/**"\n'
                f'    unless source.ip in cidr "10.{r // 10 % 250}.0.0/16"'
            )
        elif kind == 1:  # an embargo per destination
            countries = '["KP", "IR", "SY"]' if r < 500 else '["CU", "RU"]'
            rule = f"deny any -> service {SERVICES[(r // 10) % 50]} when context.geo in {countries}"
        else:
            risk = f"0.{r % 9 + 1}"
            extra = " and context.device.managed" if variant and r in (202, 404, 606) else ""
            rule = (
                f'allow service {src} -> service {dst} on GET, POST "/v{r % 3}/r{r}/**"\n'
                f'    when request.auth.mfa and context.tenant == "t{r % 20}" and risk < {risk}{extra}'
            )
            if r % 97 == 2:  # planted: redundant with the rule above it
                lines.append(f"  r{r}-copy: {rule}")
                count += 1
            if r % 151 == 3:  # planted: dead
                rule += f' and context.tenant == "t{r % 20 + 1}"'
        lines.append(f"  r{r}: {rule}")
        count += 1
    if variant:
        for extra in range(3):
            lines.append(
                f"  added-{extra}: allow service svc-{extra} -> service svc-{extra + 10} "
                f'on GET "/new/{extra}/**"'
            )
            count += 1
    lines += [
        "  risk {",
        "    0.4 when not context.device.managed",
        "    0.3 when context.failed_logins > 5",
        '    0.3 when context.geo not in ["SE", "NO", "FI", "DK"]',
        "  }",
        "  require mfa when risk >= 0.5",
        "}",
    ]
    (root / "policy.mcp").write_text("\n".join(lines) + "\n")
    return count


def best_of(n: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from mcpdsl.analysis import analyze
    from mcpdsl.analysis.diff import diff
    from mcpdsl.pipeline import compile_tree

    rows: list[tuple[str, float, float | None, str]] = []
    policies = ROOT / "policies"
    c = compile_tree(policies)
    assert c.project is not None
    found: list[int] = []
    stats = {}

    def analyse_policies() -> None:
        a = analyze(c.project, c.sources)
        found[:] = [len(a.diagnostics)]
        stats["q"] = a.encoder.stats.queries if a._encoder else 0

    rows.append(
        (
            "analyses of `policies/`",
            best_of(3, analyse_policies),
            5.0,
            f"{found[0]} findings, {stats['q']} queries",
        )
    )
    cmd = [sys.executable, "-m", "mcpdsl", "check", str(policies)]
    subprocess.run(cmd, capture_output=True, check=False)
    rows.append(
        (
            "`mcpdsl check policies/` wall time (process)",
            best_of(3, lambda: subprocess.run(cmd, capture_output=True, check=False)),
            None,
            "",
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        old, new = Path(tmp, "old"), Path(tmp, "new")
        old.mkdir()
        new.mkdir()
        n = generate(old)
        generate(new, variant=True)
        big = compile_tree(old)
        assert big.project is not None, [d.message for d in big.diagnostics if d.is_error][:3]
        start = time.perf_counter()
        a = analyze(big.project, big.sources)
        seconds = time.perf_counter() - start
        by_code: dict[str, int] = {}
        for d in a.diagnostics:
            by_code[d.code] = by_code.get(d.code, 0) + 1
        detail = ", ".join(f"{k} x{v}" for k, v in sorted(by_code.items()))
        rows.append(
            (
                f"analyses of a generated policy of {n:,} rules",
                seconds,
                30.0,
                f"{a.encoder.stats.queries} queries; {detail}",
            )
        )
        for name, t in a.timings.items():
            rows.append((f"  analysis `{name}`", t, None, ""))
        other = compile_tree(new)
        assert other.project is not None
        start = time.perf_counter()
        result = diff(big.project, other.project)
        seconds = time.perf_counter() - start
        rows.append(
            (
                f"`diff` of two {n:,}-rule versions",
                seconds,
                30.0,
                f"{len(result.widened)} widened, {len(result.narrowed)} narrowed, "
                f"{len(result.routes)} routing, {len(result.parameters)} parameter changes",
            )
        )
    print("| measurement | seconds | target | notes |")
    print("| --- | ---: | ---: | --- |")
    for name, secs, target, notes in rows:
        goal = f"< {target:g} s" if target else ""
        print(f"| {name} | {secs:.3f} | {goal} | {notes} |")


if __name__ == "__main__":
    main()
