"""`mcpdsl keys|sign|verify` end to end, as a user runs them (real processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from trust_helpers import make_build

MCPDSL = [sys.executable, "-m", "mcpdsl"]


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*MCPDSL, *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
        timeout=120,
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two keys (one encrypted), a keyring trusting both, and an unsigned build."""
    root = tmp_path_factory.mktemp("cli")
    pw = {"KEY_PW": "correct horse battery staple"}
    r = run(
        "keys",
        "new",
        "--id",
        "prod-1",
        "--out",
        root / "prod-1",
        "--passphrase-env",
        "KEY_PW",
        env=pw,
    )
    assert r.returncode == 0, r.stderr
    assert "(encrypted)" in r.stdout
    r = run(
        "keys",
        "new",
        "--id",
        "prod-2",
        "--out",
        root / "prod-2",
        "--not-before",
        "2020-01-01T00:00:00Z",
        "--not-after",
        "2099-01-01",
    )
    assert r.returncode == 0, r.stderr
    r = run(
        "keys",
        "add",
        "--keyring",
        root / "trust.json",
        root / "prod-1" / "public.json",
        root / "prod-2",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["added: prod-1", "added: prod-2"]
    make_build(root / "build")
    return root


def test_sign_and_verify(workspace: Path, tmp_path: Path) -> None:
    import shutil

    build = tmp_path / "build"
    shutil.copytree(workspace / "build", build)
    pw = {"KEY_PW": "correct horse battery staple"}
    r = run("sign", build, "--key", workspace / "prod-1", "--passphrase-env", "KEY_PW", env=pw)
    assert r.returncode == 0, r.stderr
    assert "opa/bundle.tar.gz signed (ES256)" in r.stdout
    r = run("verify", build, "--trust", workspace / "trust.json")
    assert r.returncode == 0, r.stderr
    assert "signed by prod-1" in r.stdout and "ed25519 + ml-dsa-65" in r.stdout

    rego = next(p for p in sorted(build.rglob("*.rego")))
    rego.write_text(rego.read_text() + "\n# tampered\n")
    r = run("verify", build, "--trust", workspace / "trust.json")
    assert r.returncode == 1
    assert (
        r.stderr.strip() == f"refused: artifact {rego.relative_to(build).as_posix()} hash mismatch"
    )

    # signing a tampered build is refused as well
    r = run("sign", build, "--key", workspace / "prod-2")
    assert r.returncode == 1
    assert "refusing to sign" in r.stderr and "hash mismatch" in r.stderr


def test_passphrase_errors_are_clean(workspace: Path, tmp_path: Path) -> None:
    import shutil

    build = tmp_path / "build"
    shutil.copytree(workspace / "build", build)
    r = run(
        "sign",
        build,
        "--key",
        workspace / "prod-1",
        "--passphrase-env",
        "KEY_PW",
        env={"KEY_PW": "wrong"},
    )
    assert (r.returncode, r.stderr.strip()) == (2, "error: wrong passphrase for key `prod-1`")
    r = run("sign", build, "--key", workspace / "prod-1")
    assert r.returncode == 2
    assert (
        r.stderr.strip()
        == "error: key `prod-1` is encrypted; pass its passphrase with --passphrase-env"
    )
    r = run("sign", build, "--key", workspace / "prod-1", "--passphrase-env", "NOT_SET_ANYWHERE")
    assert (r.returncode, r.stderr.strip()) == (
        2,
        "error: environment variable `NOT_SET_ANYWHERE` is not set or empty",
    )
    assert not (build / "signature.json").exists()


def test_revoke_and_rotate(workspace: Path, tmp_path: Path) -> None:
    import shutil

    build = tmp_path / "build"
    shutil.copytree(workspace / "build", build)
    ring = tmp_path / "trust.json"
    shutil.copy(workspace / "trust.json", ring)
    assert run("sign", build, "--key", workspace / "prod-2").returncode == 0
    assert run("verify", build, "--trust", ring).returncode == 0
    r = run("keys", "revoke", "--keyring", ring, "--id", "prod-2", "--at", "2030-01-01T00:00:00Z")
    assert r.returncode == 0 and "revoked: prod-2 at 2030-01-01T00:00:00Z (compromised)" in r.stdout
    r = run("verify", build, "--trust", ring)
    assert (r.returncode, r.stderr.strip()) == (
        1,
        "refused: key prod-2 revoked at 2030-01-01T00:00:00Z",
    )
    r = run("keys", "list", "--keyring", ring)
    assert "prod-2" in r.stdout and "revoked at 2030-01-01T00:00:00Z (compromised)" in r.stdout
    # a single public.json can serve as the trust anchor
    r = run("verify", build, "--trust", workspace / "prod-1" / "public.json")
    assert (r.returncode, r.stderr.strip()) == (1, "refused: unknown key id `prod-2`")


def test_usage_errors_exit_2(workspace: Path, tmp_path: Path) -> None:
    (tmp_path / "ring.json").write_text("{}")
    cases = [
        ("verify", workspace / "build", "--trust", tmp_path / "ring.json"),
        ("verify", workspace / "build", "--trust", tmp_path / "missing.json"),
        ("verify", tmp_path / "no-build", "--trust", workspace / "trust.json"),
        ("sign", workspace / "build", "--key", tmp_path / "no-key"),
        ("keys", "new", "--id", "bad id", "--out", tmp_path / "k"),
        ("keys", "new", "--id", "k", "--out", tmp_path / "k", "--not-after", "someday"),
        ("keys", "new", "--id", "prod-1", "--out", workspace / "prod-1"),  # would overwrite
        ("verify",),
    ]
    for args in cases:
        r = run(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)


def test_unsigned_build_is_refused(workspace: Path) -> None:
    r = run("verify", workspace / "build", "--trust", workspace / "trust.json")
    assert (r.returncode, r.stderr.strip()) == (1, "refused: signature.json missing")


def test_keyring_file_format(workspace: Path) -> None:
    doc = json.loads((workspace / "trust.json").read_text())
    assert doc["format"] == "mcpdsl-keyring/1"
    assert [k["key_id"] for k in doc["keys"]] == ["prod-1", "prod-2"]
    assert set(doc["keys"][0]["public_keys"]) == {"ed25519", "ml-dsa-65", "es256"}
