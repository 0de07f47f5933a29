"""The pre-commit hooks (`.pre-commit-hooks.yaml`) run under the real `pre-commit try-repo`.

pre-commit installs a `language: python` hook into a fresh virtualenv with
`pip install .`.  Tests may not reach the network, so the hook environment
resolves mcpdsl's dependencies from this test environment: PYTHONPATH points at
a directory that mirrors this venv's site-packages minus mcpdsl itself, pip
runs with `--no-index` and without build isolation.  Everything else — the
hook definitions, pre-commit's clone of this repository, the install of the
package from it, the hook runs — is the real thing.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest
from repo_paths import REPO

PRE_COMMIT = shutil.which("pre-commit", path=str(Path(sys.executable).parent))
GIT = shutil.which("git")

pytestmark = pytest.mark.slow


def _deps_path(tmp: Path) -> Path:
    """This venv's packages except mcpdsl, as symlinks (so the hook installs its own copy)."""
    mirror = tmp / "deps"
    mirror.mkdir()
    for root in site.getsitepackages():
        for entry in Path(root).iterdir():
            if entry.name.startswith(("mcpdsl", "_editable_impl_mcpdsl", "__editable__")):
                continue
            if entry.suffix == ".pth" or (mirror / entry.name).exists():
                continue
            (mirror / entry.name).symlink_to(entry)
    return mirror


def _git(cwd: Path, *args: str) -> None:
    subprocess.run([GIT or "git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def policy_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    if PRE_COMMIT is None or GIT is None:
        pytest.skip("system component missing: pre-commit (test extra) or git")
    tmp = tmp_path_factory.mktemp("precommit")
    repo = tmp / "policy-repo"
    subprocess.run(
        [sys.executable, "-m", "mcpdsl", "init", str(repo / "policies")],
        check=True,
        capture_output=True,
    )
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@example.invalid")
    _git(repo, "config", "user.name", "t")
    _git(repo, "add", "-A")
    env = {
        **os.environ,
        "PRE_COMMIT_HOME": str(tmp / "cache"),
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",  # pip reads this inverted: 0 = no isolation
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PYTHONPATH": str(_deps_path(tmp)),
        "NO_COLOR": "1",
    }
    return repo, env


def _try(repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """All three hooks in one `try-repo` (one hook environment to install)."""
    return subprocess.run(
        [PRE_COMMIT or "pre-commit", "try-repo", str(REPO), "--all-files", "--verbose"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def _status(output: str) -> dict[str, str]:
    """`mcpdsl fmt....Passed` lines → {"mcpdsl fmt": "Passed"}."""
    found = {}
    for line in output.splitlines():
        for name in ("mcpdsl fmt", "mcpdsl check", "mcpdsl test"):
            if line.startswith(name + ".") or line.startswith(name + " "):
                found[name] = line.rstrip().rsplit(".", 1)[-1].strip()
    return found


def test_hooks_pass_on_a_clean_tree(policy_repo: tuple[Path, dict[str, str]]) -> None:
    repo, env = policy_repo
    run = _try(repo, env)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    assert _status(run.stdout) == {
        "mcpdsl fmt": "Passed",
        "mcpdsl check": "Passed",
        "mcpdsl test": "Passed",
    }, run.stdout


def test_hooks_fail_on_a_broken_tree(policy_repo: tuple[Path, dict[str, str]]) -> None:
    repo, env = policy_repo
    access = repo / "policies" / "access.mcp"
    broken = repo / "policies" / "broken.mcp"
    original = access.read_text(encoding="utf-8")
    try:
        # unformatted, a rule gone (a test fails), and a file that does not parse
        access.write_text(
            original.replace(
                'web-api: allow service web -> service api on GET "/v1/**"', ""
            ).replace("  default deny", "default    deny"),
            encoding="utf-8",
        )
        broken.write_text("package starter\nservice broken {\n", encoding="utf-8")
        _git(repo, "add", "-A")
        run = _try(repo, env)
        assert run.returncode == 1, run.stdout
        assert _status(run.stdout) == {
            "mcpdsl fmt": "Failed",
            "mcpdsl check": "Failed",
            "mcpdsl test": "Failed",
        }, run.stdout
        assert "files were modified by this hook" in run.stdout
        assert "  default deny" in access.read_text(encoding="utf-8")  # fmt rewrote it
        assert "error[E01" in run.stdout
    finally:
        access.write_text(original, encoding="utf-8")
        broken.unlink(missing_ok=True)
        _git(repo, "add", "-A")
