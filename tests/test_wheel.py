"""The built wheel works on its own: grammar and targets ship inside it.

Builds the wheel, installs it into a fresh virtual environment (no system site
packages; dependencies come from the configured package index) and runs the
installed `mcpdsl check` on the flagship policies from an unrelated directory,
so that nothing can be read from the checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from repo_paths import REPO

pytestmark = pytest.mark.slow

POLICIES = REPO / "policies"


def run(*args: str | Path, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["NO_COLOR"] = "1"
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # No isolation: the build backend (hatchling) comes with the test extras.
    built = run(
        sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", out, REPO, cwd=out
    )
    if built.returncode != 0:  # `build` missing: pip can build a wheel too
        built = run(
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            out,
            REPO,
            cwd=out,
        )
    assert built.returncode == 0, built.stdout + built.stderr
    (found,) = out.glob("mcpdsl-*.whl")
    return found


def test_wheel_ships_grammar_and_targets(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "mcpdsl/_data/grammar/mcp.lark" in names
    assert any(n.startswith("mcpdsl/_data/targets/") for n in names)
    assert "mcpdsl/__init__.py" in names
    # Nothing from the checkout's tests or caches leaks into the wheel.
    assert not [n for n in names if n.startswith("tests/") or "__pycache__" in n]


def test_installed_wheel_checks_the_policies(wheel: Path, tmp_path: Path) -> None:
    if not POLICIES.is_dir() or not any(POLICIES.rglob("*.mcp")):
        pytest.skip("policies/ does not exist yet (written by another work item)")
    venv = tmp_path / "venv"
    created = run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    pip = venv / "bin" / "pip"
    installed = run(pip, "install", "--quiet", "--disable-pip-version-check", wheel, cwd=tmp_path)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run(
        venv / "bin" / "python", "-c", "import mcpdsl; print(mcpdsl.__file__)", cwd=elsewhere
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv), "imported from the checkout"

    checked = run(venv / "bin" / "mcpdsl", "check", POLICIES, cwd=elsewhere)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "0 errors" in checked.stdout
    version = run(venv / "bin" / "mcpdsl", "--version", cwd=elsewhere)
    assert version.returncode == 0 and "mcpdsl" in version.stdout
