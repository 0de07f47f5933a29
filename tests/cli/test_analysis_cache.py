"""The z3 analyses' result kept between runs (mcpdsl/pipeline/disk_cache.py, `run_analyze`).

A replayed result must be byte for byte what a fresh run prints (every format,
every exit code); it must never be found for another tree, other data files,
other options or other code; a result computed while a solver check gave up is
not kept; a bad entry is never used and never run.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from repo_paths import REPO, example_trees
from test_layers import LAYERS

import mcpdsl.analysis
from mcpdsl.analysis import Analysis, Options, Tally
from mcpdsl.cachedir import cache_root, open_private_dir, wrap
from mcpdsl.cli import main
from mcpdsl.diagnostics import make
from mcpdsl.ir import model as m
from mcpdsl.pipeline import Compilation, compile_tree
from mcpdsl.pipeline import disk_cache as dc
from mcpdsl.source import Span

TREES = [REPO / "policies", *example_trees()]
FORMATS = ("text", "json", "sarif", "github")
PLAIN = {"NO_COLOR": "1", "COLUMNS": "100"}


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("MCPDSL_ANALYSIS_TIMEOUT_MS", raising=False)
    return tmp_path / "xdg" / "mcpdsl"


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the analyses actually computed (not replayed)."""
    count: list[int] = []
    real = mcpdsl.analysis.analyze

    def counted(*args: Any, **kwargs: Any) -> Analysis:
        count.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(mcpdsl.analysis, "analyze", counted)
    return count


def analysis_entries(home: Path) -> list[Path]:
    return sorted(home.glob(f"{dc.ANALYSIS_PREFIX}*{dc.SUFFIX}"))


def check(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["check", *args], env={**PLAIN, **(env or {})})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def diagnostics(c: Compilation) -> list[tuple[Any, ...]]:
    """Every diagnostic with every field, spans and labels included."""
    return [
        (d.model_dump(), d.span, [(lb.span, lb.message) for lb in d.secondary])
        for d in c.diagnostics
    ]


def analysed(tree: Path) -> Compilation:
    """The compilation `mcpdsl check` makes, without any cache."""
    return compile_tree(tree, analyze=True)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("tree", TREES, ids=lambda p: p.name)
def test_a_replayed_result_prints_what_a_fresh_run_prints(
    tree: Path, fmt: str, cache_home: Path, runs: list[int]
) -> None:
    fresh = check("--format", fmt, str(tree))  # an empty cache: computed, then stored
    computed = len(runs)
    replayed = check("--format", fmt, str(tree))
    assert replayed == fresh
    assert fresh[0] in (0, 1)
    if analysis_entries(cache_home):
        assert len(runs) == computed  # the second run solved nothing


@pytest.mark.parametrize("tree", TREES, ids=lambda p: p.name)
def test_a_stored_result_equals_the_computed_one(
    tree: Path, cache_home: Path, runs: list[int]
) -> None:
    expected = diagnostics(analysed(tree))
    cold = compile_tree(tree, analyze=True, stored=True)
    assert analysis_entries(cache_home), "a definitive result was not stored"
    before = len(runs)
    warm = compile_tree(tree, analyze=True, stored=True)
    assert len(runs) == before
    assert diagnostics(cold) == diagnostics(warm) == expected


def test_a_warm_check_does_not_import_z3(tmp_path: Path) -> None:
    script = (
        "import sys\nfrom mcpdsl.cli import main\n"
        "try:\n    main(sys.argv[1:], prog_name='mcpdsl')\nexcept SystemExit:\n    pass\n"
        "print(sorted({n.split('.')[0] for n in sys.modules} & {'z3', 'lark'}),"
        " 'mcpdsl.evaluate' in sys.modules)\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    env.pop("MCPDSL_ANALYSIS_TIMEOUT_MS", None)

    def loaded() -> str:
        out = subprocess.run(
            [sys.executable, "-c", script, "check", "policies"],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            cwd=REPO,
        )
        return out.stdout.splitlines()[-1]

    assert loaded() == "['lark', 'z3'] True"  # cold: parsed and solved
    assert loaded() == "[] False"  # warm: neither the parser, the solver nor the evaluator


RULES = """package t

service a { image "x/a:1" port 80 stateful }
service b { image "x/b:1" port 80 stateful }

policy p {
  r1: allow service a -> service b when context.n > 5 and context.n < 3
  r2: allow service a -> service b on GET "/v1/**"
  r3: deny service a -> service b on GET "/v1/admin/**"
  r4: allow service b -> service a when context.n > 1
}
"""


def _rules_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "main.mcp").write_text(RULES)
    return tree


def test_editing_one_rule_analyses_again(tmp_path: Path, cache_home: Path, runs: list[int]) -> None:
    tree = _rules_tree(tmp_path)
    first = compile_tree(tree, analyze=True, stored=True)
    assert any(d.code.startswith("A") for d in first.diagnostics), first.diagnostics
    assert len(runs) == 1
    compile_tree(tree, analyze=True, stored=True)
    assert len(runs) == 1
    (tree / "main.mcp").write_text(RULES.replace("context.n < 3", "context.n < 9"))
    edited = compile_tree(tree, analyze=True, stored=True)
    assert len(runs) == 2
    assert diagnostics(edited) == diagnostics(analysed(tree))
    # Moving a rule down a line changes no finding but every span: not the same entry.
    (tree / "main.mcp").write_text(RULES.replace("policy p {", "\npolicy p {"))
    moved = compile_tree(tree, analyze=True, stored=True)
    assert len(runs) == 4  # (3 was `analysed` above)
    assert diagnostics(moved) == diagnostics(analysed(tree))
    assert [d.span.line for d in moved.diagnostics if d.span and d.code.startswith("A")] == [
        d.span.line + 1 for d in first.diagnostics if d.span and d.code.startswith("A")
    ]


def test_changing_a_data_file_analyses_again(
    tmp_path: Path, cache_home: Path, runs: list[int]
) -> None:
    tree = tmp_path / "carbon-forecast"
    shutil.copytree(REPO / "examples" / "carbon-forecast", tree)
    mcp = tree / "forecast.mcp"
    mcp.write_text(re.sub(r"budget +[0-9.]+kg", "budget 0.01kg", mcp.read_text()))
    csv = tree / "forecast.csv"
    rows = [line for line in csv.read_text().splitlines() if not line.startswith("#")]
    csv.write_text("\n".join(rows) + "\n")
    over = compile_tree(tree, analyze=True, stored=True)
    assert [d.code for d in over.diagnostics] == ["A0140"]
    compile_tree(tree, analyze=True, stored=True)
    assert len(runs) == 1
    # A forecast of clean hours only: the budget can be met.
    csv.write_text("\n".join([rows[0], *(re.sub(",[^,]*$", ",0", r) for r in rows[1:])]) + "\n")
    clean = compile_tree(tree, analyze=True, stored=True)
    assert len(runs) == 2
    assert diagnostics(clean) == diagnostics(analysed(tree)) == []
    csv.unlink()  # an unreadable forecast is an input too
    gone = compile_tree(tree, analyze=True, stored=True)
    assert len(runs) == 4
    assert diagnostics(gone) == diagnostics(analysed(tree))


def test_a_data_file_edited_while_solving_is_not_stored(
    tmp_path: Path, cache_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = tmp_path / "carbon-forecast"
    shutil.copytree(REPO / "examples" / "carbon-forecast", tree)
    csv = tree / "forecast.csv"
    real = mcpdsl.analysis.analyze

    def edit_meanwhile(*args: Any, **kwargs: Any) -> Analysis:
        result = real(*args, **kwargs)
        csv.write_text(csv.read_text() + "europe-west3,2025-06-03T00:00:00Z,1\n")
        return result

    monkeypatch.setattr(mcpdsl.analysis, "analyze", edit_meanwhile)
    compile_tree(tree, analyze=True, stored=True)
    assert not analysis_entries(cache_home)
    monkeypatch.setattr(mcpdsl.analysis, "analyze", real)
    compile_tree(tree, analyze=True, stored=True)
    assert len(analysis_entries(cache_home)) == 1


def test_the_key_covers_code_options_sources_inputs_and_spans(cache_home: Path) -> None:
    c = compile_tree(REPO / "examples" / "carbon-forecast", analyze=False)
    key = dc.analysis_key(c, Options())
    assert key is not None and key == dc.analysis_key(c, Options())
    assert dc.analysis_key(c, Options(timeout_ms=1)) != key
    assert dc.analysis_key(c, Options(rlimit=1)) != key
    assert c.project is not None
    moved = c.project.model_copy(update={"span": Span.point("elsewhere.mcp", 9, 9)})
    assert moved == c.project  # `==` ignores spans ...
    c2 = Compilation(root=c.root, sources=c.sources, project=moved, analyze=True)
    assert dc.analysis_key(c2, Options()) != key  # ... the key does not
    rooted = c.project.model_copy(update={"root": "/elsewhere"})
    c3 = Compilation(root=c.root, sources=c.sources, project=rooted, analyze=True)
    assert dc.analysis_key(c3, Options()) != key
    # Every layer the analyses may import is in the code hash (tests/test_layers.py).
    names = [name for layer in LAYERS for name in layer]
    below = set(names[: names.index("analysis") + 1]) - {"compile"}
    assert below <= set(dc.FRONT_END) | set(dc.ANALYSIS_CODE)
    package = Path(dc.__file__).resolve().parent.parent
    for name in dc.ANALYSIS_CODE:
        assert dc._sources(package / name), name


def test_inputs_name_forecasts_and_zones(tmp_path: Path) -> None:
    c = compile_tree(REPO / "examples" / "carbon-forecast")
    assert c.project is not None
    found = mcpdsl.analysis.inputs(c.project)
    assert found is not None
    [(name, data)] = found
    assert "forecast.csv" in name
    assert data == (REPO / "examples" / "carbon-forecast" / "forecast.csv").read_bytes()
    window = m.TimeWindow.fast(start=0, end=60, zone="Europe/Paris")
    during = m.During.fast(days=(0,), window=window)
    scale = m.Scale.fast(name="s", service=m.Ref.fast(name="api"), during=(during,))
    project = m.Project.fast(scales=(scale,))
    zones = mcpdsl.analysis.inputs(project)
    assert zones is not None and [n for n, _ in zones] == ["zone:Europe/Paris"]
    hostile = window.model_copy(update={"zone": "../../etc/passwd"})
    during2 = during.model_copy(update={"window": hostile})
    bad = m.Project.fast(scales=(scale.model_copy(update={"during": (during2,)}),))
    assert mcpdsl.analysis.inputs(bad) is None  # cannot be pinned down: never cached


def test_a_result_where_the_solver_gave_up_is_not_stored(
    tmp_path: Path, cache_home: Path, runs: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = _rules_tree(tmp_path)
    # A resource limit of 1 makes every query give up (A0199, "inconclusive").
    monkeypatch.setattr(mcpdsl.analysis, "options_from_env", lambda: Options(rlimit=1))
    starved = compile_tree(tree, analyze=True, stored=True)
    assert any(d.code == "A0199" for d in starved.diagnostics)
    assert not analysis_entries(cache_home)
    compile_tree(tree, analyze=True, stored=True)
    assert len(runs) == 2


def test_only_definitive_results_count() -> None:
    a = Analysis(m.Project.fast())
    assert a.definitive
    a.tally.gave_up += 1  # a `Linear` check that gave up, e.g. a nicer core not found
    assert not a.definitive
    b = Analysis(m.Project.fast(), tally=Tally())
    b.unconfirmed.append("x: {}")
    assert not b.definitive
    c = Analysis(m.Project.fast(), options=Options(rlimit=1))
    c.encoder.stats.gave_up += 1
    assert not c.definitive


@pytest.fixture
def planted(tmp_path: Path, cache_home: Path) -> Iterator[tuple[Path, str]]:
    tree = _rules_tree(tmp_path)
    compile_tree(tree, analyze=True, stored=True)
    [entry] = analysis_entries(cache_home)
    yield tree, entry.name


class _Touch:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize(
    "kind",
    [
        "truncated",
        "flipped",
        "callable",
        "other-key",
        "not-diagnostics",
        "bad-field",
        "bad-span",
        "symlink",
        "fifo",
    ],
)
def test_a_bad_entry_is_never_used(
    kind: str, planted: tuple[Path, str], cache_home: Path, tmp_path: Path, runs: list[int]
) -> None:
    tree, name = planted
    path = cache_home / name
    data = path.read_bytes()
    marker = tmp_path / "ran"
    fake = (make("A0101", "planted", None),)
    path.unlink()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "flipped":
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    elif kind == "callable":
        path.write_bytes(wrap(pickle.dumps((name, (_Touch(marker),))), dc.ANALYSIS_FORMAT))
    elif kind == "other-key":  # a well-formed entry of another tree, renamed
        path.write_bytes(wrap(dc.encode_analysis("an-other", fake), dc.ANALYSIS_FORMAT))
    elif kind == "not-diagnostics":
        path.write_bytes(wrap(pickle.dumps((name, ("text",))), dc.ANALYSIS_FORMAT))
    elif kind in ("bad-field", "bad-span"):  # a diagnostic whose fields were never validated
        bad = make("A0101", "planted", Span.point("main.mcp", 1, 1))
        if kind == "bad-field":
            bad.__dict__["notes"] = "not a tuple"
        else:
            object.__setattr__(bad.span, "line", "one")
        path.write_bytes(wrap(dc.encode_analysis(name, (bad,)), dc.ANALYSIS_FORMAT))
    elif kind == "symlink":
        target = tmp_path / "elsewhere"
        target.write_bytes(wrap(dc.encode_analysis(name, fake), dc.ANALYSIS_FORMAT))
        path.symlink_to(target)
    else:
        os.mkfifo(path, 0o600)
    before = len(runs)
    again = compile_tree(tree, analyze=True, stored=True)
    assert len(runs) == before + 1  # analysed again
    assert diagnostics(again) == diagnostics(analysed(tree))
    assert not marker.exists()
    assert all(d.message != "planted" for d in again.diagnostics)


def test_a_hostile_cache_directory_is_not_used(
    tmp_path: Path, cache_home: Path, runs: list[int]
) -> None:
    tree = _rules_tree(tmp_path)
    cache_home.mkdir(parents=True, mode=0o700)
    cache_home.chmod(0o777)  # others could plant entries: nothing is read or written
    try:
        c = compile_tree(tree, analyze=True, stored=True)
        compile_tree(tree, analyze=True, stored=True)
        assert len(runs) == 2
        assert not analysis_entries(cache_home)
        assert diagnostics(c) == diagnostics(analysed(tree))
    finally:
        cache_home.chmod(0o700)


def test_concurrent_writers_leave_one_whole_entry(cache_home: Path) -> None:
    directory = open_private_dir(cache_root())
    assert directory is not None
    name = f"{dc.ANALYSIS_PREFIX}{'0' * 40}{dc.SUFFIX}"
    many = tuple(make("A0101", f"finding {i}", Span.point("a.mcp", i + 1, 1)) for i in range(300))
    seen: list[object] = []
    stop = threading.Event()

    def write() -> None:
        store = dc.Store(directory)
        for _ in range(40):
            store.put_analysis(name, many)

    def read() -> None:
        store = dc.Store(directory)
        while not stop.is_set():
            seen.append(store.get_analysis(name))

    try:
        reader = threading.Thread(target=read)
        reader.start()
        writers = [threading.Thread(target=write) for _ in range(2)]
        for w in writers:
            w.start()
        for w in writers:
            w.join()
        stop.set()
        reader.join()
        assert dc.Store(directory).get_analysis(name) == many
        assert all(s is None or s == many for s in seen)  # never half an entry
        assert not [p for p in cache_home.iterdir() if p.name.endswith(".tmp")]
    finally:
        os.close(directory)


def test_two_processes_checking_at_once(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "PYTHONPATH": str(REPO), **PLAIN}
    env.pop("MCPDSL_ANALYSIS_TIMEOUT_MS", None)
    tree = REPO / "examples" / "zero-trust"
    command = [sys.executable, "-m", "mcpdsl", "check", "--format", "json", str(tree)]
    both = [subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE) for _ in range(2)]
    outputs = [p.communicate()[0] for p in both]
    third = subprocess.run(command, env=env, cwd=REPO, capture_output=True, check=False)
    assert outputs[0] == outputs[1] == third.stdout
    assert len(analysis_entries(tmp_path / "mcpdsl")) == 1


@pytest.mark.parametrize("tree", [REPO / "policies", REPO / "examples" / "zero-trust"])
def test_the_clock_does_not_reach_a_result(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Why the key holds no date: a witness that reads `now` carries its own."""
    import mcpdsl.evaluate.policy as policy

    outputs = []
    for moment in (
        datetime(2026, 3, 1, 3, 7, tzinfo=UTC),
        datetime(2031, 8, 9, 17, 45, tzinfo=UTC),
    ):

        class Frozen(datetime):
            @classmethod
            def now(cls, tz: Any = None, _at: datetime = moment) -> Any:
                return _at

        monkeypatch.setattr(policy, "datetime", Frozen)
        outputs.append(diagnostics(analysed(tree)))
    assert outputs[0] == outputs[1]


EDITS = st.lists(
    st.sampled_from(
        [
            ("context.n < 3", "context.n < 9"),
            ('"/v1/admin/**"', '"/v2/**"'),
            ("r4: allow", "r4: deny"),
            ("context.n > 1", "context.n > 1 and context.n < 0"),
            ("  r2:", "\n  r2:"),
        ]
    ),
    min_size=1,
    max_size=3,
)


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(edits=EDITS)
def test_any_sequence_of_edits_replays_only_what_is_current(
    edits: list[tuple[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Edit, check, edit, ..., then back to the first text: each result is the fresh one."""
    base = tmp_path_factory.mktemp("edits")
    tree = base / "tree"
    tree.mkdir()
    versions = [RULES]
    for old, new in edits:
        versions.append(versions[-1].replace(old, new, 1))
    versions.append(RULES)  # an old entry found again
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(base / "xdg"))
        patch.delenv("MCPDSL_ANALYSIS_TIMEOUT_MS", raising=False)
        for text in versions:
            (tree / "main.mcp").write_text(text)
            stored = compile_tree(tree, analyze=True, stored=True)
            assert diagnostics(stored) == diagnostics(analysed(tree))
