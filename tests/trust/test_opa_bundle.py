"""OPA bundle signing in OPA's own format.

The in-process OPA (`opa-golib-python-bindings`) exposes policies, data and
queries but no bundle loader, so OPA's bundle verifier itself cannot be run
here.  What the real engine does check: the JWT (ES256, via OPA's own
`io.jwt.decode_verify` with the published `opa-es256.pem`) and every file hash
in its claims (recomputed in Rego with `crypto.sha256`, structured files via
`json.marshal(json.unmarshal(...))`, which equals OPA's canonical hash for data
without `<`, `>`, `&`).  The hashing rules themselves are pinned below against
OPA's `bundle/hash.go`.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest
from trust_helpers import tarball

from mcpdsl.trust import SigningKey, TrustError
from mcpdsl.trust.opa import (
    SIGNATURES_FILE,
    _members,
    canonical_structured,
    file_hash,
    sign_bundle,
    verify_bundle,
)

FILES = {
    ".manifest": b'{"roots": ["shop"], "rego_version": 1}\n',
    "data.json": b'{"b": 1.50, "a": [1e3, -0, "x"], "nested": {"z": null, "y": true}}',
    "shop/edge.rego": b"package shop.edge\n\ndefault allow := false\n",
}


def members(bundle: bytes) -> dict[str, bytes]:
    return {i.name.lstrip("/"): d for i, d in _members(bundle) if d is not None}


def test_canonical_form_matches_opa_hash_go() -> None:
    # keys sorted, no whitespace, numbers exactly as written (json.Number), Go string escaping
    data = (
        '{"b": 1.50, "a": [1e3, "<&>", "\\u2028", "\\u0001\\n", "é"], "c": {"y": false, "x": null}}'
    )
    assert canonical_structured(data.encode()) == (
        b'{"a":[1e3,"<&>","\\u2028","\\u0001\\n","\xc3\xa9"],"b":1.50,"c":{"x":null,"y":false}}'
    )
    assert file_hash("data.json", b'{"a": 1}') == hashlib.sha256(b'{"a":1}').hexdigest()
    assert file_hash("x/data.json", b'{"a": 1}') == hashlib.sha256(b'{"a":1}').hexdigest()
    assert file_hash("a.rego", b'{"a": 1}') == hashlib.sha256(b'{"a": 1}').hexdigest()
    with pytest.raises(TrustError, match="not valid JSON"):
        file_hash("data.json", b"{nope")


def test_sign_bundle_layout_and_determinism(keys: dict[str, SigningKey]) -> None:
    bundle = tarball(FILES)
    signed = sign_bundle(bundle, "k1", keys["k1"].es256)
    assert sign_bundle(bundle, "k1", keys["k1"].es256) == signed  # RFC 6979, no iat
    assert sign_bundle(signed, "k1", keys["k1"].es256) == signed  # re-signing replaces
    names = [i.name for i, _ in _members(signed)]
    assert names == sorted(names) and SIGNATURES_FILE in names
    got = members(signed)
    for name, data in FILES.items():
        assert got[name] == data  # other members untouched
    token = json.loads(got[SIGNATURES_FILE])["signatures"]
    assert len(token) == 1
    assert verify_bundle(signed, "k1", keys["k1"].entry.es256_key()) == sorted(FILES)


def _rebundle(signed: bytes, change) -> bytes:  # type: ignore[no-untyped-def]
    files = members(signed)
    change(files)
    return tarball(files)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda f: f.update({"shop/edge.rego": b"package shop.edge\ndefault allow := true\n"}),
            "`shop/edge.rego` digest mismatch",
        ),
        (
            lambda f: f.update({"data.json": b'{"a": [1e3, -0, "y"], "b": 1.50}'}),
            "`data.json` digest mismatch",
        ),
        (
            lambda f: f.update({"shop/extra.rego": b"package x\n"}),
            "`shop/extra.rego` is not included in the signature",
        ),
        (lambda f: f.pop("shop/edge.rego"), "`shop/edge.rego` is signed but not in the bundle"),
        (lambda f: f.pop(SIGNATURES_FILE), ".signatures.json missing"),
    ],
)
def test_verify_bundle_refuses_tampering(keys, change, message: str) -> None:  # type: ignore[no-untyped-def]
    signed = sign_bundle(tarball(FILES), "k1", keys["k1"].es256)
    with pytest.raises(TrustError, match=message):
        verify_bundle(_rebundle(signed, change), "k1", keys["k1"].entry.es256_key())


def test_structured_files_hash_semantically(keys) -> None:  # type: ignore[no-untyped-def]
    signed = sign_bundle(tarball(FILES), "k1", keys["k1"].es256)
    relaid_json = (
        b'{\n  "nested": {"y": true, "z": null},\n  "a": [1e3, -0, "x"],\n  "b": 1.50\n}\n'
    )
    relaid = _rebundle(signed, lambda f: f.update({"data.json": relaid_json}))
    verify_bundle(relaid, "k1", keys["k1"].entry.es256_key())  # whitespace is not content


def test_verify_bundle_wrong_key(keys) -> None:  # type: ignore[no-untyped-def]
    signed = sign_bundle(tarball(FILES), "k1", keys["impostor"].es256)
    with pytest.raises(TrustError, match="JWT signature invalid"):
        verify_bundle(signed, "k1", keys["k1"].entry.es256_key())
    with pytest.raises(TrustError, match="JWT key id `k1` is not `k2`"):
        verify_bundle(signed, "k2", keys["k2"].entry.es256_key())


def test_not_a_tarball() -> None:
    with pytest.raises(TrustError, match="not a gzipped tar file"):
        _members(b"garbage")


def test_symlink_member_refused(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    import gzip
    import io

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("evil")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(TrustError, match="not a regular file"):
        sign_bundle(gzip.compress(raw.getvalue()), "k1", keys["k1"].es256)


def test_real_opa_verifies_jwt_and_hashes(signed: Path, keys) -> None:  # type: ignore[no-untyped-def]
    from validators import opa_available

    if not opa_available():
        pytest.skip("system component missing: opa-golib-python-bindings")
    from opa_bindings import OpaEngine

    files = {n: d.decode() for n, d in members((signed / "opa/bundle.tar.gz").read_bytes()).items()}
    token = json.loads(files.pop(SIGNATURES_FILE))["signatures"][0]
    pem = keys["k1"].entry.es256
    query = """
[ok, header, claims] := io.jwt.decode_verify(input.token, {"cert": input.pem})
signed := {f.name: f.hash | some f in claims.files}
raw := {name: crypto.sha256(content) | some name, content in input.files}
canonical := {name: crypto.sha256(json.marshal(json.unmarshal(content))) |
  some name, content in input.files
  name in {".manifest", "data.json"}}
"""
    with OpaEngine() as engine:
        result = engine.eval_query(query, {"token": token, "pem": pem, "files": files})[0]
        assert result["ok"] is True
        assert result["header"] == {"alg": "ES256", "kid": "k1", "typ": "JWT"}
        assert set(result["signed"]) == set(files)
        for name, digest in result["signed"].items():
            assert digest == result["canonical"].get(name, result["raw"][name]), name
        other = keys["impostor"].entry.es256
        [bad] = engine.eval_query(
            '[ok, _, _] := io.jwt.decode_verify(input.token, {"cert": input.pem})',
            {"token": token, "pem": other},
        )
        assert bad["ok"] is False
