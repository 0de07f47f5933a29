"""Hostile builds: names, shapes and rollbacks refused by `sign`, `verify` and the engine.

Every case is checked on the three doors a build can come through: `sign_build`
(an unsigned build is never signed), `verify_build` (after the attacker re-signs
the manifest with the real key, so only the structural check can refuse), and
`Engine.load(trust=...)`.  A refusal is a `TrustError` with a reason, never a
traceback.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from trust_helpers import NOW, make_build

from mcpdsl.cli import main
from mcpdsl.engine import Engine
from mcpdsl.trust import Keyring, SigningKey, TrustError, sign_build, verify_build
from mcpdsl.trust.common import (
    MAX_SIGNATURE_BYTES,
    b64encode,
    format_time,
    pretty_json,
    strict_json,
)
from mcpdsl.trust.verify import signed_statement, signing_input


def resign(build: Path, key: SigningKey, revision: int | None = 1) -> None:
    """What an attacker holding the key could not do, done for the test: sign any manifest,
    so that only the structural checks stand between the build and an accept."""
    digest = hashlib.sha256((build / "manifest.json").read_bytes()).hexdigest()
    statement = signed_statement(key.key_id, digest, format_time(NOW), revision=revision)
    message = signing_input(statement)
    statement["signatures"] = {
        "ed25519": b64encode(key.ed25519.sign(message)),
        "ml-dsa-65": b64encode(key.ml_dsa_65.sign(message)),
    }
    (build / "signature.json").write_bytes(pretty_json(statement))


def unsigned(tmp_path: Path) -> Path:
    out = tmp_path / "unsigned"
    make_build(out)
    return out


def edit_manifest(build: Path, change: Callable[[list[dict[str, object]]], None]) -> None:
    doc = json.loads((build / "manifest.json").read_bytes())
    change(doc["artifacts"])
    (build / "manifest.json").write_bytes(pretty_json(doc))


def entry(path: str, data: bytes = b"") -> dict[str, object]:
    return {"path": path, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def refusals(build: Path, keyring: Keyring, key: SigningKey) -> list[TrustError]:
    """The refusal of each door: sign (on a copy), verify, Engine.load(trust=...)."""
    errors = []
    for door in ("sign", "verify", "engine"):
        with pytest.raises(TrustError) as info:
            if door == "sign":
                copy = build.parent / "sign-copy"
                shutil.rmtree(copy, ignore_errors=True)
                shutil.copytree(
                    build,
                    copy,
                    symlinks=True,
                    ignore=_fifos_recreated(build, copy),
                    dirs_exist_ok=True,
                )
                (copy / "signature.json").unlink(missing_ok=True)
                sign_build(copy, key, now=NOW)
            elif door == "verify":
                verify_build(build, keyring, now=NOW)
            else:
                Engine.load(build, trust=keyring)
        errors.append(info.value)
    return errors


def _fifos_recreated(src: Path, dst: Path) -> Callable[[str, list[str]], list[str]]:
    """A copytree `ignore` that makes named pipes again instead of reading them."""

    def ignore(directory: str, names: list[str]) -> list[str]:
        pipes = [n for n in names if stat.S_ISFIFO(os.lstat(Path(directory) / n).st_mode)]
        for name in pipes:
            target = dst / Path(directory).relative_to(src) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.mkfifo(target)
        return pipes

    return ignore


# ------------------------------------------------------------------ manifest names

HOSTILE_NAMES = {
    "../../../tmp/x.rego": "not a safe relative path",
    "/tmp/x.rego": "not a safe relative path",
    "opa\\..\\..\\x.rego": "not a safe relative path",
    "opa/../../x.rego": "not a safe relative path",
    "opa/./x.rego": "not a safe relative path",
    "opa//x.rego": "not a safe relative path",
    "opa/x\x00.rego": "not a safe relative path",
    "opa/x\n.rego": "not a safe relative path",
    "a" * 300: "not a safe relative path",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_NAMES), ids=repr)
def test_hostile_manifest_name_is_refused_everywhere(
    tmp_path: Path, keys: dict[str, SigningKey], keyring: Keyring, name: str
) -> None:
    build = unsigned(tmp_path)
    edit_manifest(build, lambda entries: entries.append(entry(name)))
    resign(build, keys["k1"])
    for error in refusals(build, keyring, keys["k1"]):
        assert error.kind == "unsafe-path", error.reason
        assert HOSTILE_NAMES[name] in error.reason
        assert "\x00" not in error.reason and "\n" not in error.reason


@pytest.mark.parametrize(
    "extra, reason",
    [
        ("same", "manifest.json lists a path twice"),
        ("case", "one file on case-insensitive file systems"),
        ("unicode", "one file on case-insensitive file systems"),
        ("file-and-dir", "both as a file and as a directory"),
    ],
)
def test_colliding_manifest_names_are_refused_everywhere(
    tmp_path: Path, keys: dict[str, SigningKey], keyring: Keyring, extra: str, reason: str
) -> None:
    build = unsigned(tmp_path)
    first = json.loads((build / "manifest.json").read_bytes())["artifacts"][0]["path"]
    twin = {
        "same": first,
        "case": first.upper(),
        "unicode": "caf\u00e9.txt",
        "file-and-dir": first + "/inner",
    }[extra]
    edit_manifest(build, lambda entries: entries.append(entry(twin)))
    if extra == "unicode":
        edit_manifest(build, lambda entries: entries.append(entry("cafe\u0301.txt")))
    resign(build, keys["k1"])
    for error in refusals(build, keyring, keys["k1"]):
        assert reason in error.reason


# ------------------------------------------------------------------ OPA bundle members


def hostile_tar(kind: str) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, data: bytes = b"package x\n", **attrs: object) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data) if "type" not in attrs else 0
            for key, value in attrs.items():
                setattr(info, key, value)
            tar.addfile(info, io.BytesIO(data) if "type" not in attrs else None)

        add(".manifest", b'{"roots": ["x"]}\n')
        if kind == "dotdot":
            add("../../../tmp/x.rego")
        elif kind == "dotdot-inside":
            add("x/../../x.rego")
        elif kind == "absolute":
            add("/x/x.rego")
        elif kind == "backslash":
            add("x\\..\\x.rego")
        elif kind == "duplicate":
            add("x/x.rego")
            add("x/x.rego", b"package x\nallow := true\n")
        elif kind == "case":
            add("x/x.rego")
            add("x/X.rego")
        elif kind == "symlink":
            add("x/x.rego", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        elif kind == "hardlink":
            add("x/x.rego", type=tarfile.LNKTYPE, linkname=".manifest")
        elif kind == "device":
            add("x/x.rego", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
        elif kind == "fifo":
            add("x/x.rego", type=tarfile.FIFOTYPE)
        elif kind == "control":
            add("x/x\x1b.rego")
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


TAR_CASES = {
    "dotdot": "has an empty, `.` or `..` component",
    "dotdot-inside": "has an empty, `.` or `..` component",
    "absolute": "is absolute",
    "backslash": "contains a backslash",
    "duplicate": "appears twice",
    "case": "one file on case-insensitive file systems",
    "symlink": "is not a regular file",
    "hardlink": "is not a regular file",
    "device": "is not a regular file",
    "fifo": "is not a regular file",
    "control": "contains a control character",
}


@pytest.mark.parametrize("kind", sorted(TAR_CASES))
def test_hostile_opa_bundle_member_is_refused_everywhere(
    tmp_path: Path, keys: dict[str, SigningKey], keyring: Keyring, kind: str
) -> None:
    build = unsigned(tmp_path)
    bundle = hostile_tar(kind)
    (build / "opa" / "bundle.tar.gz").write_bytes(bundle)

    def replace(entries: list[dict[str, object]]) -> None:
        for item in entries:
            if item["path"] == "opa/bundle.tar.gz":
                item.update(entry("opa/bundle.tar.gz", bundle))

    edit_manifest(build, replace)
    resign(build, keys["k1"])
    for error in refusals(build, keyring, keys["k1"]):
        assert error.kind == "opa-bundle", error.reason
        assert TAR_CASES[kind] in error.reason, error.reason


def pax_bomb(claimed: int) -> bytes:
    """A gzipped tar whose first header is a pax header claiming `claimed` bytes of zeros."""
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = claimed
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz:
        gz.write(info.tobuf(format=tarfile.USTAR_FORMAT))
        for _ in range(claimed // 65536 + 1):
            gz.write(bytes(65536))
    return out.getvalue()


def test_a_decompression_bomb_in_the_opa_bundle_is_refused_everywhere(
    tmp_path: Path,
    keys: dict[str, SigningKey],
    keyring: Keyring,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """tarfile reads a pax header in one piece, whatever size it claims: a small bundle
    of zeros used to fill memory (MemoryError or the OOM killer) before any check ran.
    The limit is lowered here so the test stays small; the mechanism is the same."""
    monkeypatch.setattr("mcpdsl.trust.opa.MAX_BUNDLE_TAR", 1 << 20)
    build = unsigned(tmp_path)
    bundle = pax_bomb(2 << 20)
    assert len(bundle) < 64 * 1024
    (build / "opa" / "bundle.tar.gz").write_bytes(bundle)

    def replace(entries: list[dict[str, object]]) -> None:
        for item in entries:
            if item["path"] == "opa/bundle.tar.gz":
                item.update(entry("opa/bundle.tar.gz", bundle))

    edit_manifest(build, replace)
    resign(build, keys["k1"])
    for error in refusals(build, keyring, keys["k1"]):
        assert error.kind == "opa-bundle", error.reason
        assert "bytes once decompressed" in error.reason, error.reason


def test_padded_and_concatenated_gzip_bundles_still_read(keys: dict[str, SigningKey]) -> None:
    """What gzip itself accepts (zero padding, several members) is not refused."""
    from trust_helpers import tarball

    from mcpdsl.trust.opa import _members

    good = tarball({".manifest": b'{"roots": ["x"]}\n', "x/x.rego": b"package x\n"})
    for variant in (good + bytes(512), good[:-8] + good[-8:]):
        assert [m.name for m, _ in _members(variant)] == [".manifest", "x/x.rego"]
    raw = gzip.decompress(good)
    half = len(raw) // 2
    two = gzip.compress(raw[:half], mtime=0) + gzip.compress(raw[half:], mtime=0)
    assert [m.name for m, _ in _members(two)] == [".manifest", "x/x.rego"]
    with pytest.raises(TrustError, match="truncated"):
        _members(good[: len(good) // 2])


# ------------------------------------------------------------------ signature.json shapes


def _shapes() -> dict[str, tuple[Callable[[Path], None], str]]:
    def write(text: str | bytes) -> Callable[[Path], None]:
        data = text.encode() if isinstance(text, str) else text
        return lambda build: (build / "signature.json").write_bytes(data)

    def edit(change: Callable[[dict[str, object]], None]) -> Callable[[Path], None]:
        def apply(build: Path) -> None:
            doc = json.loads((build / "signature.json").read_bytes())
            change(doc)
            (build / "signature.json").write_bytes(pretty_json(doc))

        return apply

    def symlink(build: Path) -> None:
        real = build.parent / "elsewhere.json"
        real.write_bytes((build / "signature.json").read_bytes())
        (build / "signature.json").unlink()
        (build / "signature.json").symlink_to(real)

    def directory(build: Path) -> None:
        (build / "signature.json").unlink()
        (build / "signature.json").mkdir()

    def duplicate_key(build: Path) -> None:
        text = (build / "signature.json").read_text()
        (build / "signature.json").write_text(text.replace("{", '{"key_id": "k9",', 1))

    return {
        "symlink": (symlink, "signature.json is a symlink"),
        "directory": (directory, "signature.json is not a regular file"),
        "deeply nested": (write("[" * 20_000 + "]" * 20_000), "nested too deeply"),
        "deeply nested object": (write('{"a":' * 10_000 + "1" + "}" * 10_000), "nested"),
        "too large": (write(b" " * (MAX_SIGNATURE_BYTES + 1)), "is larger than"),
        "not an object": (write("[1, 2]"), "not an object"),
        "a string": (write('"signature"'), "not an object"),
        "huge number": (write("1" * 10_000), "signature.json is malformed"),
        "nan": (write('{"format": NaN}'), "`NaN` is not JSON"),
        "not utf-8": (write(b'{"format": "\xff"}'), "not UTF-8"),
        "duplicate key": (duplicate_key, "duplicate key `key_id`"),
        "unknown field": (edit(lambda d: d.update(comment="hi")), "unknown field `comment`"),
        "unknown algorithm": (
            edit(lambda d: d["signatures"].update(rsa="AAAA")),  # type: ignore[union-attr]
            "unknown signature algorithm `rsa`",
        ),
        "revision bool": (edit(lambda d: d.update(revision=True)), "`revision` must be"),
        "revision negative": (edit(lambda d: d.update(revision=-1)), "`revision` must be"),
        "revision huge": (edit(lambda d: d.update(revision=2**64)), "`revision` must be"),
        "revision changed": (edit(lambda d: d.update(revision=2)), "signature invalid"),
        "bad digest": (edit(lambda d: d.update(manifest_sha256="x")), "not a hex sha256"),
    }


SHAPES = _shapes()


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_hostile_signature_json_is_refused(
    signed: Path, keyring: Keyring, shape: str, tmp_path: Path
) -> None:
    change, reason = SHAPES[shape]
    change(signed)
    for door in ("verify", "engine"):
        with pytest.raises(TrustError) as info:
            if door == "verify":
                verify_build(signed, keyring, now=NOW)
            else:
                Engine.load(signed, trust=keyring)
        assert reason in info.value.reason, info.value.reason
    result = CliRunner().invoke(
        main, ["verify", str(signed), "--trust", str(save(keyring, tmp_path))]
    )
    assert result.exit_code == 1, result.output
    assert reason in result.output
    assert "Traceback" not in result.output


def save(keyring: Keyring, tmp_path: Path) -> Path:
    path = tmp_path / "trust.json"
    keyring.save(path)
    return path


def test_hostile_keyring_json_is_a_usage_error(signed: Path, tmp_path: Path) -> None:
    for text in ("[" * 100_000, '{"format": "x", "format": "y"}', "1" * 10_000):
        (tmp_path / "ring.json").write_text(text)
        result = CliRunner().invoke(
            main, ["verify", str(signed), "--trust", str(tmp_path / "ring.json")]
        )
        assert result.exit_code == 2, result.output
        assert "is not valid JSON" in result.output


# ------------------------------------------------------------------ build shapes


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda b: (b / "empty").mkdir(), "unexpected directory empty is not in the manifest"),
        (
            lambda b: (b / "opa" / "nested").mkdir(),
            "unexpected directory opa/nested is not in the manifest",
        ),
        (lambda b: os.mkfifo(b / "pipe"), "unexpected file pipe is not in the manifest"),
        (
            lambda b: (b / "manifest.json").unlink() or (b / "manifest.json").mkdir(),
            "manifest.json",
        ),
    ],
)
def test_extra_directories_and_special_files_are_refused(
    tmp_path: Path,
    keys: dict[str, SigningKey],
    keyring: Keyring,
    change,
    reason: str,  # type: ignore[no-untyped-def]
) -> None:
    build = unsigned(tmp_path)
    sign_build(build, keys["k1"], now=NOW)
    change(build)
    for error in refusals(build, keyring, keys["k1"]):
        assert reason in error.reason, error.reason


def test_symlinked_artifact_and_manifest_are_refused(
    tmp_path: Path, keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    build = unsigned(tmp_path)
    sign_build(build, keys["k1"], now=NOW)
    real = tmp_path / "manifest.real"
    shutil.move(build / "manifest.json", real)
    (build / "manifest.json").symlink_to(real)
    for error in refusals(build, keyring, keys["k1"]):
        assert error.reason == "manifest.json is a symlink"


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda e: e.update(size=2**40), "size must be 0.."),
        (lambda e: e.update(size=True), "size must be 0.."),
        (lambda e: e.update(sha256="ABC"), "has no hex sha256"),
        (lambda e: e.update(extra=1), "must have exactly `path`, `sha256` and `size`"),
        (lambda e: e.update(size=e["size"] - 1), "hash mismatch"),  # the file is larger: bounded
    ],
)
def test_manifest_entry_shapes_are_refused(
    tmp_path: Path,
    keys: dict[str, SigningKey],
    keyring: Keyring,
    change,
    reason: str,  # type: ignore[no-untyped-def]
) -> None:
    build = unsigned(tmp_path)
    edit_manifest(build, lambda entries: change(entries[0]))
    resign(build, keys["k1"])
    for error in refusals(build, keyring, keys["k1"]):
        assert reason in error.reason, error.reason


def test_strict_json_refuses_what_two_parsers_could_read_differently() -> None:
    with pytest.raises(ValueError, match="duplicate key"):
        strict_json(b'{"a": 1, "a": 2}')
    with pytest.raises(ValueError, match="nested too deeply"):
        strict_json(b"[" * 200_000 + b"]" * 200_000)
    assert strict_json(b'{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}


# ------------------------------------------------------------------ rollback


def signed_copy(tmp_path: Path, name: str, key: SigningKey, revision: int, hours: int = 0) -> Path:
    build = tmp_path / name
    make_build(build)
    sign_build(build, key, now=NOW - timedelta(hours=hours), revision=revision)
    return build


def test_rollback_refused_by_api_and_keyring(
    tmp_path: Path, keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    old = signed_copy(tmp_path, "old", keys["k1"], revision=5, hours=2)
    assert verify_build(old, keyring, now=NOW).revision == 5
    with pytest.raises(TrustError) as info:
        verify_build(old, keyring, now=NOW, min_revision=6)
    error = info.value
    assert (error.kind, error.reason) == (
        "rollback",
        "build revision 5 is older than the required revision 6 (rollback)",
    )
    with pytest.raises(TrustError) as info:
        verify_build(old, keyring, now=NOW, not_before=NOW - timedelta(hours=1))
    error = info.value
    assert error.kind == "rollback" and "is older than the required" in error.reason
    keyring.pin(min_revision=6)
    with pytest.raises(TrustError) as info:
        verify_build(old, keyring, now=NOW)
    assert info.value.kind == "rollback"
    assert keyring.min_revision == 6
    with pytest.raises(Exception, match="lowering it needs --lower"):
        keyring.pin(min_revision=3)
    keyring.pin(min_revision=3, lower=True)
    assert verify_build(old, keyring, now=NOW).revision == 5
    again = Keyring.from_json(json.loads(json.dumps(keyring.to_json())), "ring")
    assert again.min_revision == 3


def test_unrevisioned_signature_accepted_unless_a_revision_is_required(
    tmp_path: Path, keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    build = unsigned(tmp_path)
    sign_build(build, keys["k1"], now=NOW)
    resign(build, keys["k1"], revision=None)  # the format before revisions existed
    assert verify_build(build, keyring, now=NOW).revision is None
    with pytest.raises(TrustError) as info:
        verify_build(build, keyring, now=NOW, min_revision=1)
    error = info.value
    assert error.kind == "rollback" and "has no signed revision" in error.reason


def test_rollback_refused_by_cli(
    tmp_path: Path, keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    old = signed_copy(tmp_path, "old", keys["k1"], revision=5)
    ring = save(keyring, tmp_path)
    ok = CliRunner().invoke(main, ["verify", str(old), "--trust", str(ring), "--min-revision", "5"])
    assert ok.exit_code == 0 and "revision 5" in ok.output, ok.output
    no = CliRunner().invoke(main, ["verify", str(old), "--trust", str(ring), "--min-revision", "6"])
    assert no.exit_code == 1 and "refused: build revision 5 is older" in no.output
    later = format_time(NOW + timedelta(minutes=1))
    no = CliRunner().invoke(main, ["verify", str(old), "--trust", str(ring), "--not-before", later])
    assert no.exit_code == 1 and "(rollback)" in no.output
    pin = CliRunner().invoke(main, ["keys", "pin", "--keyring", str(ring), "--min-revision", "7"])
    assert pin.exit_code == 0 and "revision 7 or later" in pin.output
    no = CliRunner().invoke(main, ["verify", str(old), "--trust", str(ring)])
    assert no.exit_code == 1 and "required revision 7" in no.output
    down = CliRunner().invoke(main, ["keys", "pin", "--keyring", str(ring), "--min-revision", "1"])
    assert down.exit_code == 2 and "--lower" in down.output
    bad = CliRunner().invoke(main, ["verify", str(old), "--trust", str(ring), "--not-before", "x"])
    assert bad.exit_code == 2
    out = CliRunner().invoke(
        main, ["sign", str(old), "--key", str(tmp_path / "nokey"), "--revision", "-1"]
    )
    assert out.exit_code == 2


def test_engine_never_reloads_an_older_build(
    tmp_path: Path, keys: dict[str, SigningKey], keyring: Keyring
) -> None:
    live = signed_copy(tmp_path, "live", keys["k1"], revision=10)
    older = signed_copy(tmp_path, "older", keys["k1"], revision=9)
    newer = signed_copy(tmp_path, "newer", keys["k1"], revision=11)
    engine = Engine.load(live, trust=keyring)

    def serve(build: Path) -> None:
        shutil.rmtree(live)
        shutil.copytree(build, live)
        # a different manifest, so the engine does not take it for the loaded build
        edit_manifest(live, lambda entries: entries.append(entry("z.txt")))
        (live / "z.txt").write_bytes(b"")
        resign(
            live,
            keys["k1"],
            revision=json.loads((build / "signature.json").read_bytes())["revision"],
        )

    serve(older)
    result = engine.reload()
    assert not result.ok and isinstance(result.error, TrustError)
    assert result.error.kind == "rollback"
    assert "build revision 9 is older than the required revision 10" in result.error.reason
    serve(newer)
    result = engine.reload()
    assert result.ok and result.swapped, result.message
    assert "revision 11" in result.message
