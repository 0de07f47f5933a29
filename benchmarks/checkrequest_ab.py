"""CheckRequest path, two source trees side by side in one process (interleaved).

    python benchmarks/checkrequest_ab.py BASE [--rounds N]

BASE is a git commit of this repository.  Its `mcpdsl` package is copied
(`git archive`) to a temporary directory as `mcpdsl_base` (import lines
rewritten) and loaded next to the working tree's `mcpdsl`; both decide the
same 2,000 CheckRequests of `benchmarks/checkrequest.py` (the working tree's
project, converted to the base's IR classes).  Every request is timed on both
trees back to back, in alternating order, so that both see the same machine
load: on a shared machine this is the only comparison that holds (the whole
script's absolute numbers move by a third with the load).  Before timing, the
two trees must build the same canonical requests and the same decisions.
Prints a markdown table of p50 per call in µs and the ratio.
"""

from __future__ import annotations

import gc
import os
import random
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import checkrequest as bench  # noqa: E402

_IMPORT = re.compile(r"^(\s*(?:from|import) )mcpdsl\b", re.MULTILINE)


def base_package(commit: str, into: Path) -> None:
    """`mcpdsl` at `commit`, as the package `mcpdsl_base` under `into`."""
    data = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "mcpdsl"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    package = into / "mcpdsl_base"
    (into / "mcpdsl").rename(package)
    for path in package.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        path.write_text(_IMPORT.sub(r"\1mcpdsl_base", text), encoding="utf-8")


def _outcome(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception as exc:  # a refusal: compared by its text
        return repr(exc)


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(__doc__)
        return 2
    rounds = int(argv[argv.index("--rounds") + 1]) if "--rounds" in argv else 5
    with tempfile.TemporaryDirectory() as tmp:
        base_package(argv[0], Path(tmp))
        sys.path.insert(0, tmp)
        import mcpdsl_base.evaluate.checkrequest as cr_a  # type: ignore[import-not-found]
        from mcpdsl_base.engine import Engine as EngineA  # type: ignore[import-not-found]
        from mcpdsl_base.ir import model as model_a  # type: ignore[import-not-found]

        import mcpdsl.evaluate.checkrequest as cr_b
        from mcpdsl.engine import Engine

        with tempfile.TemporaryDirectory() as tree:
            project_b = bench.project_with_doors(Path(tree))
        project_a = model_a.Project.model_validate(project_b.model_dump())
        pol_a, pol_b = (
            EngineA.from_project(project_a).compiled.policies,
            Engine.from_project(project_b).compiled.policies,
        )
        tab_a, tab_b = cr_a.doors(project_a), cr_b.doors(project_b)
        rnd = random.Random(7)
        edge = [bench.edge_request(rnd, rnd.randrange(bench.RULES), project_b) for _ in range(2000)]
        mesh = [bench.mesh_request(x) for x in edge]
        for x in edge + mesh:
            a = _outcome(lambda: cr_a.request_for(tab_a, x))  # noqa: B023
            b = _outcome(lambda: cr_b.request_for(tab_b, x))  # noqa: B023
            assert a == b, (a, b)
            da, db = cr_a.decide(pol_a, tab_a, x), cr_b.decide(pol_b, tab_b, x)
            assert da.as_dict() == db.as_dict(), (da, db)
        can_a = [cr_a.request_for(tab_a, x) for x in edge]
        can_b = [cr_b.request_for(tab_b, x) for x in edge]
        rows = [
            ("map only, edge door", lambda x: cr_a.request_for(tab_a, x),
             lambda x: cr_b.request_for(tab_b, x), edge, edge),
            ("map only, east-west door", lambda x: cr_a.request_for(tab_a, x),
             lambda x: cr_b.request_for(tab_b, x), mesh, mesh),
            ("authorize only, the mapped canonical request", pol_a.authorize, pol_b.authorize,
             can_a, can_b),
            ("**CheckRequest → decision, edge door**", lambda x: cr_a.decide(pol_a, tab_a, x),
             lambda x: cr_b.decide(pol_b, tab_b, x), edge, edge),
            ("**CheckRequest → decision, east-west door**",
             lambda x: cr_a.decide(pol_a, tab_a, x), lambda x: cr_b.decide(pol_b, tab_b, x),
             mesh, mesh),
        ]  # fmt: skip
        print(f"{argv[0]} (before) against the working tree (after), {rounds} x 2,000 "
              f"requests, load average {os.getloadavg()[0]:.1f}\n")  # fmt: skip
        print("| measurement | before | after | after / before |")
        print("| --- | ---: | ---: | ---: |")
        clock = time.perf_counter_ns
        for name, fa, fb, xa, xb in rows:
            for x in xa[:300]:
                fa(x)
            for x in xb[:300]:
                fb(x)
            sa: list[int] = []
            sb: list[int] = []
            gc.disable()
            try:
                for r in range(rounds):
                    for i in range(len(xa)):
                        first, second = ((fa, xa, sa), (fb, xb, sb))[:: 1 if (i + r) & 1 else -1]
                        for call, inputs, samples in (first, second):
                            start = clock()
                            call(inputs[i])
                            samples.append(clock() - start)
            finally:
                gc.enable()
            sa.sort()
            sb.sort()
            a_us, b_us = sa[len(sa) // 2] / 1000, sb[len(sb) // 2] / 1000
            print(f"| {name} | {a_us:.1f} | {b_us:.1f} | {b_us / a_us:.2f} |")
        print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
