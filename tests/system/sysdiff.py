"""Print the system differential's report for any tree (for a look after merging targets).

    PYTHONPATH=. python tests/system/sysdiff.py policies/ [--requests N] [--seed S] [--istio]

Runs the edge differential in plaintext and with verified client certificates
(`assume_mtls`), and with `--istio` the east-west one (needs the istio target).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "compile"), str(HERE.parent)]

from harness import build, differential  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree", type=Path)
    parser.add_argument("--requests", type=int, default=1000, help="requests per gateway and run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--istio", action="store_true", help="also the east-west differential")
    args = parser.parse_args(argv)
    engine, files = build(args.tree)
    disagree = 0
    for mtls in (False, True):
        report = differential(
            engine, files, requests=args.requests, seed=args.seed, assume_mtls=mtls
        )
        print(f"== edge, {'verified client certificates' if mtls else 'as deployed'}")
        print(report.summary())
        disagree += report.disagree
    if args.istio:
        from istio_harness import istio_differential

        engine, files = build(args.tree, None, ("kubernetes", "istio", "opa"))
        report = istio_differential(engine, files, requests=args.requests, seed=args.seed)
        print("== east-west (Istio)")
        print(report.summary())
        disagree += report.disagree
    return 1 if disagree else 0


if __name__ == "__main__":
    sys.exit(main())
