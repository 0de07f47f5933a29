"""The parser cache never loads code from places other users can write.

Each planted payload would create a marker file when unpickled; the marker's
absence after a real `mcpdsl check` proves it was never loaded.
"""

from __future__ import annotations

import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from lark import Lark
from repo_paths import REPO

from mcpdsl.syntax import parser_cache as pc
from mcpdsl.syntax.parser import PARSER_OPTIONS, grammar_text

GOOD = (
    'package shop\n\nservice api {\n  image "ghcr.io/shop/api:1.0.0"\n  port 8080\n  stateful\n}\n'
)


class _Plant:
    """Unpickling this calls `Path.touch(marker)`: proof that the pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def payload(marker: Path) -> bytes:
    return pickle.dumps({"data": _Plant(marker), "memo": {}})


def cache_file(cache_home: Path, name: str = "parser") -> Path:
    return cache_home / "mcpdsl" / f"{name}-{pc.cache_key(grammar_text(), PARSER_OPTIONS)}.pickle"


def lark_cache_header(path: Path) -> bytes:
    """The first line lark writes to `path` as a cache of mcpdsl's grammar and options.

    Lark's hash covers the grammar, the options (the cache path among them, in
    the order older releases passed them) and the lark and Python versions.
    """
    Lark(grammar_text(), cache=str(path), **PARSER_OPTIONS)  # type: ignore[arg-type]
    return path.read_bytes().split(b"\n", 1)[0] + b"\n"


def check(tmp_path: Path, cache_home: Path) -> subprocess.CompletedProcess[str]:
    root = tmp_path / "tree"
    root.mkdir(exist_ok=True)
    (root / "main.mcp").write_text(GOOD)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "TMPDIR": str(tmp_path / "tmp"),
        "XDG_CACHE_HOME": str(cache_home),
    }
    return subprocess.run(
        [sys.executable, "-m", "mcpdsl", "check", "--no-analyze", str(root)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_a_pickle_planted_in_the_temp_dir_is_never_loaded(tmp_path: Path) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir()
    marker = tmp_path / "pwned"
    # What lark's own cache would accept: its header line (a hash anyone can
    # compute from the grammar and options) followed by a pickle.  Planted under
    # the names older releases used, it ran on `mcpdsl check`.
    planted = shared / "mcpdsl-grammar.cache"
    planted.write_bytes(lark_cache_header(planted) + pickle.dumps(_Plant(marker)))
    planted.chmod(0o666)
    result = check(tmp_path, tmp_path / "home-cache")
    assert result.returncode == 0, result.stderr
    assert not marker.exists()


def test_a_malicious_pickle_with_a_valid_checksum_in_the_cache_is_not_run(
    tmp_path: Path,
) -> None:
    """Even a file that passes every ownership check is decoded as data only."""
    home = tmp_path / "cache"
    target = cache_file(home)
    target.parent.mkdir(parents=True, mode=0o700)
    marker = tmp_path / "pwned"
    target.write_bytes(pc.wrap(payload(marker)))
    target.chmod(0o600)
    result = check(tmp_path, home)
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    # ... and it was replaced by a real parser, which loads.
    assert pc.load_data(pc.unwrap(target.read_bytes()) or b"") is not None


@pytest.mark.parametrize("problem", ["group-writable", "symlink", "fifo", "bad-checksum"])
def test_a_cache_file_that_fails_a_check_is_not_read(tmp_path: Path, problem: str) -> None:
    home = tmp_path / "cache"
    directory = home / "mcpdsl"
    directory.mkdir(parents=True, mode=0o700)
    name = "x.pickle"
    data = pc.wrap(b"not a pickle at all")
    if problem == "group-writable":
        (directory / name).write_bytes(data)
        (directory / name).chmod(0o660)
    elif problem == "symlink":
        (tmp_path / "elsewhere").write_bytes(data)
        (directory / name).symlink_to(tmp_path / "elsewhere")
    elif problem == "fifo":
        os.mkfifo(directory / name)  # must not block
    else:
        (directory / name).write_bytes(data[:-1] + b"X")
        (directory / name).chmod(0o600)
    fd = os.open(directory, os.O_RDONLY)
    try:
        assert pc.read_verified(fd, name) is None
    finally:
        os.close(fd)


def test_a_good_cache_file_is_read(tmp_path: Path) -> None:
    directory = tmp_path / "d"
    directory.mkdir(mode=0o700)
    (directory / "x.pickle").write_bytes(pc.wrap(b"payload"))
    (directory / "x.pickle").chmod(0o600)
    fd = os.open(directory, os.O_RDONLY)
    try:
        assert pc.read_verified(fd, "x.pickle") == b"payload"
    finally:
        os.close(fd)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_a_cache_file_owned_by_someone_else_is_not_read(tmp_path: Path) -> None:
    directory = tmp_path / "d"
    directory.mkdir(mode=0o700)
    (directory / "x.pickle").write_bytes(pc.wrap(b"payload"))
    (directory / "x.pickle").chmod(0o600)
    os.chown(directory / "x.pickle", 65534, 65534)
    fd = os.open(directory, os.O_RDONLY)
    try:
        assert pc.read_verified(fd, "x.pickle") is None
    finally:
        os.close(fd)


@pytest.mark.parametrize("problem", ["world-writable", "symlink", "foreign-owner"])
def test_a_cache_directory_that_is_not_private_is_not_used(tmp_path: Path, problem: str) -> None:
    home = tmp_path / "cache"
    home.mkdir()
    directory = home / "mcpdsl"
    if problem == "world-writable":
        directory.mkdir(mode=0o700)
        directory.chmod(0o777)
    elif problem == "symlink":
        (tmp_path / "shared").mkdir(mode=0o700)
        directory.symlink_to(tmp_path / "shared", target_is_directory=True)
    else:
        if os.geteuid() != 0:
            pytest.skip("changing a directory's owner needs root")
        directory.mkdir(mode=0o700)
        os.chown(directory, 65534, 65534)
    assert pc._open_private_dir(directory) is None


def test_the_cache_round_trips_and_is_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    built = pc.cached_parser("parser", grammar_text(), PARSER_OPTIONS)
    target = cache_file(tmp_path)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    loaded = pc.cached_parser("parser", grammar_text(), PARSER_OPTIONS)
    assert loaded is not built
    assert loaded.parse(GOOD, start="start") == built.parse(GOOD, start="start")


def test_cache_root_follows_xdg() -> None:
    assert pc.cache_root({"XDG_CACHE_HOME": "/x/y"}) == Path("/x/y/mcpdsl")
    relative = pc.cache_root({"XDG_CACHE_HOME": "rel"})
    assert relative is not None and relative.is_absolute()  # a relative value is ignored
