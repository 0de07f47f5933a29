"""`examples/mcp-gateway/`: the walk-through runs end to end, as a newcomer runs it.

The script itself is the proof: it starts the demo upstream and a real
`mcpdsl serve`, drives the official MCP SDK client through every step and
exits non-zero at the first step that does not behave as its README says.
Here it runs as a subprocess with this checkout's `mcpdsl` first on the path,
on free loopback ports (`--port 0 --upstream-port 0`, so a parallel run or
another helper's server on 8181/9181 cannot collide with it).  The tree is
also checked (no warning), its own tests pass, and the committed key material
is public only.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from repo_paths import REPO

from mcpdsl.diagnostics import Severity
from mcpdsl.pipeline import compile_tree

EXAMPLE = REPO / "examples" / "mcp-gateway"
SCRIPT = EXAMPLE / "walkthrough.py"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _walk(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True, text=True, env=_env(), cwd=cwd, timeout=300, check=False,
    )  # fmt: skip


def test_the_walkthrough_runs_every_step(tmp_path: Path) -> None:
    work = tmp_path / "work"
    done = _walk("--port", "0", "--upstream-port", "0", "--workdir", str(work), cwd=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "All 9 steps behaved as described." in done.stdout
    for excerpt in (
        "support-agent  -> crm.lookup, kb.search, tickets.create",
        "sales-agent    -> kb.search",
        '-> {"id": "c-1042", "name": "Ada Lovelace", "open_tickets": 2, "tier": "gold"}',
        "-> denied: no rule allows this request",
        "-> denied by desk/vip",
        "MCP error -32602: invalid arguments: `customer_id` must be of type string",
        'error="insufficient_user_authentication"',
        '-> {"priority": "normal", "status": "OPEN", "ticket": "T-1001"}',
        "#4 -> rate limited by integration `kb-search`",
        '{"foreign_credentials": 0, "requests": 5}',
        "chain intact: 9 records",
    ):
        assert excerpt in done.stdout, excerpt
    # --workdir keeps what the run made; the repository's example is untouched.
    lines = (work / "decisions.log").read_text().splitlines()
    assert [json.loads(x)["result"] for x in lines] == [
        "ok", "denied", "denied", "step_up", "ok", "ok", "ok", "ok", "limited",
    ]  # fmt: skip
    assert (work / "demo-signing-key.pem").stat().st_mode & 0o077 == 0
    assert (work / "tree" / "keys" / "jwks.json").read_text() != (
        EXAMPLE / "keys" / "jwks.json"
    ).read_text()


def test_a_port_in_use_is_a_clear_refusal() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _walk("--port", str(port), "--upstream-port", "0")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"port {port} on 127.0.0.1 is in use" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_tree_checks_clean_and_its_tests_pass() -> None:
    from mcpdsl.evaluate.project import prepare_project
    from mcpdsl.evaluate.testing import run_tests

    compilation = compile_tree(EXAMPLE)
    noisy = [d for d in compilation.diagnostics if d.severity is not Severity.INFO]
    assert not noisy, [f"{d.code} {d.message}" for d in noisy]
    assert compilation.project is not None
    outcomes = run_tests(prepare_project(compilation.project, compilation.project.root))
    assert len(outcomes) >= 8
    assert all(o.passed for o in outcomes), [f"{o.name}: {o.message}" for o in outcomes]


def test_only_public_keys_are_committed() -> None:
    jwks = json.loads((EXAMPLE / "keys" / "jwks.json").read_text())
    private_members = {"d", "p", "q", "dp", "dq", "qi", "k"}
    assert all(not private_members & key.keys() for key in jwks["keys"])
    for path in EXAMPLE.rglob("*"):
        if path.is_file():
            assert b"PRIVATE KEY" not in path.read_bytes(), path
