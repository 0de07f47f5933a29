"""Honest enforcement: the gateway's enforcement table comes from its door's facts.

What a rule delegated to ext_authz can see is what the gateway's door
provides (`mcpdsl.ir.door.DoorMapping.provides`), which depends on the
providers it accepts and the headers it trusts.  The identity syntax is not
lowered yet, so these tests add providers and trusted headers to the IR.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mcpdsl.builder.artifacts import BuildResult, compile_artifacts
from mcpdsl.diagnostics import Severity
from mcpdsl.ir import model as m
from mcpdsl.ir.door import door_mapping
from mcpdsl.pipeline import compile_tree

TREE = """package shop

service api {
  image "example/api:1"
  port  8080
  stateful
}

balance api {
  strategy least-request
}

policy access {
  staff:   allow user any -> service api on GET "/v1/**" when "staff" in principal.groups
  step-up: allow user any -> service api on DELETE "/v1/**" when request.auth.mfa == true
  embargo: deny any -> any when context.device.managed == false
  require audit
}

policy step-up {
  default allow
  require mfa
}

gateway edge {
  listen 8080
  route  "/**" -> service api
}
"""

IDP = m.Provider(
    package="shop",
    name="corp-idp",
    issuer="https://idp.example",
    jwks_uri="https://idp.example/jwks",
)
MANAGED = m.TrustedHeader(header="x-device-managed", attribute=("device", "managed"), type="bool")


def _compile(tmp_path: Path, providers: bool, trusted: bool, strict: bool = False) -> BuildResult:
    tree = tmp_path / "tree"
    tree.mkdir(exist_ok=True)
    (tree / "main.mcp").write_text(TREE)
    compilation = compile_tree(tree)
    project = compilation.project
    assert project is not None, compilation.diagnostics
    gateway = project.gateways[0].model_copy(
        update={
            "providers": (m.Ref(package="shop", name="corp-idp"),) if providers else (),
            "trusted_headers": (MANAGED,) if trusted else (),
        }
    )
    project = project.model_copy(
        update={"gateways": (gateway,), "providers": (IDP,) if providers else ()}
    )
    return compile_artifacts(
        dataclasses.replace(compilation, project=project), ("envoy",), strict=strict
    )


def _status(result: BuildResult, rule: str) -> set[str]:
    return {str(e.status) for e in result.enforcement if e.rule == rule and e.target == "envoy"}


def test_door_facts_follow_providers_and_trusted_headers() -> None:
    bare = m.Gateway(package="shop", name="edge", port=8080)
    project = m.Project(providers=(IDP,))
    door = door_mapping(project, bare)
    attr = m.Attr.model_validate
    assert door.provides(attr({"root": "principal", "path": ("id",)}))
    assert door.provides(attr({"root": "principal", "path": ("identity",)}))
    assert not door.provides(attr({"root": "principal", "path": ("groups",)}))
    assert not door.provides(attr({"root": "request", "path": ("auth", "mfa")}))
    assert not door.provides(attr({"root": "context", "path": ("device", "managed")}))
    assert door.provides(attr({"root": "request", "path": ("query", "page")}))
    assert not door.provides(attr({"root": "resource", "path": ("owner",)}))
    full = door_mapping(
        project,
        bare.model_copy(
            update={
                "providers": (m.Ref(package="shop", name="corp-idp"),),
                "trusted_headers": (MANAGED,),
            }
        ),
    )
    assert full.provides(attr({"root": "principal", "path": ("groups",)}))
    assert full.provides(attr({"root": "principal", "path": ("email",)}))
    assert full.provides(attr({"root": "request", "path": ("auth", "mfa")}))
    assert full.auth_fields == {"mfa"}
    assert full.provides(attr({"root": "context", "path": ("device",)}))
    assert full.provides(attr({"root": "context", "path": ("device", "managed")}))
    assert not full.provides(attr({"root": "context", "path": ("device", "managed", "x")}))
    assert not full.provides(attr({"root": "context", "path": ("geo",)}))


def test_mfa_rules_become_enforced_once_a_provider_vouches(tmp_path: Path) -> None:
    before = _compile(tmp_path, providers=False, trusted=False)
    assert _status(before, "access/step-up") == {"narrowed"}
    assert _status(before, "access/staff") == {"narrowed"}
    after = _compile(tmp_path, providers=True, trusted=False)
    # `request.auth.mfa` and `principal.groups` come from the token now; the obligation
    # `mfa` is proven by the same claim.  `audit` still has no proof at the gateway.
    assert _status(after, "access/step-up") == {"narrowed"}  # its policy requires `audit`
    why = [
        d for d in after.build_diagnostics if d.code == "B0122" and "access/step-up" in d.message
    ]
    notes = [n for d in why for n in d.notes]
    assert "its policy may require `audit`, which nothing proves at ext_authz" in notes
    assert not any(n.startswith("it reads") for n in notes)  # mfa is provided now


def test_without_an_unprovable_obligation_the_mfa_rule_is_enforced(tmp_path: Path) -> None:
    global TREE
    saved = TREE
    TREE = TREE.replace("  require audit\n", "")
    try:
        before = _compile(tmp_path, providers=False, trusted=False)
        after = _compile(tmp_path, providers=True, trusted=False)
    finally:
        TREE = saved
    assert _status(before, "access/step-up") == {"narrowed"}
    assert _status(after, "access/step-up") == {"enforced"}
    assert _status(after, "access/staff") == {"enforced"}
    assert not [d for d in after.build_diagnostics if d.code == "B0122"]


def test_a_deny_on_an_untrusted_context_fails_open_b0121(tmp_path: Path) -> None:
    lax = _compile(tmp_path, providers=True, trusted=False)
    (finding,) = [d for d in lax.build_diagnostics if d.code == "B0121"]
    assert finding.severity is Severity.WARNING and not lax.has_errors
    assert "deny rule `access/embargo` is not enforced" in finding.message
    assert any("`context.device.managed`" in n for n in finding.notes)
    strict = _compile(tmp_path, providers=True, trusted=False, strict=True)
    assert strict.has_errors
    assert any(d.code == "B0121" and d.severity is Severity.ERROR for d in strict.build_diagnostics)
    trusted = _compile(tmp_path, providers=True, trusted=True, strict=True)
    assert _status(trusted, "access/embargo") == {"enforced"}
    assert not [d for d in trusted.build_diagnostics if d.code == "B0121"]
