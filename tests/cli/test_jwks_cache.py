"""Verdicts on `jwks file`s kept between runs (mcpdsl/pipeline/jwks_cache.py).

A stored verdict must give exactly the diagnostics and IR keys a fresh check
gives, cold and warm; it must never be served for other bytes or another
toolchain; a corrupt or hostile entry is ignored or can only refuse, and the
project's own key policy runs on every key whatever an entry says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from repo_paths import REPO

from mcpdsl.cachedir import unwrap, wrap
from mcpdsl.ir import jwks as jwks_module
from mcpdsl.pipeline import Compilation, compile_tree
from mcpdsl.pipeline import jwks_cache as jc


def public_jwk(**extra: str) -> dict[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "alg": "ES256", "use": "sig", **extra})
    return jwk  # type: ignore[no-any-return]


def private_jwk() -> dict[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    return json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key))  # type: ignore[no-any-return]


#: File contents: usable, refused by the policy, refused by PyJWT, not a key set.
CONTENTS: dict[str, Any] = {
    "usable": lambda: json.dumps({"keys": [public_jwk()]}),
    "two-usable": lambda: json.dumps({"keys": [public_jwk(), public_jwk(kid="k2")]}),
    "private": lambda: json.dumps({"keys": [private_jwk()]}),
    "symmetric": lambda: '{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}',
    "encryption": lambda: json.dumps({"keys": [public_jwk(use="enc")]}),
    "off-curve": lambda: '{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}',
    "unknown-kty": lambda: '{"keys": [{"kty": "banana"}]}',
    "not-json": lambda: "not json",
    "empty": lambda: '{"keys": []}',
}

PROVIDERS = """package shop

provider idp {
  issuer "https://login.example.com/"
  jwks   file "keys.json"
  audiences ["desk"]
}

provider other {
  issuer "https://other.example.com/"
  jwks   file "keys.json"
  audiences ["desk"]
}
"""


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "mcpdsl"


def tree_with(tmp_path: Path, content: str | bytes) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir(exist_ok=True)
    (tree / "main.mcp").write_text(PROVIDERS, encoding="utf-8")
    keys = tree / "keys.json"
    keys.write_bytes(content if isinstance(content, bytes) else content.encode())
    return tree


def outcome(c: Compilation) -> tuple[Any, ...]:
    keys = None if c.project is None else [p.jwks_keys for p in c.project.providers]
    return ([(d, d.span) for d in c.diagnostics], keys)


def verdicts(home: Path) -> list[Path]:
    return sorted(home.glob(f"{jc.PREFIX}*{jc.SUFFIX}"))


def no_pyjwt(key: object) -> str | None:
    raise AssertionError("PyJWT's check ran on a stored verdict")


@pytest.mark.parametrize("kind", sorted(CONTENTS))
def test_stored_verdicts_give_the_computed_diagnostics_cold_and_warm(
    kind: str, tmp_path: Path, cache_home: Path
) -> None:
    tree = tree_with(tmp_path, CONTENTS[kind]())
    expected = outcome(compile_tree(tree))
    cold = compile_tree(tree, stored=True)
    assert len(verdicts(cache_home)) == 1  # one file, read by two providers: one entry
    with pytest.MonkeyPatch.context() as patch:  # warm: PyJWT is not asked again
        patch.setattr(jwks_module, "key_problem", no_pyjwt)
        warm = compile_tree(tree, stored=True)
    assert outcome(cold) == outcome(warm) == expected
    assert (kind in ("usable", "two-usable")) == (expected[1] is not None)
    assert (kind in ("usable", "two-usable")) != any(d.code == "E0904" for d, _ in expected[0])


def test_the_command_line_prints_the_same_cold_and_warm(tmp_path: Path) -> None:
    tree = tree_with(tmp_path, CONTENTS["off-curve"]())
    (tree / "second.mcp").write_text(
        'package shop\n\nprovider p2 {\n  issuer "https://x/"\n  jwks file "private.json"\n}\n',
        encoding="utf-8",
    )
    (tree / "private.json").write_text(CONTENTS["private"](), encoding="utf-8")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "mcpdsl", "check", "--no-analyze", "--format", "json", str(tree)]
    runs = [subprocess.run(argv, capture_output=True, text=True, env=env) for _ in range(2)]
    assert runs[0].returncode == runs[1].returncode == 1
    assert runs[0].stdout == runs[1].stdout
    assert runs[0].stdout.count('"E0904"') == 3  # two providers share keys.json
    assert len(verdicts(tmp_path / "cache" / "mcpdsl")) == 2


def test_the_name_covers_the_bytes_and_the_toolchain(monkeypatch: pytest.MonkeyPatch) -> None:
    assert jc.entry_name(b"{}") != jc.entry_name(b"{} ")
    before = jc.entry_name(b"{}")
    jc.toolchain.cache_clear()
    monkeypatch.setattr(jc.sys, "version", "another python")
    try:
        assert jc.entry_name(b"{}") != before
    finally:
        jc.toolchain.cache_clear()


def name_of(content: str) -> str:
    name = jc.entry_name(content.encode())
    assert name is not None
    return name


def _plant(home: Path, content: str, payload: bytes) -> None:
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    (home / name_of(content)).write_bytes(wrap(payload, jc.FORMAT))


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[null]",
        b'{"problem": 3}',
        b'{"problem": ""}',
        b'{"problem": null, "keys": []}',
        b'{"problem": "' + b"x" * 1000 + b'"}',
        b"\xff\xfe",
    ],
)
def test_a_malformed_entry_is_ignored(payload: bytes, tmp_path: Path, cache_home: Path) -> None:
    content = CONTENTS["off-curve"]()
    tree = tree_with(tmp_path, content)
    _plant(cache_home, content, payload)
    assert outcome(compile_tree(tree, stored=True)) == outcome(compile_tree(tree))
    # ... and replaced by the computed verdict.
    stored = unwrap((cache_home / name_of(content)).read_bytes(), jc.FORMAT)
    assert stored is not None
    assert jc.decode(stored) == jwks_module.parse_jwks(content.encode()).problem


def test_a_torn_entry_is_ignored(tmp_path: Path, cache_home: Path) -> None:
    content = CONTENTS["off-curve"]()
    tree = tree_with(tmp_path, content)
    cache_home.mkdir(mode=0o700, parents=True)
    torn = wrap(b'{"problem": null}', jc.FORMAT)[:-3]
    (cache_home / name_of(content)).write_bytes(torn)
    assert outcome(compile_tree(tree, stored=True)) == outcome(compile_tree(tree))


@pytest.mark.parametrize("kind", ["private", "symmetric", "encryption"])
def test_a_forged_usable_verdict_does_not_pass_the_policy(
    kind: str, tmp_path: Path, cache_home: Path
) -> None:
    content = CONTENTS[kind]()
    tree = tree_with(tmp_path, content)
    _plant(cache_home, content, b'{"problem": null}')
    stored = compile_tree(tree, stored=True)
    assert outcome(stored) == outcome(compile_tree(tree))
    assert any(d.code == "E0904" for d in stored.diagnostics)


def test_a_forged_problem_can_only_refuse(tmp_path: Path, cache_home: Path) -> None:
    content = CONTENTS["usable"]()
    tree = tree_with(tmp_path, content)
    _plant(cache_home, content, b'{"problem": "is forged"}')
    stored = compile_tree(tree, stored=True)
    assert stored.project is None
    assert [d.code for d in stored.diagnostics] == ["E0904", "E0904"]


def test_an_unreadable_checker_source_means_no_cache(
    tmp_path: Path, cache_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = tree_with(tmp_path, CONTENTS["usable"]())
    jc.toolchain.cache_clear()
    monkeypatch.setattr(jwks_module, "__file__", str(tmp_path / "missing.py"))
    try:
        assert outcome(compile_tree(tree, stored=True)) == outcome(compile_tree(tree))
        assert verdicts(cache_home) == []
    finally:
        jc.toolchain.cache_clear()


def test_without_a_private_cache_directory_the_check_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    (shared / "mcpdsl").mkdir(parents=True)
    (shared / "mcpdsl").chmod(0o777)
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared))
    tree = tree_with(tmp_path, CONTENTS["off-curve"]())
    assert outcome(compile_tree(tree, stored=True)) == outcome(compile_tree(tree))
    assert verdicts(shared / "mcpdsl") == []


def test_the_store_keeps_the_newest_verdicts(cache_home: Path) -> None:
    cache_home.mkdir(mode=0o700, parents=True)
    names = [f"{jc.PREFIX}{i:040d}{jc.SUFFIX}" for i in range(5)]
    for age, name in enumerate(names):
        (cache_home / name).write_bytes(b"")
        os.utime(cache_home / name, (1_000_000 + age, 1_000_000 + age))
    (cache_home / "fe-keep.pickle").write_bytes(b"")  # another cache's entry: never pruned
    directory = os.open(cache_home, os.O_RDONLY)
    try:
        jc.prune(directory, keep=3)
    finally:
        os.close(directory)
    assert [p.name for p in verdicts(cache_home)] == names[2:]
    assert (cache_home / "fe-keep.pickle").exists()
