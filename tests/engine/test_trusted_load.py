"""Trusted bundles: `Engine.load(build, trust=keyring)` runs only verified bytes.

A build carries its IR (`ir/project.json`, covered by the manifest and the
signature); the engine verifies the build with `mcpdsl.trust.verify_build` and
rebuilds its policy from the verified bytes.  Keys and builds are made with
the helpers of tests/trust.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import shutil
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from engine_support import FIXTURES, REPO
from request_vocabulary import make_request, vocabulary

import mcpdsl.trust.verify
from mcpdsl.builder.artifacts import IR_ARTIFACT, build, compile_artifacts, ir_artifact, manifest
from mcpdsl.builder.artifacts import write_atomically as write_build
from mcpdsl.compile import Artifact
from mcpdsl.engine import BundleError, Decision, Engine, Reload
from mcpdsl.engine.reload import IR_ARTIFACT as ENGINE_IR
from mcpdsl.engine.reload import project_from_ir
from mcpdsl.pipeline import compile_tree
from mcpdsl.trust import Keyring, SigningKey, TrustError, generate_key, sign_build
from mcpdsl.trust.common import format_time

sys.path.insert(0, str(REPO / "tests" / "trust"))
from repo_paths import example_trees
from trust_helpers import FIXTURE as SHOP
from trust_helpers import NOW, make_build

TREES = sorted(
    [
        REPO / "policies",
        *example_trees(),
        *(p for p in FIXTURES.iterdir() if p.is_dir()),
        SHOP,
    ]
)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SigningKey]:
    root = tmp_path_factory.mktemp("keys")
    window = {"not_before": NOW - timedelta(days=1), "not_after": NOW + timedelta(days=30)}
    return {
        "k1": generate_key("k1", root / "k1", **window),
        "impostor": generate_key("k1", root / "impostor", **window),  # same id, other keys
    }


@pytest.fixture
def keyring(keys: dict[str, SigningKey]) -> Keyring:
    ring = Keyring()
    ring.add(keys["k1"].entry)
    return ring


@pytest.fixture(scope="module")
def _shop_template(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, SigningKey]) -> Path:
    out = tmp_path_factory.mktemp("shop") / "build"
    make_build(out)
    sign_build(out, keys["k1"], now=NOW)
    return out


@pytest.fixture
def signed(tmp_path: Path, _shop_template: Path) -> Path:
    """A fresh copy of the signed build of tests/trust/fixtures/shop."""
    out = tmp_path / "build"
    shutil.copytree(_shop_template, out)
    return out


def build_and_sign(tree: Path, out: Path, key: SigningKey) -> Path:
    build(tree, out)
    sign_build(out, key, now=NOW)
    return out


def essence(d: Decision) -> tuple[Any, ...]:
    """Everything a decision says except its source spans (a build carries no sources)."""
    return (d.allowed, d.obligations, d.risk, d.rules, d.default_applied, d.enforced)


def shop_requests() -> list[dict[str, Any]]:
    out = []
    for action in ("GET", "POST", "DELETE"):
        for mfa in (True, False):
            for path in ("/v1/items", "/v2/items"):
                out.append(
                    {
                        "principal": {"type": "service", "id": "frontend"},
                        "action": action,
                        "resource": {"type": "service", "id": "api"},
                        "request": {"path": path, "auth": {"mfa": mfa}},
                    }
                )
    return out


def wait_until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


# ------------------------------------------------------------------ the IR artifact


@pytest.mark.parametrize("tree", TREES, ids=lambda p: p.name)
def test_ir_round_trips_exactly(tree: Path) -> None:
    project = compile_tree(tree).project
    assert project is not None
    artifact = ir_artifact(project)
    assert artifact.path == IR_ARTIFACT == ENGINE_IR == "ir/project.json"
    again = project_from_ir(artifact.content)
    assert again == project  # IR equality
    assert again.model_dump(mode="json") == project.model_dump(mode="json")
    assert ir_artifact(again).content == artifact.content  # byte for byte


def test_every_build_carries_its_ir_under_the_manifest(tmp_path: Path) -> None:
    result = build(SHOP, tmp_path / "build")
    project = result.compilation.project if result.compilation else None
    assert project is not None
    data = (tmp_path / "build" / IR_ARTIFACT).read_bytes()
    assert data == ir_artifact(project).content
    entries = json.loads((tmp_path / "build" / "manifest.json").read_bytes())["artifacts"]
    entry = next(e for e in entries if e["path"] == IR_ARTIFACT)
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    build(SHOP, tmp_path / "again")  # deterministic
    assert (tmp_path / "again" / IR_ARTIFACT).read_bytes() == data


# ------------------------------------------------------------------ trusted load


@pytest.mark.parametrize("tree", [REPO / "policies", FIXTURES / "sink"], ids=lambda p: p.name)
def test_signed_bundle_decides_like_its_source_tree(
    tree: Path, tmp_path: Path, keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    bundle = build_and_sign(tree, tmp_path / "build", keys["k1"])
    keyring.save(tmp_path / "trust.json")
    from_tree = Engine.load(tree)
    for trust in (keyring, tmp_path / "trust.json", str(tmp_path / "trust.json")):
        from_bundle = Engine.load(bundle, trust=trust)
        assert from_bundle.project == from_tree.project
    rnd = random.Random(11)
    vocab = vocabulary(from_tree.project)
    reqs = [make_request(rnd, vocab) for _ in range(1500)]
    allowed = 0
    for r in reqs:
        mine, theirs = from_bundle.authorize(r), from_tree.authorize(r)
        assert essence(mine) == essence(theirs), r
        assert all(span is None for span in mine.spans)  # the IR carries no source spans
        allowed += mine.allowed
    assert 0 < allowed < len(reqs)  # both outcomes were exercised
    for gateway in from_tree.project.gateways:
        for route in gateway.routes:
            path = route.path.replace("**", "a/b").replace("*", "x")
            for method in ("GET", "POST"):
                mine_route = from_bundle.route(gateway.name, method, path)
                theirs_route = from_tree.route(gateway.name, method, path)
                if theirs_route is None:
                    assert mine_route is None
                else:
                    assert mine_route == dataclasses.replace(theirs_route, span=None)


def test_the_engine_runs_the_verified_bytes_not_a_second_read(
    signed: Path, keyring: Keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tampering right after verification (a time-of-check/time-of-use race) changes nothing."""
    real = mcpdsl.trust.verify.verify_build
    permissive = json.loads((signed / IR_ARTIFACT).read_bytes())
    for policy in permissive["policies"]:
        policy["default"] = "allow"
        policy["rules"] = []

    def verify_then_tamper(*args: Any, **kwargs: Any) -> Any:
        verified = real(*args, **kwargs)
        (signed / IR_ARTIFACT).write_text(json.dumps(permissive))
        return verified

    monkeypatch.setattr(mcpdsl.trust.verify, "verify_build", verify_then_tamper)
    engine = Engine.load(signed, trust=keyring)
    source = Engine.load(SHOP)
    for r in shop_requests():
        assert essence(engine.authorize(r)) == essence(source.authorize(r))
    assert not all(engine.authorize(r).allowed for r in shop_requests())


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _tamper_ir_and_manifest(build_dir: Path) -> None:
    ir = build_dir / IR_ARTIFACT
    original = ir.read_bytes()
    ir.write_bytes(original.replace(b'"deny"', b'"allow"'))
    assert ir.read_bytes() != original
    doc = json.loads((build_dir / "manifest.json").read_bytes())
    for entry in doc["artifacts"]:
        if entry["path"] == IR_ARTIFACT:
            entry["sha256"] = hashlib.sha256(ir.read_bytes()).hexdigest()
            entry["size"] = ir.stat().st_size
    (build_dir / "manifest.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


REFUSALS: dict[str, tuple[Callable[[Path, Keyring, dict[str, SigningKey]], None], str, str]] = {
    "tampered artifact": (
        lambda b, ring, keys: _flip(b / "opa" / "bundle.tar.gz"),
        "artifact opa/bundle.tar.gz hash mismatch",
        "hash-mismatch",
    ),
    "tampered ir": (
        lambda b, ring, keys: _flip(b / IR_ARTIFACT),
        "artifact ir/project.json hash mismatch",
        "hash-mismatch",
    ),
    "tampered ir and manifest": (
        lambda b, ring, keys: _tamper_ir_and_manifest(b),
        "manifest.json hash mismatch (not the signed manifest)",
        "manifest-mismatch",
    ),
    "missing signature": (
        lambda b, ring, keys: (b / "signature.json").unlink(),
        "signature.json missing",
        "missing",
    ),
    "wrong key": (
        lambda b, ring, keys: sign_build(b, keys["impostor"], now=NOW),
        "ed25519 signature invalid",
        "signature-invalid",
    ),
    "unknown key": (
        lambda b, ring, keys: ring.keys.pop("k1"),
        "unknown key id `k1`",
        "unknown-key",
    ),
    "expired": (
        lambda b, ring, keys: ring.keys.update(
            k1=dataclasses.replace(ring.keys["k1"], not_after=NOW - timedelta(hours=1))
        ),
        f"key k1 expired at {format_time(NOW - timedelta(hours=1))}",
        "expired",
    ),
    "revoked": (
        lambda b, ring, keys: ring.revoke("k1", NOW + timedelta(days=1)),
        f"key k1 revoked at {format_time(NOW + timedelta(days=1))}",
        "revoked",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_bundles_name_the_reason(
    case: str, signed: Path, keyring: Keyring, keys: dict[str, SigningKey]
) -> None:
    change, reason, kind = REFUSALS[case]
    change(signed, keyring, keys)
    with pytest.raises(TrustError) as info:
        Engine.load(signed, trust=keyring)
    assert (info.value.reason, info.value.kind) == (reason, kind)
    assert str(info.value) == reason


def test_a_build_without_trust_is_refused_unless_allow_unsigned(tmp_path: Path) -> None:
    out = tmp_path / "build"
    build(SHOP, out)
    with pytest.raises(BundleError) as info:
        Engine.load(out)
    assert isinstance(info.value, TrustError) and info.value.kind == "unsigned"
    assert "no keyring was given" in info.value.reason

    engine = Engine.load(out, allow_unsigned=True)  # explicit: integrity only
    assert engine.project == Engine.load(SHOP).project
    _flip(out / IR_ARTIFACT)  # the manifest is still checked
    with pytest.raises(TrustError) as refused:
        Engine.load(out, allow_unsigned=True)
    assert refused.value.reason == "artifact ir/project.json hash mismatch"


def test_trust_with_a_source_tree_is_refused(keyring: Keyring) -> None:
    with pytest.raises(TrustError) as info:
        Engine.load(SHOP, trust=keyring)
    assert info.value.reason == "signature.json missing"


def _signed_with_ir(out: Path, key: SigningKey, ir: bytes | None) -> Path:
    compilation = compile_tree(SHOP)
    artifacts = [
        a
        for a in compile_artifacts(compilation, ()).artifacts
        if a.path not in ("manifest.json", IR_ARTIFACT)
    ]
    if ir is not None:
        artifacts.append(Artifact(IR_ARTIFACT, ir))
    artifacts.append(Artifact("notes.txt", b"a build needs one artifact at least\n"))
    artifacts.sort(key=lambda a: a.path)
    write_build(out, [*artifacts, manifest(artifacts)])
    sign_build(out, key, now=NOW)
    return out


def test_a_signed_build_without_usable_ir_is_refused(
    tmp_path: Path, keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    with pytest.raises(BundleError) as info:
        Engine.load(_signed_with_ir(tmp_path / "a", keys["k1"], None), trust=keyring)
    assert info.value.kind == "ir-missing" and "rebuild" in info.value.reason

    bogus = b'{"policies": [{"name": "p", "bogus": 1}]}'
    with pytest.raises(BundleError) as info:
        Engine.load(_signed_with_ir(tmp_path / "b", keys["k1"], bogus), trust=keyring)
    assert info.value.kind == "ir-invalid"
    assert info.value.reason.startswith("ir/project.json is not an IR this mcpdsl can read")


# ------------------------------------------------------------------ reload and watch


def test_reload_re_verifies_the_bundle(
    tmp_path: Path, keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(SHOP, tree)
    bundle = build_and_sign(tree, tmp_path / "build", keys["k1"])
    errors: list[Reload] = []
    reloads: list[Reload] = []
    engine = Engine.load(bundle, trust=keyring, on_reload=reloads.append, on_error=errors.append)
    reqs = shop_requests()
    v1 = [engine.authorize(r) for r in reqs]

    result = engine.reload()  # verified again, unchanged
    assert result.ok and not result.swapped and "verified, signed by k1" in result.message
    assert not reloads and not errors

    access = tree / "access.mcp"
    access.write_text(access.read_text().replace("GET, POST", "GET"))
    build_and_sign(tree, bundle, keys["k1"])
    result = engine.reload()
    assert result.ok and result.swapped and reloads == [result]
    v2 = [engine.authorize(r) for r in reqs]
    assert [essence(d) for d in v2] == [essence(d) for d in map(Engine.load(tree).authorize, reqs)]
    assert v2 != v1

    _flip(bundle / IR_ARTIFACT)  # tampered on disk: refused, the verified policy stays
    result = engine.reload()
    assert not result.ok and errors == [result]
    assert isinstance(result.error, TrustError) and result.error.kind == "hash-mismatch"
    assert result.message.startswith(f"refused {bundle}: artifact ir/project.json hash mismatch")
    assert [engine.authorize(r) for r in reqs] == v2

    build_and_sign(tree, bundle, keys["k1"])
    assert engine.reload().ok
    keyring.revoke("k1", NOW)  # a revocation takes effect at the next reload
    result = engine.reload()
    assert not result.ok and isinstance(result.error, TrustError)
    assert result.error.kind == "revoked"
    assert [engine.authorize(r) for r in reqs] == v2


def test_a_keyring_file_is_re_read_on_reload(
    signed: Path, tmp_path: Path, keyring: Keyring
) -> None:
    ring_file = tmp_path / "trust.json"
    keyring.save(ring_file)
    engine = Engine.load(signed, trust=ring_file)
    assert engine.reload().ok
    keyring.revoke("k1", NOW)
    keyring.save(ring_file)
    result = engine.reload()
    assert not result.ok and isinstance(result.error, TrustError)
    assert result.error.reason == f"key k1 revoked at {format_time(NOW)}"


def test_watch_a_signed_bundle(
    tmp_path: Path, keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(SHOP, tree)
    bundle = build_and_sign(tree, tmp_path / "build", keys["k1"])
    reqs = shop_requests()
    errors: list[Reload] = []
    with Engine.watch(bundle, trust=keyring, debounce_ms=20, on_error=errors.append) as live:
        assert live.ready.wait(10)
        engine = live.engine
        access = tree / "access.mcp"
        access.write_text(access.read_text().replace("GET, POST", "GET"))
        expected = [essence(d) for d in map(Engine.load(tree).authorize, reqs)]
        build_and_sign(tree, bundle, keys["k1"])  # replaces the directory as a whole
        wait_until(lambda: [essence(engine.authorize(r)) for r in reqs] == expected)

        _flip(bundle / IR_ARTIFACT)
        wait_until(lambda: any(isinstance(e.error, TrustError) for e in errors))
        assert [essence(engine.authorize(r)) for r in reqs] == expected
    assert not live.running
