"""`mcpdsl.analysis.inputs` names every file the analyses read.

The analysis cache (mcpdsl/pipeline/disk_cache.py) keys on those files' bytes,
so a file an analysis opens without declaring it would make a cached result
stale without anyone noticing.  Each tree is analysed in a fresh interpreter
with an audit hook recording every `open`; what is not code (Python modules,
the z3 library) must be one of the declared inputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from repo_paths import REPO, example_trees

CASES = REPO / "tests" / "analysis" / "cases"
TREES = [
    REPO / "policies",
    *example_trees(),
    *sorted(p for p in CASES.iterdir() if p.is_dir() and ("A014" in p.name or "A012" in p.name)),
]

SCRIPT = """
import json, sys
from mcpdsl.pipeline import compile_tree
import mcpdsl.analysis as analysis
from mcpdsl.analysis import ANALYSES
import importlib
for name in ANALYSES:
    importlib.import_module("mcpdsl.analysis." + name)
import mcpdsl.analysis.encode, mcpdsl.analysis.witness

c = compile_tree(sys.argv[1])
declared = analysis.inputs(c.project) if c.project is not None else ()
opened = []
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes)):
        opened.append(args[0] if isinstance(args[0], str) else args[0].decode())
import zoneinfo
zoneinfo.ZoneInfo.clear_cache()  # the front end loaded the zones already: read them again
sys.addaudithook(hook)
if c.project is not None and not c.has_errors:
    analysis.analyze(c.project, c.sources)
print(json.dumps({"opened": opened, "declared": [n for n, _ in declared or ()]}))
"""


def _code(path: str) -> bool:
    """A module, a compiled extension or a directory listing of the import system."""
    return path.endswith((".py", ".pyc", ".so", ".pth")) or ".so." in path or os.path.isdir(path)


@pytest.mark.parametrize("tree", TREES, ids=lambda p: p.name)
def test_every_file_an_analysis_opens_is_declared(tree: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tree)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=REPO,
    )
    found = json.loads(out.stdout.splitlines()[-1])
    declared: list[str] = found["declared"]
    for path in found["opened"]:
        if _code(path):
            continue
        resolved = str(Path(path).resolve())
        ok = any(
            (name.startswith("intensity:") and name.endswith(":" + resolved))
            or (name.startswith("zone:") and path.endswith("/" + name.removeprefix("zone:")))
            for name in declared
        )
        assert ok, f"{tree.name}: the analyses read `{path}`, which `inputs` does not name"
