"""The front end's per-file results kept between runs (mcpdsl/pipeline/disk_cache.py).

A stored result must be exactly what the stages compute (spans included), must
never be served for other bytes, another path or another toolchain, and must
never run code from the cache file.
"""

from __future__ import annotations

import os
import pickle
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from repo_paths import FIXTURES, REPO
from test_layers import LAYERS

from mcpdsl.cachedir import cache_root, open_private_dir, wrap
from mcpdsl.ir import model as m
from mcpdsl.pipeline import Compilation, InputError, compile_tree
from mcpdsl.pipeline import disk_cache as dc
from mcpdsl.source import Span

TREES = [
    REPO / "policies",
    REPO / "examples",
    *sorted(p for p in (FIXTURES / "diagnostics").iterdir() if p.is_dir()),
]


def deep(value: Any) -> Any:
    """A value as plain data, spans included (`==` on IR nodes ignores spans)."""
    if isinstance(value, m.Node):
        fields = sorted(value.__dict__.items())
        return (type(value).__name__, tuple((k, deep(v)) for k, v in fields))
    if isinstance(value, (list, tuple)):
        return tuple(deep(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, deep(v)) for k, v in value.items()))
    if isinstance(value, Decimal):
        return ("Decimal", str(value))
    return value


def outcome(c: Compilation) -> tuple[Any, ...]:
    return (
        deep(c.project),
        deep(c.units),
        [(d, d.span) for d in c.diagnostics],
        sorted((s.path, s.text) for s in c.sources),
    )


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "mcpdsl"


def entries(home: Path) -> list[Path]:
    return sorted(home.glob(f"{dc.PREFIX}*{dc.SUFFIX}"))


@pytest.mark.parametrize("tree", TREES, ids=lambda p: p.name)
def test_stored_results_equal_computed_ones_cold_and_warm(tree: Path, cache_home: Path) -> None:
    try:
        expected = outcome(compile_tree(tree))
    except InputError as exc:  # an unusable tree is refused before any stage, as before
        with pytest.raises(InputError) as stored:
            compile_tree(tree, stored=True)
        assert stored.value.diagnostic == exc.diagnostic
        return
    cold = compile_tree(tree, stored=True)
    assert entries(cache_home)  # the cold run stored its files
    with pytest.MonkeyPatch.context() as patch:  # warm: nothing is parsed or lowered
        patch.setattr(dc, "_compute", lambda *_: pytest.fail("computed a stored file"))
        warm = compile_tree(tree, stored=True)
    assert outcome(cold) == expected
    assert outcome(warm) == expected
    assert warm.parsed == []


def test_an_edited_file_is_computed_again(tmp_path: Path, cache_home: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    main = tree / "main.mcp"
    main.write_text('package a\n\nservice api {\n  image "x:1"\n  port 8080\n}\n')
    assert not compile_tree(tree, stored=True).has_errors
    main.write_text('package a\n\nservice api {\n  image "x:1"\n  port 80800\n}\n')
    again = compile_tree(tree, stored=True)
    assert outcome(again) == outcome(compile_tree(tree))
    assert again.has_errors
    assert len(entries(cache_home)) == 2


def test_the_key_covers_path_bytes_and_every_front_end_layer() -> None:
    assert dc.entry_name("a.mcp", b"x") != dc.entry_name("b.mcp", b"x")
    assert dc.entry_name("a.mcp", b"x") != dc.entry_name("a.mcp", b"y")
    # The per-file stages live in `ir` and may import only lower layers
    # (tests/test_layers.py): the toolchain hash must read every one of them.
    names = [name for layer in LAYERS for name in layer]
    up_to_ir = names[: names.index("ir") + 1]
    assert set(up_to_ir) <= set(dc.FRONT_END)
    package = Path(dc.__file__).resolve().parent.parent
    for name in dc.FRONT_END:
        assert dc._sources(package / name), name


def _plant(home: Path, tree: Path, payload: bytes) -> None:
    data = (tree / "main.mcp").read_bytes()
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    (home / dc.entry_name("main.mcp", data)).write_bytes(wrap(payload, dc.FORMAT))


class _Touch:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("kind", ["callable", "other-file", "not-an-entry", "torn"])
def test_a_bad_entry_is_never_used(kind: str, tmp_path: Path, cache_home: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "main.mcp").write_text('package a\n\nservice api {\n  image "x:1"\n  port 8080\n}\n')
    marker = tmp_path / "ran"
    if kind == "callable":
        payload = pickle.dumps(((), (), (_Touch(marker),)))
    elif kind == "other-file":
        payload = pickle.dumps(((("other.mcp", "package b\n"),), (), ()))
    elif kind == "not-an-entry":
        payload = pickle.dumps(((), (), (Decimal(1),)))
    else:
        payload = b"\x80\x05garbage"
    _plant(cache_home, tree, payload)
    assert outcome(compile_tree(tree, stored=True)) == outcome(compile_tree(tree))
    assert not marker.exists()


def test_only_ir_data_classes_can_be_unpickled() -> None:
    span = Span.point("a.mcp", 1, 1)
    entry = dc.Entry((("a.mcp", "x"),), (), (m.FileUnit.fast(path="a.mcp", span=span),))
    decoded = dc.decode(dc.encode(entry))
    assert decoded is not None and deep(decoded.units) == deep(entry.units)
    assert dc.decode(pickle.dumps((((1, 2),), (), ()))) is None  # wrong shapes
    assert dc.decode(pickle.dumps(((), (), (), ()))) is None
    for refused in (Path.touch, print, pickle.loads):
        assert dc.decode(pickle.dumps(((), (), (refused,)))) is None


def test_the_store_keeps_the_newest_entries(cache_home: Path) -> None:
    directory = open_private_dir(cache_root())
    assert directory is not None
    store = dc.Store(directory)
    entry = dc.Entry((), (), ())
    names = [f"{dc.PREFIX}{i:040d}{dc.SUFFIX}" for i in range(5)]
    for age, name in enumerate(names):
        store.put(name, entry)
        path = cache_home / name
        path.touch()
        stamp = 1_000_000 + age
        os.utime(path, (stamp, stamp))
    (cache_home / "parser-keep.pickle").write_bytes(b"")  # not an entry: never pruned
    store.prune(keep=3)
    assert [p.name for p in entries(cache_home)] == names[2:]
    assert (cache_home / "parser-keep.pickle").exists()
    assert store.get(names[4]) == entry
