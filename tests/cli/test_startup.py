"""What `mcpdsl check` loads at start-up (docs/performance.md, "Start-up").

Solvers and dataframes cost a large share of a short command's wall time, so
`check --no-analyze` must not import them, and a warm `check` (every file's
front-end result in the cache) must not even load the parser.  Each case runs
the command in a fresh interpreter and reads `sys.modules`; no timing is asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from repo_paths import REPO

SCRIPT = """
import sys
from mcpdsl.cli import main
try:
    main(sys.argv[1:], prog_name="mcpdsl")
except SystemExit as exit:
    print("exit", exit.code)
print(" ".join(sorted({name.split(".")[0] for name in sys.modules})))
"""

SOLVERS = ("ortools", "pandas", "numpy", "z3")


def loaded(cache_home: Path, *args: str) -> tuple[str, set[str]]:
    """The exit line and the top-level packages loaded by `mcpdsl ARGS` in a fresh process."""
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home), "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=REPO,
    ).stdout.splitlines()
    return out[-2], set(out[-1].split())


def test_check_no_analyze_loads_no_solver_cold_or_warm(tmp_path: Path) -> None:
    cold_exit, cold = loaded(tmp_path, "check", "--no-analyze", "policies")
    warm_exit, warm = loaded(tmp_path, "check", "--no-analyze", "policies")
    assert cold_exit == warm_exit == "exit 0"
    assert "lark" in cold  # the cold run parses
    for modules in (cold, warm):
        assert not modules & set(SOLVERS), sorted(modules & set(SOLVERS))
    # Warm: every file's parse and lowering come from the cache, so neither the
    # parser nor the subcommands `check` does not run are imported.
    assert "lark" not in warm
    assert not warm & {"jinja2", "grpc", "starlette", "uvicorn", "pygls", "watchfiles"}


def test_check_with_analysis_loads_no_optimizer(tmp_path: Path) -> None:
    exit_line, modules = loaded(tmp_path, "check", "policies")
    assert exit_line == "exit 0"
    assert "z3" in modules  # the analyses ran
    assert not modules & {"ortools", "pandas", "numpy"}, sorted(modules)
