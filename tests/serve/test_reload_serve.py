"""Reloading a running `mcpdsl serve`: trees and signed builds, under load.

* A tree edited from allow to deny while clients hammer the Data API: every
  answer is the old or the new decision, whole (never an allowed decision
  naming the deny rule), never an error, never lost; and once a client sees the
  new policy it never sees the old one again.
* A tree edited into an error, a tampered signed build: refused, the last good
  policy stays in force, and the refusal is said on stderr, in the metrics
  and over HTTP (`/ready`, `/v1/status`).
* A new signed build replacing the old one is verified and installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ALLOWED, write_gate
from prometheus_client.parser import text_string_to_metric_families
from server_process import ServerProcess, server_env

OLD = {"allowed": True, "rules": ["gate/allow-1"]}
NEW = {"allowed": False, "rules": ["gate/deny-1"]}


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    text = server.request("GET", "/metrics")[1].decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def status(server: ServerProcess) -> dict[str, Any]:
    code, body = server.json("GET", "/v1/status")
    assert code == 200
    policy = body["policy"]
    assert isinstance(policy, dict)
    return policy


def wait_until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def decided(server: ServerProcess) -> dict[str, Any]:
    code, body = server.json("POST", "/v1/data/mcp/main/decision", {"input": ALLOWED})
    assert code == 200
    return {k: body["result"][k] for k in ("allowed", "rules")}


class Hammer:
    """Client threads sending the same decision request as fast as they can."""

    def __init__(self, server: ServerProcess, threads: int = 4) -> None:
        self.url = server.url
        self.stop = threading.Event()
        self.results: list[list[dict[str, Any]]] = [[] for _ in range(threads)]
        self.errors: list[str] = []
        self.sent = [0] * threads
        self.threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)
        ]

    def _run(self, index: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                self.sent[index] += 1
                try:
                    r = client.post("/v1/data/mcp/main/decision", json={"input": ALLOWED})
                except httpx.HTTPError as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                if r.status_code != 200:
                    self.errors.append(f"{r.status_code}: {r.text}")
                    continue
                result = r.json()["result"]
                self.results[index].append({k: result[k] for k in ("allowed", "rules")})

    def __enter__(self) -> Hammer:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def seen(self, value: dict[str, Any]) -> int:
        return sum(r == value for rs in self.results for r in rs)


def test_tree_edit_under_load_switches_whole_decisions(serve: Any, demo_tree: Path) -> None:
    server = serve(demo_tree)
    before = status(server)["digest"]
    with Hammer(server) as hammer:
        wait_until(lambda: hammer.seen(OLD) >= 50)
        write_gate(demo_tree, "deny")
        wait_until(lambda: hammer.seen(NEW) >= 200)
    assert hammer.errors == []
    answered = sum(len(rs) for rs in hammer.results)
    assert answered == sum(hammer.sent)  # no request lost
    for results in hammer.results:
        assert all(r in (OLD, NEW) for r in results)  # never a mix
        first_new = results.index(NEW) if NEW in results else len(results)
        assert all(r == NEW for r in results[first_new:])  # never back to the old policy
    assert metric(server, "mcpdsl_reloads_total", outcome="installed") >= 1
    after = status(server)
    assert after["digest"] != before and after["last_reload"]["ok"] is True
    assert "reloaded" in server.stderr()


def test_broken_edit_is_refused_and_the_old_policy_kept(serve: Any, demo_tree: Path) -> None:
    server = serve(demo_tree)
    digest = status(server)["digest"]
    (demo_tree / "gate.mcp").write_text("package demo\n\npolicy gate {\n  allow ->\n")
    wait_until(lambda: metric(server, "mcpdsl_load_failures_total") >= 1)
    assert metric(server, "mcpdsl_reloads_total", outcome="refused") >= 1
    assert decided(server) == OLD
    code, ready = server.json("GET", "/ready")
    assert (
        code == 200
        and ready["policy"] == digest
        and "keeping the previous" in (ready["last_error"])
    )
    now = status(server)
    assert now["digest"] == digest and now["last_error"]["ok"] is False
    server.wait_for_stderr(lambda line: "reload refused" in line)
    write_gate(demo_tree, "deny")  # repaired: the next good policy is installed
    wait_until(lambda: decided(server) == NEW)
    assert status(server)["last_error"] is None


# ------------------------------------------------------------------ signed builds


def mcpdsl(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "mcpdsl", *args],
        cwd=cwd, env=server_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def signed_build(tmp: Path, effect: str, name: str) -> Path:
    tree = write_gate(tmp / f"tree-{name}", effect)
    out = tmp / name
    mcpdsl("build", str(tree), "--out", str(out), cwd=tmp)
    mcpdsl("sign", str(out), "--key", str(tmp / "keydir"), cwd=tmp)
    return out


def install(staged: Path, served: Path) -> None:
    """Replace the served build as `mcpdsl build` does: whole directories, by rename."""
    old = served.with_name(served.name + ".old")
    os.replace(served, old)
    os.replace(staged, served)
    shutil.rmtree(old)


@pytest.fixture
def keyring(tmp_path: Path) -> Path:
    mcpdsl("keys", "new", "--id", "k1", "--out", str(tmp_path / "keydir"), cwd=tmp_path)
    ring = tmp_path / "ring.json"
    mcpdsl("keys", "add", "--keyring", str(ring), str(tmp_path / "keydir"), cwd=tmp_path)
    return ring


def test_signed_builds_reload_and_tampering_is_refused(
    serve: Any, tmp_path: Path, keyring: Path
) -> None:
    served = signed_build(tmp_path, "allow", "build")
    server = serve(served, "--trust", str(keyring))
    assert decided(server) == OLD
    first = status(server)["digest"]

    tampered = signed_build(tmp_path, "deny", "tampered")
    ir = tampered / "ir" / "project.json"
    ir.write_bytes(ir.read_bytes().replace(b'"deny"', b'"allow"'))  # after signing
    with Hammer(server, threads=2) as hammer:
        install(tampered, served)
        wait_until(lambda: metric(server, "mcpdsl_load_failures_total") >= 1)
        time.sleep(0.5)
    assert hammer.errors == [] and hammer.seen(NEW) == 0 and hammer.seen(OLD) > 0
    assert decided(server) == OLD
    refused = status(server)
    assert refused["digest"] == first and "refused" in refused["last_error"]["message"]
    server.wait_for_stderr(lambda line: "reload refused" in line)

    install(signed_build(tmp_path, "deny", "next"), served)
    wait_until(lambda: decided(server) == NEW)
    installed = status(server)
    assert installed["digest"] != first and installed["last_error"] is None
    assert "verified, signed by k1" in installed["detail"]
    assert metric(server, "mcpdsl_reloads_total", outcome="installed") >= 1
    assert json.loads(json.dumps(installed))  # plain JSON
