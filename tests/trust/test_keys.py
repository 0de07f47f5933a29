"""Key directories, passphrases, keyring entries and keyrings."""

from __future__ import annotations

import json
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from trust_helpers import NOW

from mcpdsl.trust import KeyEntry, Keyring, TrustInputError, generate_key, load_signing_key
from mcpdsl.trust.common import format_time


def test_key_directory_layout_and_round_trip(tmp_path: Path) -> None:
    key = generate_key("team.k-1", tmp_path / "k")
    names = sorted(p.name for p in (tmp_path / "k").iterdir())
    assert names == [
        "ed25519.pem",
        "es256.pem",
        "key.json",
        "ml-dsa-65.pem",
        "opa-es256.pem",
        "public.json",
    ]
    for name in ("ed25519.pem", "ml-dsa-65.pem", "es256.pem", "key.json"):
        assert stat.S_IMODE((tmp_path / "k" / name).stat().st_mode) == 0o600
    assert (tmp_path / "k" / "ed25519.pem").read_text().startswith("-----BEGIN PRIVATE KEY-----")
    loaded = load_signing_key(tmp_path / "k")
    assert loaded.entry == key.entry
    assert load_signing_key(tmp_path / "k" / "key.json").entry == key.entry  # KEYFILE form
    entry = KeyEntry.from_json(json.loads((tmp_path / "k" / "public.json").read_text()), "x")
    assert entry == key.entry
    assert key.not_after - key.not_before == timedelta(days=365)
    assert (tmp_path / "k" / "opa-es256.pem").read_text() == entry.es256


def test_passphrase_encrypted_keys(tmp_path: Path) -> None:
    key = generate_key("k1", tmp_path / "k", passphrase=b"correct horse")
    pem = (tmp_path / "k" / "ml-dsa-65.pem").read_text()
    assert pem.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert load_signing_key(tmp_path / "k", b"correct horse").entry == key.entry
    with pytest.raises(TrustInputError, match="wrong passphrase for key `k1`"):
        load_signing_key(tmp_path / "k", b"battery staple")
    with pytest.raises(TrustInputError, match="is encrypted; pass its passphrase"):
        load_signing_key(tmp_path / "k")


def test_refuses_to_overwrite_and_bad_input(tmp_path: Path) -> None:
    generate_key("k1", tmp_path / "k")
    with pytest.raises(TrustInputError, match="already holds a key"):
        generate_key("k1", tmp_path / "k")
    generate_key("k1", tmp_path / "k", force=True)
    with pytest.raises(TrustInputError, match="key id `bad id` is invalid"):
        generate_key("bad id", tmp_path / "other")
    with pytest.raises(TrustInputError, match="not_after must be later"):
        generate_key("k2", tmp_path / "k2", not_before=NOW, not_after=NOW)
    with pytest.raises(TrustInputError, match="does not exist"):
        load_signing_key(tmp_path / "missing")


def test_keyring_round_trip_add_revoke(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    ring = Keyring()
    assert ring.add(keys["k1"].entry)
    assert not ring.add(keys["k1"].entry)  # same entry again: no-op
    with pytest.raises(TrustInputError, match="key ids are never reused"):
        ring.add(keys["impostor"].entry)
    ring.add(keys["k2"].entry)
    ring.revoke("k2", NOW, reason="superseded")
    with pytest.raises(TrustInputError, match="no key `k9`"):
        ring.revoke("k9")
    ring.save(tmp_path / "ring.json")
    again = Keyring.load(tmp_path / "ring.json")
    assert again == ring
    doc = json.loads((tmp_path / "ring.json").read_text())
    assert doc["revoked"] == [
        {"key_id": "k2", "reason": "superseded", "revoked_at": format_time(NOW)}
    ]
    assert [k["key_id"] for k in doc["keys"]] == ["k1", "k2"]


def test_single_entry_is_a_keyring(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "public.json").write_text(json.dumps(keys["k1"].entry.to_json()))
    assert list(Keyring.load(tmp_path / "public.json").keys) == ["k1"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"format": "other"}', "is not a keyring"),
        ('{"format": "mcpdsl-keyring/1", "keys": {}}', "must be lists"),
        ('{"format": "mcpdsl-keyring/1", "keys": [{"key_id": "k1"}]}', "lacks field"),
        (
            '{"format": "mcpdsl-keyring/1", "keys": [], "revoked": [{"key_id": "k1"}]}',
            "needs `key_id` and `revoked_at`",
        ),
    ],
)
def test_malformed_keyrings(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "ring.json").write_text(content)
    with pytest.raises(TrustInputError, match=message):
        Keyring.load(tmp_path / "ring.json")


def test_malformed_public_key_is_rejected(keys) -> None:  # type: ignore[no-untyped-def]
    doc = keys["k1"].entry.to_json()
    doc["public_keys"]["ml-dsa-65"] = doc["public_keys"]["ed25519"]
    with pytest.raises(TrustInputError, match="ml-dsa-65 public key has the wrong type"):
        KeyEntry.from_json(doc, "entry")
