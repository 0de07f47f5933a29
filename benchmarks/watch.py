"""Watch benchmark: reload latency, edit -> artifacts written.

    python benchmarks/watch.py [--edits 10] [--debounce 50]

For each tree (policies/, the trust test fixture, and a generated 100-file
tree) it prints a markdown table with

* cold:      a full check + build + atomic write, nothing cached (ms);
* uncached:  the same after a one-file edit, without the per-file cache (ms);
* cached:    the same with `FrontEndCache` (only the edited file is re-parsed),
             split into the front end (read, parse+lower, resolve, typecheck) and
             the compile targets (the rest is the atomic write);
* latency:   a live `Watcher` in a thread, median / max over N edits of the time
             from writing a file to the rebuild being finished (artifacts written,
             or diagnostics printed when the tree has errors), debounce included.

Edits append a comment line to one file.  Only the importable compile targets
are used (the others are listed).  Numbers are wall-clock on this machine.
"""

from __future__ import annotations

import argparse
import queue
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def available_targets() -> tuple[tuple[str, ...], list[str]]:
    from mcpdsl.compile import TARGETS, load_target

    ok, missing = [], []
    for name in TARGETS:
        try:
            load_target(name)
            ok.append(name)
        except ImportError:
            missing.append(name)
    return tuple(ok), missing


def rebuild_ms(watcher) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    watcher.rebuild()
    return (time.perf_counter() - start) * 1000


def measure(
    name: str, tree: Path, work: Path, targets: tuple[str, ...], edits: int, debounce: int
) -> dict[str, str]:
    from mcpdsl.builder.watch import Watcher
    from mcpdsl.pipeline.cache import FrontEndCache

    src = work / name
    shutil.copytree(tree, src)
    files = sorted(src.rglob("*.mcp"))
    victim = files[0]
    out = work / f"{name}-build"
    quiet: list[str] = []

    cold = Watcher(src, out, targets=targets, echo=quiet.append)
    cold_ms = rebuild_ms(cold)
    status = "ok" if cold.history[-1].ok else f"{cold.history[-1].errors} errors (nothing written)"

    def edit(i: int) -> None:
        with victim.open("a") as handle:
            handle.write(f"# edit {i}\n")

    uncached = []
    for i in range(3):
        edit(i)
        fresh = Watcher(src, out, targets=targets, echo=quiet.append)  # new, empty cache
        uncached.append(rebuild_ms(fresh))
    warm = Watcher(src, out, targets=targets, echo=quiet.append)
    warm.rebuild()
    cached = []
    split = []
    for i in range(3):
        edit(100 + i)
        cached.append(rebuild_ms(warm))
        t = warm.history[-1].timings
        targets_s = sum(v for k, v in t.items() if k.startswith("target:"))
        split.append((sum(t.values()) - targets_s - t.get("write", 0.0), targets_s))
    assert isinstance(warm.cache, FrontEndCache)
    front_ms, targets_ms = (min(x[i] for x in split) * 1000 for i in (0, 1))

    done: queue.Queue[float] = queue.Queue()
    stop = threading.Event()
    live = Watcher(src, out, targets=targets, echo=quiet.append)
    thread = threading.Thread(
        target=live.run,
        kwargs={
            "debounce_ms": debounce,
            "stop_event": stop,
            "on_rebuild": lambda r: done.put(time.perf_counter()),
        },
        daemon=True,
    )
    thread.start()
    done.get(timeout=120)
    time.sleep(0.5)  # let the OS watch start
    latencies = []
    for i in range(edits):
        start = time.perf_counter()
        edit(1000 + i)
        finished = done.get(timeout=60)
        latencies.append((finished - start) * 1000)
        while True:  # drain duplicate events of the same edit
            try:
                done.get(timeout=0.2)
            except queue.Empty:
                break
    stop.set()
    thread.join(timeout=10)
    return {
        "tree": name,
        "files": str(len(files)),
        "status": status,
        "cold ms": f"{cold_ms:.0f}",
        "uncached ms": f"{min(uncached):.0f}",
        "cached ms": f"{min(cached):.0f}",
        "of which front end / targets ms": f"{front_ms:.0f} / {targets_ms:.0f}",
        "latency p50 ms": f"{statistics.median(latencies):.0f}",
        "latency max ms": f"{max(latencies):.0f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument("--debounce", type=int, default=50)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from frontend import generate  # the 100-file, 10,000-rule tree of the front-end benchmark

    targets, missing = available_targets()
    trees: list[tuple[str, Path]] = []
    if (ROOT / "policies").is_dir() and any((ROOT / "policies").rglob("*.mcp")):
        trees.append(("policies", ROOT / "policies"))
    trees.append(("fixture", ROOT / "tests" / "trust" / "fixtures" / "shop"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        generated = work / "generated-src"
        generated.mkdir()
        generate(generated)
        trees.append(("generated", generated))
        for name, tree in trees:
            rows.append(measure(name, tree, work, targets, args.edits, args.debounce))
    print(
        f"targets: {', '.join(targets) or 'none'}"
        + (f" (not available: {', '.join(missing)})" if missing else "")
    )
    print(f"debounce: {args.debounce} ms, {args.edits} live edits per tree\n")
    headers = list(rows[0])
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" for _ in headers) + "|")
    for row in rows:
        print("| " + " | ".join(row[h] for h in headers) + " |")


if __name__ == "__main__":
    main()
