"""Fixtures for the trust tests: keys, a keyring, and a signed build of the fixture tree."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from trust_helpers import NOW, make_build

from mcpdsl.trust import Keyring, SigningKey, generate_key, sign_build


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SigningKey]:
    root = tmp_path_factory.mktemp("keys")
    window = {"not_before": NOW - timedelta(days=1), "not_after": NOW + timedelta(days=30)}
    return {
        "k1": generate_key("k1", root / "k1", **window),
        "impostor": generate_key("k1", root / "impostor", **window),  # same id, other keys
        "k2": generate_key("k2", root / "k2", **window),
    }


@pytest.fixture
def keyring(keys: dict[str, SigningKey]) -> Keyring:
    ring = Keyring()
    ring.add(keys["k1"].entry)
    ring.add(keys["k2"].entry)
    return ring


@pytest.fixture(scope="session")
def _signed_template(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, SigningKey]) -> Path:
    out = tmp_path_factory.mktemp("template") / "build"
    make_build(out)
    sign_build(out, keys["k1"], now=NOW)
    return out


@pytest.fixture
def signed(tmp_path: Path, _signed_template: Path) -> Path:
    """A fresh copy of the fixture build, signed by k1 at NOW."""
    out = tmp_path / "build"
    shutil.copytree(_signed_template, out)
    return out
