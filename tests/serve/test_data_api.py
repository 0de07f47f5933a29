"""The OPA Data API of `mcpdsl serve`, against the real process, with httpx.

1. Exchanges in the shape OPA's REST API documentation gives them (POST with
   `input`, POST without it, GET, an undefined document, a sub-document,
   `?pretty`, ignored parameters, errors in OPA's `{"code", "message"}` shape):
   a client written for OPA reads the same fields here.
2. Every generated package answers what its Rego gives: requests drawn from a
   tree's vocabulary (tests/engine/request_vocabulary.py) are sent to the
   server as `mcp/main` and per-policy package queries and evaluated by the
   real OPA engine (in-process bindings) on the build's Rego; the documents
   must be equal.  `mcp/meta` must equal the build's `data.json`.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ALLOWED, write_gate
from server_process import ServerProcess, start_server

from mcpdsl.compile import TargetContext, load_target
from mcpdsl.compile.opa import rego_names
from mcpdsl.engine import Engine

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "engine"))
from request_vocabulary import make_request, vocabulary  # noqa: E402
from validators import opa_available  # noqa: E402

SINK = REPO / "tests" / "engine" / "fixtures" / "sink"
DECISION_KEYS = {"allowed", "default_applied", "obligations", "risk", "rules"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the exchanges (they do not change its state)."""
    started = start_server(write_gate(tmp_path_factory.mktemp("tree")))
    yield started
    assert started.stop(15) == 0


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


# ------------------------------------------------------------ OPA's documented exchanges


def test_post_with_input_gives_result_and_decision_id(client: httpx.Client) -> None:
    r = client.post("/v1/data/mcp/main/allow", json={"input": ALLOWED})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"result", "decision_id"}
    assert body["result"] is True
    assert len(body["decision_id"]) == 36  # a UUID, as OPA's decision ids


def test_decision_document_has_the_rego_keys(client: httpx.Client) -> None:
    body = client.post("/v1/data/mcp/main/decision", json={"input": ALLOWED}).json()
    assert set(body["result"]) == DECISION_KEYS
    assert body["result"]["allowed"] is True and body["result"]["rules"] == ["gate/allow-1"]
    other = client.post("/v1/data/mcp/demo/gate/decision", json={"input": ALLOWED}).json()
    assert other["result"] == body["result"]


def test_post_without_input_warns_and_decides_without_input(client: httpx.Client) -> None:
    r = client.post("/v1/data/mcp/main/allow", json={})
    assert r.status_code == 200
    body = r.json()
    assert body["result"] is False
    assert body["warning"]["code"] == "api_usage_warning"
    empty = client.post("/v1/data/mcp/main/allow", content=b"")
    assert empty.status_code == 200 and empty.json()["result"] is False


def test_get_decides_without_input_or_with_input_parameter(client: httpx.Client) -> None:
    r = client.get("/v1/data/mcp/main/deny")
    assert r.status_code == 200 and r.json()["result"] is True and "warning" not in r.json()
    r = client.get("/v1/data/mcp/main/allow", params={"input": json.dumps(ALLOWED)})
    assert r.json()["result"] is True


def test_undefined_document_is_an_empty_object(client: httpx.Client) -> None:
    for path in ("/v1/data/does/not/exist", "/v1/data/mcp/main/nothing", "/v1/data/mcp/lib"):
        r = client.post(path, json={"input": ALLOWED})
        assert (r.status_code, r.json()) == (200, {}), path


def test_sub_documents_and_packages(client: httpx.Client) -> None:
    r = client.post("/v1/data/mcp/main/decision/rules/0", json={"input": ALLOWED})
    assert r.json()["result"] == "gate/allow-1"
    r = client.post("/v1/data/mcp/main/decision/rules/7", json={"input": ALLOWED})
    assert "result" not in r.json() and "decision_id" in r.json()
    whole = client.post("/v1/data/mcp/main", json={"input": ALLOWED}).json()["result"]
    assert set(whole) == {"allow", "decision", "deny"}
    assert whole["allow"] is True and whole["deny"] is False
    meta = client.get("/v1/data/mcp/meta/entrypoints").json()["result"]
    assert meta == {"allow": "data.mcp.main.allow", "decision": "data.mcp.main.decision"}


def test_pretty_and_unknown_parameters(client: httpx.Client) -> None:
    r = client.post("/v1/data/mcp/main/allow?pretty=true&metrics=true&explain=full",
                    json={"input": ALLOWED})  # fmt: skip
    assert r.status_code == 200
    assert r.text.startswith("{\n  ")
    assert r.json()["result"] is True and "metrics" not in r.json()
    assert client.post("/v1/data/mcp/main/allow?pretty", json={"input": {}}).text.count("\n") > 1


def test_envoy_package_reads_a_checkrequest(client: httpx.Client) -> None:
    body = client.post("/v1/data/mcp/envoy/decision", json={"input": {"attributes": 1}}).json()
    assert body["result"]["allowed"] is False and "refusal" in body["result"]
    assert client.post("/v1/data/mcp/envoy/allow", json={"input": {}}).json()["result"] is False


@pytest.mark.parametrize(
    ("method", "path", "content", "status", "code"),
    [
        ("POST", "/v1/data/mcp/main/allow", b"{", 400, "invalid_parameter"),
        ("POST", "/v1/data/mcp/main/allow", b"[1, 2]", 400, "invalid_parameter"),
        ("POST", "/v1/data/mcp/main/allow", b'{"input": NaN}', 400, "invalid_parameter"),
        ("POST", "/v1/data/mcp/main/allow", b"\xff\xfe{}", 400, "invalid_parameter"),
        ("POST", "/v1/data/mcp/main/allow", b"[" * 100_000, 400, "invalid_parameter"),
        ("GET", "/v1/data/mcp/main/allow?input=%7B", None, 400, "invalid_parameter"),
        ("POST", "/v1/data/mcp", b'{"input": {}}', 400, "invalid_parameter"),
        ("GET", "/v1/nothing/here", None, 404, "resource_not_found"),
        ("GET", "/", None, 404, "resource_not_found"),
        ("DELETE", "/v1/data/mcp/main/allow", None, 405, "invalid_operation"),
        ("PUT", "/v1/data/mcp/main/allow", b"{}", 405, "invalid_operation"),
        ("POST", "/health", b"{}", 405, "invalid_operation"),
    ],
)
def test_errors_have_opas_shape(
    client: httpx.Client, method: str, path: str, content: bytes | None, status: int, code: str
) -> None:
    r = client.request(method, path, content=content)
    assert r.status_code == status
    body = r.json()
    assert set(body) == {"code", "message"} and body["code"] == code
    assert body["message"] and "Traceback" not in body["message"]
    if status == 405:
        assert "GET" in r.headers["allow"] or "POST" in r.headers["allow"]


# ------------------------------------------------------------ every package agrees with its Rego


def _rego(engine: Engine) -> Any:
    from opa_bindings import OpaEngine

    output = load_target("opa").compile(engine.project, TargetContext(version="test"))
    files = {a.path: a.content for a in output.artifacts}
    opa = OpaEngine()
    for path, content in sorted(files.items()):
        if path.endswith(".rego"):
            opa.add_policy(path, content.decode("utf-8"))
    data = json.loads(files["opa/data.json"])
    opa.add_data(data)
    return opa, data


def _same_decision(mine: dict[str, Any], theirs: dict[str, Any]) -> bool:
    return {k: v for k, v in mine.items() if k != "risk"} == {
        k: v for k, v in theirs.items() if k != "risk"
    } and Decimal(repr(mine["risk"])) == Decimal(repr(theirs["risk"]))


@pytest.mark.skipif(
    not opa_available(),
    reason="system component missing: the OPA engine (opa-golib-python-bindings)",
)
def test_every_package_agrees_with_the_generated_rego(serve: Any) -> None:
    engine = Engine.load(SINK)
    opa, data = _rego(engine)
    names = rego_names(engine.project)
    packages = ["mcp/main"] + [
        f"mcp/{pkg}/{ident}" for (_, _), (pkg, ident) in sorted(names.items())
    ]
    assert len(packages) == 3  # the combiner and two policies (one default allow)
    rnd = random.Random(1414)
    vocab = vocabulary(engine.project)
    batch = [make_request(rnd, vocab) for _ in range(150)]
    binds = "; ".join(
        f"d{i} := data.{p.replace('/', '.')} with input as r" for i, p in enumerate(packages)
    )
    row = ", ".join(f"d{i}" for i in range(len(packages)))
    query = f"out := [[{row}] | some r in input.batch; {binds}]"
    expected = opa.eval_query(query, {"batch": batch})[0]["out"]
    server = serve(SINK)
    compared = refused = 0
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert (
            c.get("/v1/data/mcp/meta").json()["result"]["policies"]
            == (data["mcp"]["meta"]["policies"])
        )
        for request, theirs in zip(batch, expected, strict=True):
            main_refused = "refusal" in theirs[0]["decision"]
            for package, their in zip(packages, theirs, strict=True):
                mine = c.post(f"/v1/data/{package}", json={"input": request}).json()["result"]
                if main_refused and package != "mcp/main":
                    # the per-policy Rego does not refuse; the server refuses in every
                    # package (fail closed, docs/serve.md)
                    assert mine["allow"] is False and "refusal" in mine["decision"]
                    refused += 1
                    continue
                where = f"{package} for {json.dumps(request, sort_keys=True)}"
                assert _same_decision(mine["decision"], their["decision"]), where
                assert mine["allow"] == their["allow"], where
                assert mine["deny"] == their["deny"], where
                compared += 1
    assert compared >= 400, (compared, refused)
