"""Hot reload: `engine.reload()` swaps the compiled policy atomically; `Engine.watch` follows edits."""

from __future__ import annotations

import logging
import os
import queue
import random
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from engine_support import PRELUDE, request

from mcpdsl.diagnostics import CompileError
from mcpdsl.engine import Decision, Engine, EngineWatch, Reload

SHOP = Path(__file__).resolve().parent.parent / "trust" / "fixtures" / "shop"

# Two versions of the access file that disagree on many requests: allowed, rules,
# obligations and risk all change.  services.mcp stays the same (it is cached).
ACCESS_A = """package t

policy p {
  default deny
  reads:  allow service frontend -> service api on GET "/v1/**"
  writes: allow service frontend -> service api on POST "/v1/items" when request.auth.mfa
  db:     allow service api -> service postgres when context.device.managed
  risk {
    0.4 when context.failed_logins > 3
  }
  require mfa when risk >= 0.3
}
"""

ACCESS_B = """package t

policy p {
  default deny
  reads:  allow service frontend -> service api on GET, POST "/v1/**"
  block:  deny service frontend -> service api on POST "/v1/items"
  db:     allow service api -> service postgres
  risk {
    0.2 when context.failed_logins > 1
    0.5 when context.failed_logins > 5
  }
  require audit when risk >= 0.5
}
"""

BROKEN = "package t\n\npolicy p {\n  allow service frontend -> service api on GET\n"  # no `}`


def make_tree(root: Path, access: str = ACCESS_A) -> Path:
    tree = root / "tree"
    tree.mkdir()
    (tree / "services.mcp").write_text(PRELUDE)
    (tree / "access.mcp").write_text(access)
    return tree


def requests(n: int, seed: int = 3) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        principal, resource = rnd.choice(
            [("frontend", "api"), ("api", "postgres"), ("frontend", "postgres")]
        )
        out.append(
            request(
                ("service", principal),
                rnd.choice(["GET", "POST", "DELETE"]),
                ("service", resource),
                rnd.choice(["/v1/items", "/v1/a/b", "/v2/x"]),
                request__auth__mfa=rnd.random() < 0.5,
                context__device__managed=rnd.random() < 0.5,
                context__failed_logins=rnd.randrange(8),
            )
        )
    return out


def decisions(tree: Path, reqs: list[dict[str, Any]]) -> list[Decision]:
    engine = Engine.load(tree)
    return [engine.authorize(r) for r in reqs]


class Events:
    """Collects on_reload / on_error calls (they may come from the watch thread)."""

    def __init__(self) -> None:
        self.reloads: queue.Queue[Reload] = queue.Queue()
        self.errors: queue.Queue[Reload] = queue.Queue()

    def drain(self) -> None:
        for q in (self.reloads, self.errors):
            while not q.empty():
                q.get_nowait()


def replace(path: Path, text: str) -> None:
    """Write the way most editors save: a temporary file renamed over the old one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def wait_until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


# ------------------------------------------------------------------ reload()


def test_threads_see_only_whole_policies_through_many_reloads(tmp_path: Path) -> None:
    reqs = requests(300)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    expected_a = decisions(make_tree(tmp_path / "a", ACCESS_A), reqs)
    expected_b = decisions(make_tree(tmp_path / "b", ACCESS_B), reqs)
    differing = sum(a != b for a, b in zip(expected_a, expected_b, strict=True))
    assert differing > len(reqs) // 4  # the versions really disagree

    tree = make_tree(tmp_path)
    engine = Engine.load(tree)
    stop = threading.Event()
    failures: list[str] = []
    seen = [set(), set()]  # type: list[set[str]]
    counts = [0] * 4

    def reader(worker: int) -> None:
        rnd = random.Random(worker)
        try:
            while not stop.is_set():
                i = rnd.randrange(len(reqs))
                d = engine.authorize(reqs[i])
                counts[worker] += 1
                time.sleep(0)  # hand over the GIL so the reloads are not starved
                if d == expected_a[i]:
                    seen[0].add("a")
                elif d == expected_b[i]:
                    seen[1].add("b")
                else:
                    failures.append(f"request {i}: {d} is neither version's decision")
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            failures.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=reader, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    try:
        for n in range(120):
            version = ACCESS_B if n % 2 == 0 else ACCESS_A
            (tree / "access.mcp").write_text(version)
            result = engine.reload()
            assert result.ok and result.swapped, result.message
            assert result.stats is not None and result.stats.reused == 1  # services.mcp cached
            time.sleep(0.001)  # let the readers run against this version
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures, failures[:5]
    assert all(counts) and seen == [{"a"}, {"b"}]
    # 120 reloads end on version A
    assert [engine.authorize(r) for r in reqs] == expected_a


def test_broken_edit_keeps_the_old_policy_and_reports_the_diagnostics(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    events = Events()
    engine = Engine.load(tree, on_reload=events.reloads.put, on_error=events.errors.put)
    reqs = requests(100)
    before = [engine.authorize(r) for r in reqs]

    (tree / "access.mcp").write_text(BROKEN)
    result = engine.reload()  # never raises
    assert not result.ok and not result.swapped
    assert events.errors.get_nowait() is result and events.reloads.empty()
    assert result.errors and all(d.span is not None for d in result.errors)
    assert {d.span.file for d in result.errors if d.span} == {"access.mcp"}
    assert isinstance(result.error, CompileError)
    assert "keeping the previous policy" in result.message
    assert "error[" in result.message  # rendered like `mcpdsl check`
    assert [engine.authorize(r) for r in reqs] == before

    result = engine.reload()  # still broken: reported again
    assert not result.ok and events.errors.get_nowait() is result

    (tree / "access.mcp").write_text(ACCESS_B)
    result = engine.reload()
    assert result.ok and result.swapped and events.reloads.get_nowait() is result
    assert [engine.authorize(r) for r in reqs] == decisions(tree, reqs)


def test_back_to_the_loaded_bytes_is_a_recovery_without_a_swap(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    events = Events()
    engine = Engine.load(tree, on_reload=events.reloads.put, on_error=events.errors.put)
    compiled = engine.compiled

    result = engine.reload()  # nothing changed: nothing compiled, nothing reported
    assert result.ok and not result.swapped and result.stats is None
    assert engine.compiled is compiled and events.reloads.empty()

    (tree / "access.mcp").write_text(BROKEN)
    assert not engine.reload().ok
    (tree / "access.mcp").write_text(ACCESS_A)  # the loaded version again
    result = engine.reload()
    assert result.ok and not result.swapped and engine.compiled is compiled
    assert events.reloads.get_nowait() is result  # the recovery is reported


def test_a_vanished_tree_is_an_input_error(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    events = Events()
    engine = Engine.load(tree, on_error=events.errors.put)
    shutil.rmtree(tree)
    result = engine.reload()
    assert not result.ok and [d.code for d in result.diagnostics] == ["E0501"]
    assert events.errors.get_nowait() is result
    assert engine.authorize(requests(1)[0]) is not None


def test_a_failure_without_on_error_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tree = make_tree(tmp_path)
    engine = Engine.load(tree)
    (tree / "access.mcp").write_text(BROKEN)
    with caplog.at_level(logging.WARNING, logger="mcpdsl.engine"):
        assert not engine.reload().ok
    assert "keeping the previous policy" in caplog.text


def test_an_internal_error_keeps_the_old_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mcpdsl.engine.reload

    tree = make_tree(tmp_path)
    events = Events()
    engine = Engine.load(tree, on_error=events.errors.put)

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("compiler bug")

    monkeypatch.setattr(mcpdsl.engine.reload, "prepare_project", boom)
    (tree / "access.mcp").write_text(ACCESS_B)
    result = engine.reload()
    assert not result.ok and isinstance(result.error, RuntimeError)
    assert "RuntimeError: compiler bug" in result.message
    assert events.errors.get_nowait() is result


def test_reload_retunes_only_the_changed_rate_limits(tmp_path: Path) -> None:
    tree = tmp_path / "shop"
    shutil.copytree(SHOP, tree)
    services = tree / "services.mcp"
    services.write_text(services.read_text().replace("limit 1000/s burst 2000", "limit 1/m"))
    engine = Engine.load(tree)
    key = "service:api:10.0.0.1"
    assert engine.admit(key, now=0) and not engine.admit(key, now=0)

    access = tree / "access.mcp"
    access.write_text(access.read_text().replace("GET, POST", "GET"))
    assert engine.reload().swapped
    assert not engine.admit(key, now=0)  # same limit: the bucket keeps its state

    services.write_text(services.read_text().replace("limit 1/m", "limit 1/m burst 2"))
    assert engine.reload().swapped
    assert engine.admit(key, now=0) and engine.admit(key, now=0)  # new limit: a fresh bucket
    assert not engine.admit(key, now=0)


def test_an_engine_without_a_source_cannot_reload(tmp_path: Path) -> None:
    engine = Engine.from_project(Engine.load(make_tree(tmp_path)).project)
    with pytest.raises(RuntimeError, match="nothing to reload"):
        engine.reload()


# ------------------------------------------------------------------ Engine.watch


def test_watch_follows_edits_and_ignores_a_broken_one(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    reqs = requests(100)
    (tmp_path / "b").mkdir()
    expected_b = decisions(make_tree(tmp_path / "b", ACCESS_B), reqs)
    events = Events()
    with Engine.watch(
        tree, debounce_ms=20, on_reload=events.reloads.put, on_error=events.errors.put
    ) as live:
        assert isinstance(live, EngineWatch) and live.ready.wait(10)
        engine = live.engine
        expected_a = [engine.authorize(r) for r in reqs]

        replace(tree / "access.mcp", ACCESS_B)
        wait_until(lambda: [engine.authorize(r) for r in reqs] == expected_b)
        result = events.reloads.get(timeout=5)
        assert result.swapped and result.changed == ("access.mcp",)

        replace(tree / "access.mcp", BROKEN)
        error = events.errors.get(timeout=15)
        assert not error.ok and error.errors
        assert [engine.authorize(r) for r in reqs] == expected_b  # still version B

        events.drain()
        replace(tree / "access.mcp", ACCESS_A)
        wait_until(lambda: [engine.authorize(r) for r in reqs] == expected_a)
        (tree / "notes.txt").write_text("not a policy file")  # ignored by the filter
    assert not live.running


def test_watch_catches_up_with_an_edit_made_before_it_started(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    engine = Engine.load(tree)
    reqs = requests(50)
    replace(tree / "access.mcp", ACCESS_B)  # before the OS watch exists
    live = engine.start_watching(debounce_ms=20)
    try:
        assert live.ready.wait(10)
        wait_until(lambda: [engine.authorize(r) for r in reqs] == decisions(tree, reqs))
    finally:
        engine.close()  # stops its watchers
    assert not live.running


def test_a_failing_callback_does_not_end_the_watch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tree = make_tree(tmp_path)
    calls: list[Reload] = []

    def bad(result: Reload) -> None:
        calls.append(result)
        raise ValueError("callback bug")

    reqs = requests(50)
    expected_a = decisions(tree, reqs)
    with (
        caplog.at_level(logging.ERROR, logger="mcpdsl.engine"),
        Engine.watch(tree, debounce_ms=20, on_reload=bad) as live,
    ):
        assert live.ready.wait(10)
        replace(tree / "access.mcp", ACCESS_B)
        wait_until(lambda: bool(calls))
        replace(tree / "access.mcp", ACCESS_A)  # still watching after the callback raised
        wait_until(lambda: [live.engine.authorize(r) for r in reqs] == expected_a)
        assert live.running and len(calls) >= 2
    assert "callback failed" in caplog.text
