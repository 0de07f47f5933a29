"""The generated rules stay visible to OPA's rule index (real OPA, its evaluation trace).

OPA keys each body of `_allow_fired` / `_deny_fired` on the equalities at its
top; a body the index cannot key is evaluated for every request.  These tests
read OPA's own trace (the `Index` event says how many bodies a lookup
returned), so they fail if the encoding of principals, resources or actions
stops being indexable (e.g. `input.action in ["GET", "POST"]`, with which OPA
1.20 returns every body) — without timing anything.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from validators import opa_available

import mcpdsl
from mcpdsl.compile import TargetContext
from mcpdsl.compile import opa as target

pytestmark = pytest.mark.skipif(
    not opa_available(),
    reason="system component missing: the OPA engine (opa-golib-python-bindings)",
)

SERVICES = 12
RULES = 48


def _rule(i: int) -> str:
    """Rule i: single or several ids and actions, allow or deny, by i."""
    src = f"svc-{i % SERVICES}"
    dst = f"svc-{(i * 5 + 1) % SERVICES}"
    other_src, other_dst = f"svc-{(i + 6) % SERVICES}", f"svc-{(i * 5 + 4) % SERVICES}"
    principal = f"service [{src}, {other_src}]" if i % 3 == 0 else f"service {src}"
    resource = f"service [{dst}, {other_dst}]" if i % 4 == 1 else f"service {dst}"
    actions = "GET, POST" if i % 2 == 0 else "GET"
    effect = "deny" if i % 5 == 4 else "allow"
    return f'  r{i}: {effect} {principal} -> {resource} on {actions} "/v{i}/**"'


def _tree(root: Path) -> Path:
    services = "".join(
        f'service svc-{i} {{\n  image "ghcr.io/t/svc-{i}:1"\n  port 8080\n}}\n\n'
        for i in range(SERVICES)
    )
    rules = "\n".join(_rule(i) for i in range(RULES))
    (root / "t.mcp").write_text(
        f"package t\n\n{services}policy p {{\n  default deny\n\n{rules}\n}}\n", encoding="utf-8"
    )
    return root


def _opa(tmp_path: Path) -> Any:
    from opa_bindings import OpaEngine

    output = target.compile(mcpdsl.load(_tree(tmp_path)), TargetContext(version="test"))
    opa = OpaEngine()
    for artifact in output.artifacts:
        if artifact.path.endswith(".rego"):
            opa.add_policy(artifact.path, artifact.content.decode("utf-8"))
        elif artifact.path == "opa/data.json":
            opa.add_data(json.loads(artifact.content))
    return opa


def _request(principal: str, resource: str, action: str, path: str) -> dict[str, Any]:
    return {
        "principal": {"type": "service", "id": principal},
        "resource": {"type": "service", "id": resource},
        "action": action,
        "request": {"path": path, "headers": {}, "auth": {}},
    }


def _looked_up(opa: Any, document: str, request: dict[str, Any]) -> int:
    """How many bodies of `document` OPA's index returned for `request`."""
    opa.eval_document(f"mcp.t.p.{document}", request, trace=True)
    lookups = [
        e["message"]
        for e in opa.last_trace
        if e["op"] == "Index" and e["location"] == f"data.mcp.t.p.{document}"
    ]
    assert len(lookups) == 1, lookups
    found = re.match(r"\(matched (\d+) rules?", lookups[0])
    assert found, lookups[0]
    return int(found.group(1))


def _keyed(request: dict[str, Any], effect: str) -> int:
    """How many bodies of `effect` the index should return for `request`.

    A single id or action is an equality the index keys on; several are filed
    under "any value" for that attribute (and keyed on the others).
    """
    count = 0
    for i in range(RULES):
        if ("deny" if i % 5 == 4 else "allow") != effect:
            continue
        src, dst = f"svc-{i % SERVICES}", f"svc-{(i * 5 + 1) % SERVICES}"
        if (
            (i % 3 == 0 or request["principal"]["id"] == src)
            and (i % 4 == 1 or request["resource"]["id"] == dst)
            and (i % 2 == 0 or request["action"] == "GET")
        ):
            count += 1
    return count


REQUESTS = [
    *(
        (f"svc-{i % SERVICES}", f"svc-{(i * 5 + 1) % SERVICES}", action)
        for i in range(0, RULES, 5)
        for action in ("GET", "POST", "DELETE")
    ),
    ("nobody", "svc-1", "GET"),
    ("svc-0", "nothing", "POST"),
    ("svc-9", "svc-4", "GET"),
    ("nobody", "nothing", "GET"),
]


def test_the_index_returns_only_the_bodies_that_can_match(tmp_path: Path) -> None:
    opa = _opa(tmp_path)
    for principal, resource, action in REQUESTS:
        request = _request(principal, resource, action, "/v0/x")
        for effect in ("allow", "deny"):
            expected = _keyed(request, effect)
            assert _looked_up(opa, f"_{effect}_fired", request) == expected, (request, effect)
            assert expected < RULES // 4  # the index does narrow the policy down


def test_several_ids_and_actions_still_decide_exactly(tmp_path: Path) -> None:
    """The `some v in [...]` form matches exactly the listed ids and actions."""
    opa = _opa(tmp_path)
    decide = lambda r: opa.eval_document("mcp.main.decision", r)  # noqa: E731
    # r0: allow service [svc-0, svc-6] -> service svc-1 on GET, POST "/v0/**"
    for principal, action, fired in [
        ("svc-0", "GET", True),
        ("svc-6", "POST", True),
        ("svc-0", "PUT", False),
        ("svc-7", "GET", False),
    ]:
        decision = decide(_request(principal, "svc-1", action, "/v0/a"))
        assert ("p/r0" in decision["rules"]) is fired, (principal, action, decision)
