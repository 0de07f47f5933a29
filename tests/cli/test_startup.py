"""What `mcpdsl check` loads at start-up (docs/performance.md, "Start-up").

Solvers and dataframes cost a large share of a short command's wall time, so
`check --no-analyze` must not import them, and a warm `check` (every file's
front-end result in the cache) must not even load the parser, nor PyJWT and
cryptography (the verdict on a `jwks file` is cached too).  `--version`,
`--help` and `import mcpdsl` need no model at all, so they must not import
pydantic.  Each case runs the command in a fresh interpreter and reads
`sys.modules`; no timing is asserted.
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


#: What a short command does not need: the IR and diagnostic models' library,
#: the JWKS checker's libraries, the parser, the solvers.
HEAVY = {"pydantic", "pydantic_core", "jwt", "cryptography", "lark", *SOLVERS}


def test_version_and_help_load_no_model_library(tmp_path: Path) -> None:
    for args in (("--version",), ("--help",), ("check", "--help")):
        exit_line, modules = loaded(tmp_path, *args)
        assert exit_line == "exit 0", args
        if args != ("check", "--help"):  # `check --help` imports `check` (not its stages)
            assert not modules & HEAVY, (args, sorted(modules & HEAVY))
        assert not modules & {"jwt", "cryptography", "lark", *SOLVERS}, (args, sorted(modules))


def test_import_mcpdsl_is_cheap_and_its_exports_still_work() -> None:
    script = (
        "import sys, mcpdsl\n"
        "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))\n"
        "from mcpdsl import CompileError, Diagnostic, Severity, Engine\n"
        "print(CompileError.__module__, Diagnostic.__module__, Severity.__module__,"
        " Engine.__name__, sorted(set(mcpdsl.__all__) - set(dir(mcpdsl))))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env
    ).stdout.splitlines()
    assert not set(out[0].split()) & HEAVY, out[0]
    assert out[1] == (
        "mcpdsl.diagnostics.model mcpdsl.diagnostics.model mcpdsl.diagnostics.model Engine []"
    )


def test_a_warm_check_does_not_load_the_jwks_checker(tmp_path: Path) -> None:
    """`policies/` ships a `jwks file`: a warm run takes its verdict from the cache."""
    assert list((REPO / "policies").rglob("*.jwks.json"))
    _, cold = loaded(tmp_path, "check", "--no-analyze", "policies")
    exit_line, warm = loaded(tmp_path, "check", "--no-analyze", "policies")
    assert exit_line == "exit 0"
    assert {"jwt", "cryptography"} <= cold
    assert not warm & {"jwt", "cryptography"}, sorted(warm & {"jwt", "cryptography"})


def test_help_lists_each_command_with_its_own_summary() -> None:
    """`mcpdsl --help` words each command from `SUMMARIES`, without importing it."""
    import importlib

    import click

    from mcpdsl.cli import COMMANDS, SUMMARIES

    assert set(SUMMARIES) == set(COMMANDS)
    for name, (module, attribute) in COMMANDS.items():
        command = getattr(importlib.import_module(f"mcpdsl.cli.{module}"), attribute)
        stand_in = click.Command(name, help=SUMMARIES[name])
        assert not command.hidden and not command.deprecated and not command.short_help, name
        for limit in range(20, 121, 7):
            assert stand_in.get_short_help_str(limit) == command.get_short_help_str(limit), name
