"""Run every benchmark and print their tables.

    python benchmarks/run.py            # all
    python benchmarks/run.py engine     # only the named ones

Each benchmark is a standalone script printing a markdown table; this runner
executes them in turn with the same interpreter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = (
    "frontend",
    "startup",
    "ir",
    "build",
    "engine",
    "checkrequest",
    "rego",
    "analysis",
    "optimize",
    "watch",
    "lsp",
)


def main(argv: list[str]) -> int:
    names = argv or [n for n in ORDER if (HERE / f"{n}.py").exists()]
    status = 0
    for name in names:
        print(f"\n## {name}\n", flush=True)
        result = subprocess.run([sys.executable, str(HERE / f"{name}.py")], check=False)
        status = status or result.returncode
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
