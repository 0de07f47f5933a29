"""Decision logs: JSON lines with a digest and masked attributes that never leak."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from engine_support import engine_for, request

from mcpdsl.engine.decision_log import canonical

SOURCE = """
policy p {
  allow any -> any when request.auth.mfa
}
"""
SECRET = "Bearer s3cr3t-t0ken"


def _req() -> dict[str, Any]:
    req = request(request__auth__mfa=True)
    req["request"]["headers"] = {"Authorization": SECRET, "x-trace": "t1"}
    req["context"] = {"note": f"copied {SECRET} here", "ssn": "123-45-6789"}
    return req


def test_callable_sink_and_masking(tmp_path: Path) -> None:
    lines: list[str] = []
    engine = engine_for(
        tmp_path,
        SOURCE,
        decision_log=lines.append,
        mask=("request.headers.authorization", "context.ssn"),
    )
    req = _req()
    d = engine.authorize(req)
    assert d.allowed
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert set(record) == {
        "seq", "prev", "time", "digest", "input", "decision", "rules", "latency_us"
    }  # fmt: skip
    assert lines[0].startswith('{"seq":0,"prev":"' + "0" * 64 + '",')
    assert record["decision"] == {
        "allowed": True,
        "enforced": True,
        "obligations": [],
        "risk": 0,
        "default_applied": False,
    }
    assert record["rules"] == ["p/allow-1"]
    assert record["latency_us"] >= 0
    assert record["input"]["request"]["headers"]["Authorization"] == "***"
    assert record["input"]["context"]["ssn"] == "***"
    assert record["input"]["context"]["note"] == "copied *** here"
    assert SECRET not in lines[0] and "s3cr3t" not in lines[0] and "123-45-6789" not in lines[0]
    assert record["digest"] == hashlib.sha256(canonical(record["input"]).encode()).hexdigest()
    assert req["request"]["headers"]["Authorization"] == SECRET  # the caller's request is untouched


def test_file_sink(tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    engine = engine_for(tmp_path, SOURCE, decision_log=log)
    for _ in range(3):
        engine.authorize(_req())
    engine.authorize(request())
    engine.close()
    lines = log.read_text().splitlines()
    assert len(lines) == 4
    assert [json.loads(x)["decision"]["allowed"] for x in lines] == [True, True, True, False]
    assert SECRET not in log.read_text()


def test_digest_is_stable_and_masked(tmp_path: Path) -> None:
    lines: list[str] = []
    engine = engine_for(tmp_path, SOURCE, decision_log=lines.append)
    a, b = _req(), _req()
    b["request"]["headers"]["Authorization"] = "Bearer other"  # differs only in a masked value
    b["context"]["note"] = "copied Bearer other here"
    engine.authorize(a)
    engine.authorize(b)
    digests = [json.loads(x)["digest"] for x in lines]
    assert digests[0] == digests[1]  # the digest never depends on a masked value


@pytest.mark.parametrize("value", [{"token": SECRET}, [SECRET], 12345678])
def test_masked_values_of_any_type(tmp_path: Path, value: Any) -> None:
    lines: list[str] = []
    engine = engine_for(tmp_path, SOURCE, decision_log=lines.append)
    req = request()
    req["request"]["headers"] = {"authorization": value}
    engine.authorize(req)
    record = json.loads(lines[0])
    assert record["input"]["request"]["headers"]["authorization"] == "***"
    assert SECRET not in lines[0]
