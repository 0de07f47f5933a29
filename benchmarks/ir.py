"""IR benchmark: equality and hashing of IR nodes (span-blind `==` and `hash`).

    python benchmarks/ir.py

The analyses, `mcpdsl diff`, `mcpdsl fmt`'s IR check and the watch cache compare
and hash IR constantly.  Measured on the IR of `policies/` and of the generated
10,000-rule tree of the front-end benchmark: two independent compilations of the
same tree (so no object is shared and `==` walks everything), then

- `==` of the two projects (whole-tree comparison),
- `hash` of every rule of one project,
- a set of every rule, then a membership test of every rule of the other.

Prints a markdown table, wall clock best of three.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from frontend import best_of, generate  # noqa: E402


def measure(label: str, tree: Path, rows: list[tuple[str, float]]) -> None:
    from mcpdsl.pipeline import compile_tree

    one, two = compile_tree(tree).project, compile_tree(tree).project
    assert one is not None and two is not None
    rules = [r for p in one.policies for r in p.rules]
    others = [r for p in two.policies for r in p.rules]
    assert one == two and hash(one) == hash(two)

    def members() -> None:
        found = set(rules)
        assert all(r in found for r in others)

    rows.append((f"{label}: `==` of two compilations", best_of(3, lambda: one == two)))
    rows.append((f"{label}: `hash` of the project", best_of(3, lambda: hash(one))))
    rows.append(
        (f"{label}: `hash` of {len(rules):,} rules", best_of(3, lambda: [hash(r) for r in rules]))
    )
    rows.append((f"{label}: set of {len(rules):,} rules + membership", best_of(3, members)))


def main() -> None:
    rows: list[tuple[str, float]] = []
    policies = ROOT / "policies"
    if policies.is_dir():
        measure("policies/", policies, rows)
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        measure("10,000-rule tree", Path(tmp), rows)
    print("| measurement | seconds |")
    print("| --- | ---: |")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.4f} |")


if __name__ == "__main__":
    main()
