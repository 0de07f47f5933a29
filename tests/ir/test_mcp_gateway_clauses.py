"""The MCP gateway's clauses: what they lower to, what they refuse, and where the IR goes.

`auth`, `breaker`, `idempotent`, `upstream mcp` and optional input fields of an
integration, and a server's `mcp resource ... accept [...]` (docs/language.md
§4.8, §4.13).  The rendered messages are the goldens of
tests/fixtures/diagnostics/E11xx-*/W012x-*; here the values and the paths the IR
takes: the build's `ir/project.json`, the server's ConfigMap, `mcpdsl.load`,
the on-disk front-end cache.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

import mcpdsl
from mcpdsl._version import __version__
from mcpdsl.builder import ir_artifact
from mcpdsl.compile import TargetContext, kubernetes
from mcpdsl.ir import model as m
from mcpdsl.ir.lower_upstream import (
    env_name_problem,
    resource_problem,
    secret_path_problem,
    tool_prefix_problem,
    upstream_header_problem,
)
from mcpdsl.pipeline import compile_tree
from mcpdsl.pipeline import disk_cache as dc

TREE = """package tools

provider agent-sessions {
  issuer    "https://agents.example.com"
  jwks      url "https://agents.example.com/jwks.json"
  audiences ["https://api.example.com", "https://mcp.example.com/mcp"]
  type      agent
}

integration crm-lookup {
  expose  tool "crm.lookup" input { customer_id: string, fields?: array }
  call    GET "https://crm.internal/api/v2/customers/{customer_id}"
  auth    bearer env "CRM_API_TOKEN"
  breaker 5 failures open 30s
}

integration ticket-create {
  expose tool "tickets.create" input { title: string, body?: string, "labels"?: array }
  call   POST "https://tickets.internal/rest/api/2/issue"
  auth   header "X-Api-Key" file "/var/run/secrets/tickets/key"
  idempotent
  retry  2 on [5xx, reset]
}

integration docs-tools {
  upstream mcp "http://docs-mcp.tools.svc:8000/mcp" prefix "kb"
  auth     bearer env "DOCS_MCP_TOKEN"
  timeout  2s
  limit    50/s burst 100
}

integration wiki-tools {
  upstream mcp "https://wiki-mcp.tools.svc/mcp"
}

policy tools {
  allow agent any -> tool ["crm.lookup", "tickets.create", "kb.search", "wiki-tools.page"]
}

server authz {
  namespace "mcp-system"
  image     "ghcr.io/acme/mcpdsl:1.0"
  replicas  1
  mcp       resource "https://mcp.example.com/mcp" accept [agent-sessions]
}
"""


def compile_text(tmp: Path, text: str, *, stored: bool = False) -> Any:
    tree = tmp / "tree"
    tree.mkdir(exist_ok=True)
    (tree / "main.mcp").write_text(text, encoding="utf-8")
    return compile_tree(tree, stored=stored)


def codes(tmp: Path, text: str) -> list[str]:
    return [d.code for d in compile_text(tmp, text).diagnostics]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> m.Project:
    compilation = compile_text(tmp_path_factory.mktemp("gw"), TREE)
    assert [f"{d.code}: {d.message}" for d in compilation.diagnostics] == []
    assert compilation.project is not None
    return compilation.project  # type: ignore[no-any-return]


def integration(project: m.Project, name: str) -> m.Integration:
    (found,) = [i for i in project.integrations if i.name == name]
    return found


# ------------------------------------------------------------------ lowering


def test_a_rest_integration_lowers_auth_breaker_and_optional_fields(project: m.Project) -> None:
    crm = integration(project, "crm-lookup")
    assert crm.input == {"customer_id": "string", "fields": "array"}
    assert crm.optional == ("fields",)
    assert crm.auth == m.UpstreamAuth(
        scheme="bearer",
        header="authorization",
        secret=m.SecretRef(source="env", name="CRM_API_TOKEN"),
    )
    assert crm.breaker == m.Breaker(failures=5, open_for=Decimal(30))
    assert (crm.idempotent, crm.upstream, crm.prefix) == (None, "rest", None)


def test_a_header_credential_from_a_file_and_idempotent(project: m.Project) -> None:
    tickets = integration(project, "ticket-create")
    assert tickets.optional == ("body", "labels")
    assert tickets.auth == m.UpstreamAuth(
        scheme="header",
        header="x-api-key",  # sent lower-cased
        secret=m.SecretRef(source="file", name="/var/run/secrets/tickets/key"),
    )
    assert tickets.idempotent is True
    assert tickets.breaker is None


def test_a_federated_integration(project: m.Project) -> None:
    docs = integration(project, "docs-tools")
    assert (docs.upstream, docs.prefix, docs.method) == ("mcp", "kb", "POST")
    assert docs.url == "http://docs-mcp.tools.svc:8000/mcp"
    assert (docs.tool, docs.input, docs.mappings) == (None, {}, ())
    assert docs.auth is not None and docs.auth.secret.name == "DOCS_MCP_TOKEN"
    assert integration(project, "wiki-tools").prefix == "wiki-tools"  # defaults to the name


def test_the_server_endpoint_is_bound_and_copied_to_the_project(project: m.Project) -> None:
    (server,) = project.servers
    expected = m.McpEndpoint(
        resource="https://mcp.example.com/mcp",
        providers=(m.Ref(package="tools", name="agent-sessions"),),
    )
    assert server.mcp == expected
    assert project.mcp == expected


def test_a_tree_without_mcp_has_no_endpoint(tmp_path: Path) -> None:
    compilation = compile_text(tmp_path, 'package a\nserver z { image "a/b:1" replicas 1 }\n')
    assert compilation.project is not None and compilation.project.mcp is None


# ------------------------------------------------------------------ refusals


REST = 'expose tool "t.x" input { id: string }\n  call GET "https://u/x/{id}"\n'


@pytest.mark.parametrize(
    ("clauses", "expected"),
    [
        ('auth bearer env "CRM_TOKEN"', []),
        ('auth bearer env "9LIVES"', ["E1101"]),
        ('auth bearer env ""', ["E1101"]),
        ('auth bearer file "/run/secrets/../x"', ["E1102"]),
        ('auth bearer file "/run/secrets/"', ["E1102"]),
        ('auth header "Transfer-Encoding" env "T"', ["E1103"]),
        ('auth header "content-length" env "T"', ["E1103"]),
        ('auth header "x api key" env "T"', ["E1103"]),
        ('auth header "X-Api-Key" "s3cret"', ["E1104"]),
        ('auth bearer env "A" auth header "x-k" env "B"', ["E0201"]),
        ('auth bearer env "A" auth bearer env "B"', ["E0201"]),
        ("breaker 0 failures open 30s", ["E1105"]),
        ("breaker 1000 failures open 1ms", []),
        ("breaker 1001 failures open 1s", ["E1105"]),
        ("breaker 5 failures open 0s", ["E1105"]),
        ("breaker 5 failures open 5", ["E0301"]),  # a duration needs its unit
        ("idempotent", ["W0120"]),
        ("retry 2 on [5xx]", []),  # a GET is retried on anything
    ],
)
def test_rest_clauses(tmp_path: Path, clauses: str, expected: list[str]) -> None:
    assert codes(tmp_path, f"package a\nintegration i {{\n  {REST}  {clauses}\n}}\n") == expected


@pytest.mark.parametrize(
    ("method", "clauses", "expected"),
    [
        ("POST", "retry 2 on [5xx]", ["W0121"]),
        ("PATCH", "retry 2", ["W0121"]),  # the default conditions are not only unsent ones
        ("POST", "retry 2 on [connect-failure, refused-stream]", []),
        ("POST", "retry 2 on [5xx] idempotent", []),
        ("PUT", "retry 2 on [5xx]", []),
        ("DELETE", "idempotent", ["W0120"]),
        ("POST", "idempotent", []),
    ],
)
def test_retries_and_idempotence(
    tmp_path: Path, method: str, clauses: str, expected: list[str]
) -> None:
    text = f'package a\nintegration i {{\n  call {method} "https://u/x"\n  {clauses}\n}}\n'
    assert codes(tmp_path, text) == expected


@pytest.mark.parametrize(
    ("clauses", "expected"),
    [
        ('upstream mcp "http://d:8000/mcp"', []),
        ('upstream mcp "http://d:8000/mcp" call GET "https://x"', ["E1106"]),
        ('upstream mcp "http://d:8000/mcp" expose tool "x"', ["E1106"]),
        ('upstream mcp "http://d:8000/mcp" expose tool "x" input { a: string }', ["E1106"]),
        ('upstream mcp "http://d:8000/mcp" map { a = $.a }', ["E1106"]),
        ('upstream mcp "file:///tmp/mcp.sock"', ["E1107"]),
        ('upstream mcp "http:///mcp"', ["E1107"]),
        ('upstream mcp "http://d:99999/mcp"', ["E1107"]),
        ('upstream mcp "http://d/mcp#x"', ["E1107"]),
        ('upstream mcp "http://u:p@d/mcp"', ["E1104"]),
        ('upstream mcp "http://d/mcp" prefix ""', ["E1108"]),
        ('upstream mcp "http://d/mcp" prefix ".docs"', ["E1108"]),
        ('upstream mcp "http://d/mcp" prefix "a.b-c_d"', []),
        ('upstream mcp "http://d/mcp" retry 2 on [5xx]', ["W0121"]),
        ('upstream mcp "http://d/mcp" retry 2 on [5xx] idempotent', []),
        ("timeout 2s", ["E0202"]),  # neither `call` nor `upstream mcp`
    ],
)
def test_federated_clauses(tmp_path: Path, clauses: str, expected: list[str]) -> None:
    assert codes(tmp_path, f"package a\nintegration docs {{\n  {clauses}\n}}\n") == expected


PROVIDER = """
provider idp {
  issuer "https://idp.example.com"
  jwks   url "https://idp.example.com/jwks.json"
  %s
}
"""


@pytest.mark.parametrize(
    ("mcp", "audiences", "expected"),
    [
        ('mcp resource "https://m.example.com/mcp" accept [idp]', "", []),
        (
            'mcp resource "https://m.example.com/mcp" accept [idp]',
            'audiences ["https://x"]',
            ["W0123"],
        ),
        (
            'mcp resource "https://m.example.com/mcp" accept [idp]',
            'audiences ["https://x", "https://m.example.com/mcp"]',
            [],
        ),
        ('mcp resource "https://m.example.com/mcp" accept [ipd]', "", ["E0402"]),
        ('mcp resource "https://m.example.com/mcp" accept []', "", ["E1110"]),
        ('mcp resource "https://m.example.com/mcp"', "", ["E1110"]),
        ('mcp resource "http://m.example.com/mcp" accept [idp]', "", ["E1109"]),
        ('mcp resource "http://127.0.0.1:8181/mcp" accept [idp]', "", ["W0122"]),
        ('mcp resource "http://[::1]:8181/mcp" accept [idp]', "", ["W0122"]),
        ('mcp resource "https://m.example.com/mcp#frag" accept [idp]', "", ["E1109"]),
        ('mcp resource "https://u:p@m.example.com/mcp" accept [idp]', "", ["E1109"]),
        ('mcp resource "/mcp" accept [idp]', "", ["E1109"]),
        (
            'mcp resource "https://a/mcp" accept [idp] mcp resource "https://b/mcp" accept [idp]',
            "",
            ["E0201"],
        ),
    ],
)
def test_server_endpoint(tmp_path: Path, mcp: str, audiences: str, expected: list[str]) -> None:
    text = "package a\n" + PROVIDER % audiences + f'server z {{ image "a/b:1" replicas 1 {mcp} }}\n'
    assert codes(tmp_path, text) == expected


def test_tool_names_and_prefixes(tmp_path: Path) -> None:
    """Tools are unique (E0406); a federated prefix is its own (E1111); rules may name `P.x`."""
    tool = 'integration %s { expose tool "%s" call GET "https://u" }\n'
    fed = 'integration %s { upstream mcp "http://d/mcp" prefix "%s" }\n'
    assert codes(tmp_path, "package a\n" + tool % ("a", "x.y") + tool % ("b", "x.y")) == ["E0406"]
    assert codes(tmp_path, "package a\n" + tool % ("a", "docs.search") + fed % ("b", "docs")) == [
        "E1111"
    ]
    assert codes(tmp_path, "package a\n" + tool % ("a", "docs") + fed % ("b", "docs")) == ["E1111"]
    assert codes(tmp_path, "package a\n" + fed % ("a", "kb") + fed % ("b", "kb.v2")) == ["E1111"]
    assert codes(tmp_path, "package a\n" + fed % ("a", "kb") + fed % ("b", "kbase")) == []
    assert codes(tmp_path, "package a\n" + tool % ("a", "docsearch") + fed % ("b", "docs")) == []
    rule = 'policy p { allow any -> tool "%s" }\n'
    assert codes(tmp_path, "package a\n" + fed % ("b", "kb") + rule % "kb.search") == []
    assert codes(tmp_path, "package a\n" + fed % ("b", "kb") + rule % "kb.") == ["E0402"]
    assert codes(tmp_path, "package a\n" + fed % ("b", "kb") + rule % "wiki.page") == ["E0402"]


# ------------------------------------------------------------ pure checks


@given(st.text(max_size=40))
def test_the_checks_never_raise(text: str) -> None:
    for check in (
        env_name_problem,
        secret_path_problem,
        upstream_header_problem,
        tool_prefix_problem,
        resource_problem,
    ):
        assert check(text) is None or isinstance(check(text), str)


@given(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,30}", fullmatch=True))
def test_every_shell_name_is_an_env_name(name: str) -> None:
    assert env_name_problem(name) is None


# ---------------------------------------------------------- where the IR goes


def test_the_ir_json_carries_every_new_field(project: m.Project) -> None:
    """`ir/project.json` (and so the ConfigMap and a served build) holds them; loads back equal."""
    data = json.loads(ir_artifact(project).content)
    assert data["mcp"] == {
        "resource": "https://mcp.example.com/mcp",
        "providers": [{"package": "tools", "name": "agent-sessions"}],
    }
    assert "servers" not in data  # the rest of the server stays a deployment setting
    crm = next(i for i in data["integrations"] if i["name"] == "crm-lookup")
    assert crm["auth"]["secret"] == {"source": "env", "name": "CRM_API_TOKEN"}
    assert crm["optional"] == ["fields"]
    loaded = m.Project.model_validate_json(ir_artifact(project).content)
    assert loaded.mcp == project.mcp
    assert loaded.integrations == project.integrations


def test_old_ir_without_the_field_still_loads(project: m.Project) -> None:
    data = json.loads(ir_artifact(project).content)
    del data["mcp"]
    assert m.Project.model_validate(data).mcp is None


def test_the_configmap_holds_the_endpoint_and_no_secret(project: m.Project) -> None:
    """The Kubernetes target invents no Secret, mounts none, and serves /mcp on the http port."""
    out = kubernetes.compile(project, TargetContext(version=__version__))
    docs = [yaml.safe_load(a.content) for a in out.artifacts]
    assert not [d for d in docs if d["kind"] == "Secret"]
    text = "\n".join(
        a.content.decode() if isinstance(a.content, bytes) else a.content for a in out.artifacts
    )
    for name in ("CRM_API_TOKEN", "DOCS_MCP_TOKEN", "/var/run/secrets/tickets/key"):
        # only inside the ConfigMap's IR, which names where secrets are, never what
        assert text.count(name) == 1, name
    (config,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert json.loads(config["data"]["project.json"])["mcp"]["resource"] == (
        "https://mcp.example.com/mcp"
    )
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "envFrom" not in container
    assert all("secretKeyRef" not in json.dumps(e) for e in container["env"])
    (service,) = [d for d in docs if d["kind"] == "Service"]
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]}["http"] == 8181


def test_mcpdsl_load_and_the_disk_cache_keep_the_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, project: m.Project
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cold = compile_text(tmp_path, TREE, stored=True).project
    with monkeypatch.context() as patch:  # warm: from the stored entry only
        patch.setattr(dc, "_compute", lambda *_: pytest.fail("computed a stored file"))
        warm = compile_text(tmp_path, TREE, stored=True).project
    assert cold == warm == project
    assert warm.mcp == project.mcp
    loaded = mcpdsl.load(tmp_path / "tree")
    assert loaded.integrations == project.integrations and loaded.mcp == project.mcp
    # The stored IR may name the new classes; the key covers the grammar and `ir`.
    for name in ("SecretRef", "UpstreamAuth", "Breaker", "McpEndpoint"):
        assert name in dc.ALLOWED["mcpdsl.ir.model"]
    assert {"ir", "syntax"} <= set(dc.FRONT_END)
