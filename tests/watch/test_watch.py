"""`mcpdsl watch`: cached front end, keep-last-good rebuilds, live file watching, Ctrl-C."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import mcpdsl.builder.artifacts
from mcpdsl.builder.watch import Rebuild, Watcher
from mcpdsl.compile import TARGETS, load_target
from mcpdsl.pipeline import compile_tree
from mcpdsl.pipeline.cache import FrontEndCache

FIXTURE = Path(__file__).parent.parent / "trust" / "fixtures" / "shop"
BROKEN = 'service api {\n  image "x"\n  port 8080\n'  # unclosed block: a syntax error


@pytest.fixture
def targets() -> tuple[str, ...]:
    """Every importable real target; every build also holds `ir/project.json`, the IR
    (mcpdsl.builder.artifacts.ir_artifact), which changes with every semantic edit."""
    real = []
    for name in TARGETS:
        try:
            load_target(name)
            real.append(name)
        except ImportError:
            pass
    return tuple(real)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    shutil.copytree(FIXTURE, root)
    return root


def snapshot(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
    }


def same_compilation(a, b) -> None:  # type: ignore[no-untyped-def]
    assert a.diagnostics == b.diagnostics
    assert (a.project is None) == (b.project is None)
    if a.project is not None:
        assert a.project.model_dump(mode="json") == b.project.model_dump(mode="json")
    assert [s.path for s in a.sources] == [s.path for s in b.sources]


def test_cache_reuses_unchanged_files_and_equals_the_pipeline(tree: Path) -> None:
    cache = FrontEndCache()
    assert cache.enabled
    first, stats = cache.compile(tree)
    assert (stats.compiled, stats.reused) == (2, 0)
    same_compilation(first, compile_tree(tree))
    again, stats = cache.compile(tree)
    assert (stats.compiled, stats.reused) == (0, 2)
    same_compilation(again, first)

    services = tree / "services.mcp"
    services.write_text(services.read_text().replace("replicas 2..10", "replicas 3..12"))
    edited, stats = cache.compile(tree)
    assert (stats.compiled, stats.reused) == (1, 1)
    same_compilation(edited, compile_tree(tree))
    assert edited.project != first.project

    services.write_text(BROKEN)
    broken, stats = cache.compile(tree)
    assert broken.has_errors and broken.project is None
    same_compilation(broken, compile_tree(tree))

    (tree / "access.mcp").unlink()  # a deleted file leaves the cache too
    cache.compile(tree)
    assert set(cache._files) == {"services.mcp"}


def test_keep_last_good(tree: Path, tmp_path: Path, targets: tuple[str, ...]) -> None:
    out = tmp_path / "build"
    lines: list[str] = []
    watcher = Watcher(tree, out, targets=targets, echo=lines.append)
    assert watcher.rebuild().wrote
    good = snapshot(out)
    assert "manifest.json" in good and "ir/project.json" in good

    services = tree / "services.mcp"
    services.write_text(services.read_text().replace("replicas 2..10", "replicas 3..12"))
    result = watcher.rebuild(["services.mcp"])
    assert result.ok and result.wrote and result.stats.reused == 1
    edited = snapshot(out)
    assert edited["ir/project.json"] != good["ir/project.json"]

    services.write_text(BROKEN)
    result = watcher.rebuild(["services.mcp"])
    assert not result.ok and not result.wrote and result.errors >= 1
    assert snapshot(out) == edited  # byte-identical: the broken edit replaced nothing
    assert any(line.startswith("error[") for line in lines)
    assert "keeping the last good artifacts" in result.message

    (tree / "access.mcp").unlink()
    services.unlink()  # no .mcp file left: an input error, still nothing replaced
    result = watcher.rebuild()
    assert not result.wrote
    assert snapshot(out) == edited


def test_internal_error_keeps_watching(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(name: str):  # type: ignore[no-untyped-def]
        raise RuntimeError("target bug")

    monkeypatch.setattr(mcpdsl.builder.artifacts, "load_target", boom)
    lines: list[str] = []
    result = Watcher(tree, tmp_path / "build", targets=("x",), echo=lines.append).rebuild()
    assert not result.wrote and "internal error: RuntimeError: target bug" in result.message
    assert not (tmp_path / "build").exists()


class LiveWatcher:
    """Watcher.run in a thread; edits wait for the rebuild they cause."""

    def __init__(self, tree: Path, out: Path, targets: tuple[str, ...]) -> None:
        self.results: queue.Queue[Rebuild] = queue.Queue()
        self.stop = threading.Event()
        self.lines: list[str] = []
        self.watcher = Watcher(tree, out, targets=targets, echo=self.lines.append)
        self.thread = threading.Thread(
            target=self.watcher.run,
            kwargs={"debounce_ms": 50, "stop_event": self.stop, "on_rebuild": self.results.put},
            daemon=True,
        )
        self.thread.start()

    def next(self, timeout: float = 30) -> Rebuild:
        return self.results.get(timeout=timeout)

    def edit(self, path: Path, text: str) -> Rebuild:
        # The OS watch starts just after the first build; rewrite until a rebuild is seen.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            path.write_text(text)
            try:
                result = self.results.get(timeout=2)
            except queue.Empty:
                continue
            # One edit may arrive as several events; the last rebuild after a quiet
            # period is the one that saw the final content.
            while True:
                try:
                    result = self.results.get(timeout=0.3)
                except queue.Empty:
                    return result
        raise AssertionError("no rebuild after the edit")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


def test_live_watch_edit_break_repair(tree: Path, tmp_path: Path, targets: tuple[str, ...]) -> None:
    out = tmp_path / "build"
    live = LiveWatcher(tree, out, targets)
    try:
        assert live.next().wrote
        first = snapshot(out)
        services = tree / "services.mcp"
        original = services.read_text()

        edited_text = original.replace("replicas 2..10", "replicas 3..12")
        result = live.edit(services, edited_text)
        assert result.wrote and result.changed == ("services.mcp",)
        assert result.stats.compiled <= 1 and result.stats.reused >= 1  # access.mcp: cached
        edited = snapshot(out)
        assert edited["ir/project.json"] != first["ir/project.json"]

        result = live.edit(services, BROKEN)
        assert not result.ok and not result.wrote
        assert snapshot(out) == edited

        result = live.edit(services, original)
        assert result.wrote
        assert snapshot(out) == first  # deterministic: same input, same bytes
    finally:
        live.close()
    assert any("rebuilt" in line and " ms " in line for line in live.lines)


def test_cli_watch_ctrl_c_exits_cleanly(tree: Path, tmp_path: Path) -> None:
    available = [n for n in TARGETS if _importable(n)]
    if not available:
        pytest.skip("no compile target is available yet")
    out = tmp_path / "build"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mcpdsl",
            "watch",
            str(tree),
            "--out",
            str(out),
            "--target",
            ",".join(available),
            "--debounce",
            "20",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    try:
        deadline = time.monotonic() + 60
        while not (out / "manifest.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stdout + stderr
    assert "rebuilt" in stdout and stdout.rstrip().endswith("stopped")


def _importable(name: str) -> bool:
    try:
        load_target(name)
    except ImportError:
        return False
    return True
