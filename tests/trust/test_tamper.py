"""The tamper matrix: every change to a signed build is refused with the right reason."""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from trust_helpers import NOW, make_build

from mcpdsl.trust import Keyring, TrustError, sign_build, verify_build
from mcpdsl.trust.common import b64decode, b64encode, format_time, pretty_json
from mcpdsl.trust.verify import signed_statement, signing_input


def manifest_paths(build: Path) -> list[str]:
    return [e["path"] for e in json.loads((build / "manifest.json").read_bytes())["artifacts"]]


def flip(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    offset = len(data) // 2 if offset is None else offset
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def refused(build: Path, keyring: Keyring, **kwargs: object) -> TrustError:
    with pytest.raises(TrustError) as info:
        verify_build(build, keyring, **kwargs)  # type: ignore[arg-type]
    return info.value


def edit_signature(build: Path, change) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads((build / "signature.json").read_bytes())
    change(doc)
    (build / "signature.json").write_bytes(pretty_json(doc))


def test_untouched_build_is_accepted(signed: Path, keyring: Keyring) -> None:
    verified = verify_build(signed, keyring)
    assert verified.key_id == "k1"
    assert verified.signed_at == NOW
    assert sorted(verified.files) == manifest_paths(signed)
    for path, data in verified.files.items():
        assert (signed / path).read_bytes() == data
    assert "data.json" in verified.opa_bundle_files


def test_every_artifact_byte_flip_is_refused(signed: Path, keyring: Keyring) -> None:
    paths = manifest_paths(signed)
    assert len(paths) >= 3
    for path in paths:
        original = (signed / path).read_bytes()
        flip(signed / path)
        error = refused(signed, keyring)
        assert (error.reason, error.kind) == (f"artifact {path} hash mismatch", "hash-mismatch")
        (signed / path).write_bytes(original)
    verify_build(signed, keyring)


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_manifest_byte_flip_is_refused(signed: Path, keyring: Keyring, where: str) -> None:
    size = (signed / "manifest.json").stat().st_size
    flip(signed / "manifest.json", {"start": 0, "middle": size // 2, "end": size - 2}[where])
    error = refused(signed, keyring)
    assert error.kind == "manifest-mismatch"
    assert error.reason.startswith("manifest.json hash mismatch")


@pytest.mark.parametrize("algorithm", ["ed25519", "ml-dsa-65"])
def test_signature_byte_flip_is_refused(signed: Path, keyring: Keyring, algorithm: str) -> None:
    def corrupt(doc: dict) -> None:  # type: ignore[type-arg]
        raw = bytearray(b64decode(doc["signatures"][algorithm]))
        raw[len(raw) // 3] ^= 0x01
        doc["signatures"][algorithm] = b64encode(bytes(raw))

    edit_signature(signed, corrupt)
    error = refused(signed, keyring)
    assert (error.reason, error.kind) == (f"{algorithm} signature invalid", "signature-invalid")


def test_any_byte_flip_in_signature_json_is_refused(signed: Path, keyring: Keyring) -> None:
    path = signed / "signature.json"
    original = path.read_bytes()
    kinds = set()
    for offset in range(0, len(original), 7):
        flip(path, offset)
        kinds.add(refused(signed, keyring).kind)
        path.write_bytes(original)
    assert {"malformed", "signature-invalid"} <= kinds
    verify_build(signed, keyring)


@pytest.mark.parametrize("algorithm", ["ed25519", "ml-dsa-65"])
def test_one_signature_missing_is_refused(signed: Path, keyring: Keyring, algorithm: str) -> None:
    edit_signature(signed, lambda doc: doc["signatures"].pop(algorithm))
    error = refused(signed, keyring)
    assert (error.reason, error.kind) == (f"{algorithm} signature missing", "signature-missing")


@pytest.mark.parametrize("algorithm", ["ed25519", "ml-dsa-65"])
def test_downgrade_to_one_algorithm_is_refused(
    signed: Path, keyring: Keyring, algorithm: str
) -> None:
    def downgrade(doc: dict) -> None:  # type: ignore[type-arg]
        doc["signatures"].pop(algorithm)
        doc["algorithms"].remove(algorithm)

    edit_signature(signed, downgrade)
    assert refused(signed, keyring).reason == f"{algorithm} signature missing"


def test_signature_json_missing(signed: Path, keyring: Keyring) -> None:
    (signed / "signature.json").unlink()
    error = refused(signed, keyring)
    assert (error.reason, error.kind) == ("signature.json missing", "missing")


def test_manifest_missing(signed: Path, keyring: Keyring) -> None:
    (signed / "manifest.json").unlink()
    assert refused(signed, keyring).reason == "manifest.json missing"


def test_missing_artifact(signed: Path, keyring: Keyring) -> None:
    path = manifest_paths(signed)[0]
    (signed / path).unlink()
    error = refused(signed, keyring)
    assert (error.reason, error.kind) == (f"artifact {path} missing", "missing")


@pytest.mark.parametrize("extra", ["extra.txt", "opa/shop/backdoor.rego", ".hidden"])
def test_extra_file(signed: Path, keyring: Keyring, extra: str) -> None:
    (signed / extra).parent.mkdir(parents=True, exist_ok=True)
    (signed / extra).write_text("package backdoor\n")
    error = refused(signed, keyring)
    assert (error.reason, error.kind) == (
        f"unexpected file {extra} is not in the manifest",
        "extra-file",
    )


def test_artifact_replaced_by_symlink(signed: Path, keyring: Keyring, tmp_path: Path) -> None:
    path = manifest_paths(signed)[0]
    copy = tmp_path / "copy"
    copy.write_bytes((signed / path).read_bytes())
    (signed / path).unlink()
    os.symlink(copy, signed / path)
    assert refused(signed, keyring).kind == "unsafe-path"


def test_wrong_key(signed: Path, keyring: Keyring, keys) -> None:  # type: ignore[no-untyped-def]
    sign_build(signed, keys["impostor"], now=NOW)  # claims to be k1, signs with other keys
    error = refused(signed, keyring)
    assert (error.reason, error.kind) == ("ed25519 signature invalid", "signature-invalid")


def test_unknown_key_id(signed: Path, keys) -> None:  # type: ignore[no-untyped-def]
    ring = Keyring()
    ring.add(keys["k2"].entry)
    error = refused(signed, ring)
    assert (error.reason, error.kind) == ("unknown key id `k1`", "unknown-key")


def test_expired_key_now(signed: Path, keyring: Keyring) -> None:
    end = keyring.keys["k1"].not_after
    verify_build(signed, keyring, now=end)
    error = refused(signed, keyring, now=end + timedelta(seconds=1))
    assert (error.reason, error.kind) == (f"key k1 expired at {format_time(end)}", "expired")


def test_expired_key_at_signing_time(signed: Path, keyring: Keyring) -> None:
    entry = keyring.keys["k1"]
    keyring.keys["k1"] = dataclasses.replace(entry, not_after=NOW - timedelta(hours=1))
    error = refused(signed, keyring)
    assert (error.reason, error.kind) == (
        f"key k1 expired at {format_time(NOW - timedelta(hours=1))}",
        "expired",
    )


def test_not_yet_valid_key(signed: Path, keyring: Keyring) -> None:
    start = NOW + timedelta(hours=1)
    keyring.keys["k1"] = dataclasses.replace(keyring.keys["k1"], not_before=start)
    error = refused(signed, keyring)
    assert (error.reason, error.kind) == (
        f"key k1 not valid before {format_time(start)}",
        "not-yet-valid",
    )


def test_revoked_key_compromised(signed: Path, keyring: Keyring) -> None:
    at = NOW + timedelta(days=1)  # even a revocation "after" signing refuses a compromised key
    keyring.revoke("k1", at)
    error = refused(signed, keyring)
    assert (error.reason, error.kind) == (f"key k1 revoked at {format_time(at)}", "revoked")


def test_revoked_key_superseded(signed: Path, keyring: Keyring) -> None:
    keyring.revoke("k1", NOW + timedelta(seconds=1), reason="superseded")
    verify_build(signed, keyring)  # signed before the key was retired
    keyring.revoke("k1", NOW, reason="superseded")
    error = refused(signed, keyring)
    assert (error.reason, error.kind) == (f"key k1 revoked at {format_time(NOW)}", "revoked")


def test_signature_from_the_future(signed: Path, keyring: Keyring, keys) -> None:  # type: ignore[no-untyped-def]
    sign_build(signed, keys["k1"], now=NOW + timedelta(hours=2))
    error = refused(signed, keyring, now=NOW)
    assert error.kind == "future"


def test_backdated_signed_at_breaks_the_signatures(signed: Path, keyring: Keyring) -> None:
    edit_signature(signed, lambda doc: doc.update(signed_at=format_time(NOW - timedelta(hours=1))))
    assert refused(signed, keyring).reason == "ed25519 signature invalid"


def test_unsafe_manifest_path_even_when_signed(signed: Path, keyring: Keyring, keys) -> None:  # type: ignore[no-untyped-def]
    # A manifest pointing outside the build, signed with the real key, is still refused.
    doc = json.loads((signed / "manifest.json").read_bytes())
    doc["artifacts"].append({"path": "../outside", "sha256": "0" * 64, "size": 0})
    (signed / "manifest.json").write_bytes(pretty_json(doc))
    resign(signed, keys["k1"])
    error = refused(signed, keyring)
    assert (error.reason, error.kind) == (
        "manifest entry `../outside` is not a safe relative path",
        "unsafe-path",
    )


def resign(build: Path, key) -> None:  # type: ignore[no-untyped-def]
    """Sign whatever manifest is there, without the signer's consistency checks."""
    import hashlib

    digest = hashlib.sha256((build / "manifest.json").read_bytes()).hexdigest()
    statement = signed_statement(key.key_id, digest, format_time(NOW))
    message = signing_input(statement)
    statement["signatures"] = {
        "ed25519": b64encode(key.ed25519.sign(message)),
        "ml-dsa-65": b64encode(key.ml_dsa_65.sign(message)),
    }
    (build / "signature.json").write_bytes(pretty_json(statement))


def test_signing_refuses_a_tampered_build(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "build"
    paths = make_build(out)
    flip(out / paths[-1])
    with pytest.raises(TrustError, match="hash mismatch"):
        sign_build(out, keys["k1"], now=NOW)
    assert not (out / "signature.json").exists()


def test_signing_is_deterministic_except_signature_json(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    a, b = tmp_path / "a", tmp_path / "b"
    make_build(a)
    make_build(b)
    sign_build(a, keys["k1"], now=NOW)
    sign_build(b, keys["k1"], now=NOW)
    sign_build(b, keys["k1"], now=NOW)  # re-signing replaces, never stacks
    for path in [*manifest_paths(a), "manifest.json"]:
        assert (a / path).read_bytes() == (b / path).read_bytes(), path


def test_rotation_with_overlap(tmp_path: Path, keys, keyring: Keyring) -> None:  # type: ignore[no-untyped-def]
    old, new = tmp_path / "old", tmp_path / "new"
    make_build(old)
    make_build(new)
    sign_build(old, keys["k1"], now=NOW)
    sign_build(new, keys["k2"], now=NOW)
    keyring.keys["k1"] = dataclasses.replace(keyring.keys["k1"], not_after=NOW + timedelta(days=1))
    verify_build(old, keyring)  # overlap: both keys trusted
    verify_build(new, keyring)
    later = NOW + timedelta(days=2)
    assert refused(old, keyring, now=later).kind == "expired"
    verify_build(new, keyring, now=later)


def test_real_build_api(tmp_path: Path, keys, keyring: Keyring) -> None:  # type: ignore[no-untyped-def]
    """`mcpdsl.builder.artifacts.build` output, signed and verified, when every target exists."""
    from trust_helpers import FIXTURE, available_targets

    from mcpdsl.builder.artifacts import build
    from mcpdsl.compile import TARGETS

    if available_targets() != TARGETS:
        pytest.skip(
            f"targets not all available yet: {sorted(set(TARGETS) - set(available_targets()))}"
        )
    build(FIXTURE, tmp_path / "build")
    sign_build(tmp_path / "build", keys["k1"], now=NOW)
    verify_build(tmp_path / "build", keyring)
