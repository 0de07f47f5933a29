"""`mcpdsl simulate`: HPA walkthrough sequences, conservation, determinism, hostile traces."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mcpdsl
from mcpdsl.cli import main
from mcpdsl.simulate import run, service_names
from mcpdsl.simulate.trace import parse_trace

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"

TREE = """package demo
pool web { node { cpu 4, memory 16Gi, idle 20W, peak 80W, cost $0.2/h } nodes 1..3 }
service api { image "x:1" port 80 cpu 1 memory 1Gi namespace "web" pool web }
scale api {
  replicas 1..%(max)d
  target cpu 50%%
  up by 100%% every 15s stabilize 0s
  down by 100%% every 15s stabilize 0s
}
"""


def tree(tmp_path: Path, maximum: int = 10, name: str = "t") -> Path:
    root = tmp_path / name
    root.mkdir()
    (root / "main.mcp").write_text(TREE % {"max": maximum})
    return root


def trace(tmp_path: Path, rows: list[tuple[int, str, float]], name: str = "load.csv") -> Path:
    path = tmp_path / name
    body = "\n".join(f"{t},{s},rps,{v}" for t, s, v in rows)
    path.write_text("time,service,metric,value\n" + body + "\n")
    return path


@pytest.fixture(scope="module")
def seed() -> mcpdsl.ir.model.Project:  # type: ignore[name-defined]
    return mcpdsl.load(str(POLICIES))


def test_walkthrough_sequence(tmp_path: Path) -> None:
    """The HPA walkthrough's rule, by hand: desired = ceil(current x usage / target).

    api: 1 core per pod, mu = 100 rps per pod at 100% CPU; target 50%.
    150 rps on 1 pod: 100% CPU (limit = request) -> ceil(1 x 100/50) = 2 (15 s), the
    new pod is ready 30..45 s later; 2 pods at 75% -> ceil(2 x 1.5) = 3 pods; then
    3 pods at 50% -> within the tolerance: 3 stays."""
    root = tree(tmp_path)
    project = mcpdsl.load(str(root))
    load = trace(tmp_path, [(0, "api", 150), (600, "api", 150)])
    out = run(project, load, verify=True)
    assert not out.has_errors
    replicas = out.result.raw.services[0].replicas  # type: ignore[union-attr]
    seq = [int(replicas[k]) for k in range(len(replicas))]
    assert seq[0] == 2  # first sync: 100% vs 50%
    assert max(seq) == 3 and seq[-1] == 3
    assert seq.index(3) > 1  # only after the second pod was ready
    assert all(a <= b for a, b in itertools.pairwise(seq))


def _conserved(out) -> None:  # type: ignore[no-untyped-def]
    raw = out.result.raw
    for s in raw.services:
        for k in range(raw.steps):
            assert s.served[k] <= s.offered[k] + 1e-9
            assert s.served[k] <= s.capacity[k] + 1e-9
    for p in raw.pools:
        for k in range(raw.steps):
            assert p.cpu_requested[k] <= p.nodes[k] * p.spec.cpu / 1000 + 1e-9
            assert p.spec.min_nodes <= p.nodes[k] <= p.spec.max_nodes


def test_seed_conservation_quota_and_verify(tmp_path: Path, seed) -> None:  # type: ignore[no-untyped-def]
    rows = []
    for t in range(0, 6 * 3600, 900):
        f = 1 + 2 * math.sin(t / 7200) ** 2
        rows += [(t, "mcp-api", 800 * f), (t, "api-gateway", 500 * f), (t, "embedder", 200 * f)]
        rows += [(t, "agent-runtime", 60 * f), (t, "tool-runner", 300 * f)]
    out = run(seed, trace(tmp_path, rows), verify=True)
    assert not out.has_errors
    _conserved(out)
    from mcpdsl.simulate.model import quotas

    caps = quotas(seed)
    assert caps  # the seed has team quotas; the pool state never lets them be exceeded


def test_determinism_byte_identical(tmp_path: Path) -> None:
    root = tree(tmp_path)
    load = trace(tmp_path, [(0, "api", 50), (300, "api", 390), (1200, "api", 20)])
    runner = CliRunner()
    args = ["simulate", str(root), "--load", str(load), "--format", "json", "--seed", "7"]
    a = runner.invoke(main, args)
    b = runner.invoke(main, args)
    assert a.exit_code == 0, a.output
    assert a.stdout == b.stdout
    data = json.loads(a.stdout)
    assert data["version"] == 1 and data["steps"] == len(data["t"])
    assert set(data["services"]["api"]) >= {"offered", "served", "replicas", "predicted"}


def test_compare_lower_max_replicas(tmp_path: Path) -> None:
    old, new = tree(tmp_path, 10, "old"), tree(tmp_path, 2, "new")
    load = trace(tmp_path, [(0, "api", 50), (300, "api", 390), (3000, "api", 390)])
    a = run(mcpdsl.load(str(old)), load).result.figures()  # type: ignore[union-attr]
    b = run(mcpdsl.load(str(new)), load).result.figures()  # type: ignore[union-attr]
    assert b["totals"]["availability"] < a["totals"]["availability"]
    assert b["totals"]["served"] < a["totals"]["served"]
    assert b["totals"]["cost_usd"] <= a["totals"]["cost_usd"]
    assert b["totals"]["energy_kwh"] <= a["totals"]["energy_kwh"]
    assert b["services"]["api"]["max_replicas"] < a["services"]["api"]["max_replicas"]
    runner = CliRunner()
    res = runner.invoke(
        main,
        ["simulate", "--load", str(load), "--compare", str(old), str(new),
         "--format", "markdown", "--fail-on", "availability<99.9%"],
    )  # fmt: skip
    assert res.exit_code == 1, res.output
    assert "| availability |" in res.output
    ok = runner.invoke(
        main, ["simulate", "--load", str(load), "--compare", str(old), str(old),
               "--fail-on", "carbon>+5%"],
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(main, ["simulate", str(old), "--load", str(load), "--fail-on", "x<1"])
    assert bad.exit_code == 2


HOSTILE = [
    ("time,service\n0,api\n", "S0102"),
    ("time,service,metric,value\n0,api,rps\n", "S0103"),
    ("time,service,metric,value\nyesterday,api,rps,1\n", "S0104"),
    ("time,service,metric,value\n2026-01-01T00:00:00,api,rps,1\n", "S0104"),
    ("time,service,metric,value\n0,api,rps,1\n2026-01-01T00:00:00Z,api,rps,1\n", "S0105"),
    ("time,service,metric,value\n0,apj,rps,1\n", "S0106"),
    ("time,service,metric,value\n0,api,latency,1\n", "S0107"),
    ("time,service,metric,value\n0,api,rps,nan\n", "S0108"),
    ("time,service,metric,value\n0,api,rps,-1\n", "S0108"),
    ("time,service,metric,value\n5,api,rps,1\n0,api,rps,2\n5,api,rps,3\n", "S0109"),
    ("# only a comment\n", "S0112"),
]


@pytest.mark.parametrize(("text", "code"), HOSTILE)
def test_hostile_csv(text: str, code: str) -> None:
    loaded = parse_trace("t.csv", text, {"api": "api"})
    assert loaded.trace is None
    assert [d.code for d in loaded.diagnostics][:1] == [code]


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("[", "S0110"),
        ("[" * 100000, "S0110"),
        ('{"start": "x", "series": []}', "S0104"),
        (
            '{"start": "2026-01-01T00:00:00Z", "series": [{"service": "api", "metric": "rps"}]}',
            "S0121",
        ),
        (
            '{"start": "2026-01-01T00:00:00Z", "series": [{"service": "api", "metric": "rps",'
            ' "points": [[0, NaN]]}]}',
            "S0110",
        ),
        ('{"start": "2026-01-01T00:00:00Z", "series": []}', "S0112"),
    ],
)
def test_hostile_json(text: str, code: str) -> None:
    loaded = parse_trace("t.json", text, {"api": "api"})
    assert loaded.trace is None
    assert [d.code for d in loaded.diagnostics][:1] == [code]


def test_unreadable_trace_is_a_diagnostic(tmp_path: Path) -> None:
    root = tree(tmp_path)
    res = CliRunner().invoke(main, ["simulate", str(root), "--load", str(tmp_path)])
    assert res.exit_code == 2
    assert "S0101" in res.output


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.integers(0, 3600), st.floats(0, 2000, allow_nan=False)), min_size=1,
        max_size=20, unique_by=lambda x: x[0],
    )
)  # fmt: skip
def test_random_traces_never_crash_or_break_conservation(tmp_path: Path, points) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "tree"
    if not root.exists():
        root.mkdir()
        (root / "main.mcp").write_text(TREE % {"max": 8})
    text = "time,service,metric,value\n" + "".join(f"{t},api,rps,{v!r}\n" for t, v in points)
    path = tmp_path / "random.csv"
    path.write_text(text)
    out = run(mcpdsl.load(str(root)), path, verify=True, end="3900")
    assert not out.has_errors
    _conserved(out)
    assert service_names(mcpdsl.load(str(root))) == {"api": "api", "demo.api": "api"}
