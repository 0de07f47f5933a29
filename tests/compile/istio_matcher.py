"""A small Istio AuthorizationPolicy evaluator over the generated YAML, for the tests.

It follows Istio's documented semantics (security.istio.io/v1), independently
of how mcpdsl builds the policies:

* string values match exactly, `*` alone matches any present value, `P*` is a
  prefix and `*S` a suffix match;
* inside a `source`/`operation` every field must match (AND), a field matches
  when one of its values does (OR), a `notX` field matches when none does —
  also when the attribute is absent (no peer identity has no namespace);
* `namespaces` read the namespace out of the peer identity `TD/ns/NS/sa/SA`;
* `ipBlocks` test the peer address; `paths` the path without its query;
* a `when` condition on a claim does not match a request without the claim
  (neither `values` nor `notValues`); a list claim matches if one item does;
* a rule matches when its `from`, `to` and `when` all match; a policy when one
  of its rules does (a rule `{}` matches everything; no rules match nothing);
* a workload: CUSTOM first (`ext_authz` when it matches), then DENY, then
  ALLOW: with an ALLOW policy a request matching none of them is denied.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MeshRequest:
    principal: str | None  # the peer identity, `TD/ns/NS/sa/SA`
    ip: str
    method: str
    path: str  # may carry a query
    claims: dict[str, Any] | None = None  # a verified token's claims
    headers: dict[str, str] = field(default_factory=dict)


def _string(pattern: str, value: str | None) -> bool:
    if value is None:
        return False
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return value == pattern


def _namespace(principal: str | None) -> str | None:
    if principal is None:
        return None
    found = re.match(r"^[^/]+/ns/([^/]+)/sa/[^/]+$", principal)
    return found[1] if found else None


def _ip(pattern: str, value: str) -> bool:
    addr = ipaddress.ip_address(value)
    net = ipaddress.ip_network(pattern, strict=False)
    return addr.version == net.version and addr in net


def _field(values: list[str], value: str | None, kind: str) -> bool:
    if kind == "ip":
        return value is not None and any(_ip(v, value) for v in values)
    return any(_string(v, value) for v in values)


def _fields(spec: dict[str, list[str]], attrs: dict[str, tuple[str | None, str]]) -> bool:
    for name, values in spec.items():
        negated = name.startswith("not")
        base = name[3].lower() + name[4:] if negated else name
        value, kind = attrs[base]
        hit = _field(values, value, kind)
        if hit is negated:
            return False
    return True


def _when(cond: dict[str, Any], req: MeshRequest) -> bool:
    key = cond["key"]
    claim = re.fullmatch(r"request\.auth\.claims\[([^\]]+)\]", key)
    if claim is None:
        raise AssertionError(f"the test evaluator does not know `when` key {key}")
    if req.claims is None or claim[1] not in req.claims:
        return False
    got = req.claims[claim[1]]
    items = [str(x) for x in got] if isinstance(got, list) else [str(got)]
    if "values" in cond and not any(_string(v, i) for v in cond["values"] for i in items):
        return False
    return not (
        "notValues" in cond and any(_string(v, i) for v in cond["notValues"] for i in items)
    )


def rule_matches(rule: dict[str, Any], req: MeshRequest) -> bool:
    source = {
        "principals": (req.principal, "str"),
        "namespaces": (_namespace(req.principal), "str"),
        "ipBlocks": (req.ip, "ip"),
    }
    operation = {
        "methods": (req.method, "str"),
        "paths": (req.path.split("?", 1)[0], "str"),
    }
    if "from" in rule and not any(_fields(f["source"], source) for f in rule["from"]):
        return False
    if "to" in rule and not any(_fields(t["operation"], operation) for t in rule["to"]):
        return False
    return all(_when(c, req) for c in rule.get("when", []))


def decide(policies: list[dict[str, Any]], req: MeshRequest) -> str:
    """`allow`, `deny` or `ext_authz` (CUSTOM matched: the external server decides next)."""
    by_action: dict[str, list[dict[str, Any]]] = {}
    for doc in policies:
        by_action.setdefault(doc["spec"].get("action", "ALLOW"), []).append(doc["spec"])

    def hit(spec: dict[str, Any]) -> bool:
        return any(rule_matches(r, req) for r in spec.get("rules", []))

    if any(hit(s) for s in by_action.get("CUSTOM", [])):
        return "ext_authz"
    if any(hit(s) for s in by_action.get("DENY", [])):
        return "deny"
    allows = by_action.get("ALLOW", [])
    if allows and not any(hit(s) for s in allows):
        return "deny"
    return "allow"


def denied(policies: list[dict[str, Any]], req: MeshRequest) -> bool:
    """Whether a DENY policy of the workload matches (after CUSTOM, before ALLOW)."""
    return any(
        rule_matches(r, req)
        for doc in policies
        if doc["spec"].get("action") == "DENY"
        for r in doc["spec"].get("rules", [])
    )
