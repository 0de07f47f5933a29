"""The OPA target: one Rego v1 package per policy, a shared library, a combiner, a bundle.

Output (paths relative to the build root):

    opa/<package>/<policy>.rego   package mcp.<package>.<policy>: decision, allow, deny
    opa/mcp/lib.rego              package mcp.lib: the three-valued expression helpers
    opa/mcp/main.rego             package mcp.main: decision and allow over every policy
    opa/mcp/envoy.rego            package mcp.envoy: allow for an Envoy ext_authz CheckRequest
    opa/data.json                 {"mcp": {"meta": ...}}: policy metadata, service identities,
                                  the CheckRequest mapping of every door (`mcpdsl.ir.door`)
    opa/bundle.tar.gz             an OPA bundle of the above with a `.manifest`
    opa/config.yaml               OPA configuration: the OPA-Envoy plugin and the bundle source

Names are sanitised into Rego identifiers by `rego_names` (documented in
targets/opa/README.md).  The semantics (deny overrides, default, fail closed,
exact risk, obligations) is docs/semantics.md; the per-operator helpers live
in `targets/opa/lib.rego.j2` and `opa_expr` compiles conditions to calls of
them.  Every user string reaches the Rego text through `rego_string`.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from decimal import Decimal
from functools import cache
from typing import Any

import jinja2

from mcpdsl.compile import Artifact, Enforcement, TargetContext, TargetOutput
from mcpdsl.compile.envoy_clusters import OPA_PORT
from mcpdsl.compile.opa_bundle import bundle_tarball
from mcpdsl.compile.opa_expr import (
    compile_expr,
    fires_bodies,
    fires_or_errs_bodies,
    lib_call,
    rego_array,
    rego_string,
    render,
    uses_cidr,
)
from mcpdsl.compile.serialize import dump_json, dump_yaml
from mcpdsl.compile.server import SERVER
from mcpdsl.ir import model as m
from mcpdsl.ir.door import doors, doors_data, rego_constants
from mcpdsl.ir.globs import PATH_PROBLEMS, glob_regex, is_literal
from mcpdsl.ir.paths import VALID_QUERY_COMPONENT
from mcpdsl.ir.stats import rule_stats
from mcpdsl.resources import read_text

NAME = "opa"

ROOT = "mcp"
#: Rego v1 keywords (and the two root documents): never used as a path segment.
KEYWORDS = frozenset(
    {
        "as", "contains", "data", "default", "else", "every", "false", "if", "import", "in",
        "input", "not", "null", "package", "some", "true", "with",
    }
)  # fmt: skip
#: Segments under `mcp` the target uses itself (`mcp` would put a policy file beside lib.rego).
RESERVED_PACKAGES = frozenset({"lib", "main", "meta", "envoy", ROOT})
#: The OPA-Envoy plugin (`openpolicyagent/opa:*-envoy`): its gRPC port is the Envoy target's
#: `opa` cluster port, and it asks `data.mcp.envoy.allow` (a boolean) for every CheckRequest.
ENVOY_PLUGIN = "envoy_ext_authz_grpc"
ENVOY_DECISION_PATH = f"{ROOT}/envoy/allow"
#: Where OPA downloads the bundle from: GET `<url>/<resource>`.
BUNDLE_SERVICE = "mcpdsl"
BUNDLE_SERVICE_URL = "http://mcpdsl-bundles.mcpdsl-system.svc"
BUNDLE_RESOURCE = "bundle.tar.gz"
#: The smallest risk scale: weights are summed in integer millionths (or finer, if needed).
RISK_DIGITS = 6


# ------------------------------------------------------------------ naming


def _hash8(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def sanitise(names: Iterable[str], reserved: frozenset[str] = frozenset()) -> dict[str, str]:
    """Map mcpdsl names of one scope to distinct Rego identifiers.

    `-` becomes `_`; a name whose result is a keyword, is reserved, or collides
    with another name of the scope gets `_` and 8 hex digits of its sha256
    appended (a name that needed no change keeps it).

    >>> sanitise(["zero-trust", "api", "a-b", "a_b", "default"])["zero-trust"]
    'zero_trust'
    >>> sorted(sanitise(["a-b", "a_b"]).items())
    [('a-b', 'a_b_d44362d6'), ('a_b', 'a_b')]
    """
    unique = sorted(set(names))
    base = {n: n.replace("-", "_") for n in unique}
    counts = Counter(base.values())
    out: dict[str, str] = {}
    for name, ident in base.items():
        clash = counts[ident] > 1 and ident != name
        if ident in KEYWORDS or ident in reserved or clash:
            ident = f"{ident}_{_hash8(name)}"
        out[name] = ident
    if len(set(out.values())) != len(out):  # pragma: no cover - a sha256 prefix collision
        raise AssertionError(f"Rego names collide: {out}")
    return out


def rego_names(project: m.Project) -> dict[tuple[str, str], tuple[str, str]]:
    """(package, policy) -> (package identifier, policy identifier) for every policy."""
    packages = sanitise({p.package for p in project.policies}, KEYWORDS | RESERVED_PACKAGES)
    out: dict[tuple[str, str], tuple[str, str]] = {}
    for package, ident in packages.items():
        policies = sanitise(p.name for p in project.policies if p.package == package)
        for name, policy_ident in policies.items():
            out[(package, name)] = (ident, policy_ident)
    return out


# ------------------------------------------------------------------ templates


def comment(text: object) -> str:
    """Text safe inside a `#` comment: one line of printable ASCII (Python escapes)."""
    return str(text).encode("unicode_escape").decode("ascii")


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["rego"] = lambda value: rego_string(str(value))
    env.filters["comment"] = comment
    # the normal-form checks of request paths, shared with the engine (lib.rego.j2)
    env.globals["path_problems"] = PATH_PROBLEMS
    # the query split of request targets, shared with the engine (evaluate/target.py)
    env.globals["valid_query_component"] = VALID_QUERY_COMPONENT
    return env


@cache
def _template(name: str) -> jinja2.Template:
    return _environment().from_string(read_text("targets", "opa", name))


def render_template(name: str, **context: Any) -> str:
    return _template(name).render(**context)


# ------------------------------------------------------------------ policies


def _one_of(ref: str, var: str, values: list[str] | tuple[str, ...]) -> list[str]:
    """`ref` equals one of `values`, written so that OPA's rule index still sees the rule.

    One value is `ref == "v"`, which the index keys the rule on.  Several are
    `some var in [...]` then `ref == var`: the index files the rule under "any
    value" for `ref` and keeps keying it on the rule's other equalities.  The
    plain `ref in [...]` is avoided: OPA 1.20's index then returns the rule for
    every request, whatever its other equalities say, so each request would
    evaluate every rule of the policy (benchmarks/rego.py, docs/performance.md).
    """
    unique = sorted(set(values))
    if len(unique) == 1:
        return [f"{ref} == {rego_string(unique[0])}"]
    return [f"some {var} in {rego_array(unique)}", f"{ref} == {var}"]


def _entity_lines(which: str, pattern: m.EntityPattern) -> list[str]:
    if pattern.type is None:
        return []
    lines = [f"input.{which}.type == {rego_string(pattern.type)}"]
    if pattern.ids is not None:
        lines += _one_of(f"input.{which}.id", f"{which}_id", pattern.ids)
    return lines


def _summary(rule: m.Rule) -> str:
    text = f"{rule.effect} {rule.principal.describe()} -> {rule.resource.describe()}"
    if rule.actions:
        text += " on " + ", ".join(rule.actions)
    if rule.path is not None:
        text += (" on *" if not rule.actions else "") + f' "{rule.path}"'
    if rule.condition is not None:
        text += " when <condition>"
    return text


def _path_lines(glob: str) -> list[str]:
    """The request path matches `glob`: plain string tests where the glob allows them.

    A glob without `*` matches exactly one path (`lib.bare_path`, the path
    without its query, equals it); `PREFIX/**` matches PREFIX and everything
    under `PREFIX/`, i.e. exactly the paths that, with a `/` appended, start
    with `PREFIX/` (no segment of PREFIX has a `*`, `?` or `#`: `glob_error`).
    Both are what `glob_regex` matches (tests/compile/test_opa_paths.py
    compares them on generated paths); any other glob keeps its regular
    expression, on the path cut once per request.
    """
    prefix, _, last = glob.rpartition("/")
    if is_literal(glob):
        return [f"lib.bare_path == {rego_string(glob)}"]
    if last == "**" and is_literal(prefix):
        return [f"startswith(lib.bare_path_slash, {rego_string(prefix + '/')})"]
    return [f"regex.match({rego_string(glob_regex(glob))}, lib.bare_path)"]


def _rule_bodies(rule: m.Rule, policy: m.Policy) -> list[list[str]]:
    """The bodies of a rule (it fires when one holds); `[[]]` for a rule without a test."""
    if rule_stats(rule, policy):
        # the counters exist only in `mcpdsl serve` (compile/server.py): never fires here
        return [["false # reads stats.principal.*: decided by `mcpdsl serve` only (B0171)"]]
    lines = _entity_lines("principal", rule.principal) + _entity_lines("resource", rule.resource)
    if rule.actions:
        lines += _one_of("input.action", "action", rule.actions)
    if rule.path is not None:
        lines += _path_lines(rule.path)
    if rule.condition is None:
        return [lines]
    # plain Rego when the condition has a plain form: an allow rule fires on
    # true, a deny rule on true or ERROR (fail closed)
    if rule.effect == "allow":
        plain = fires_bodies(rule.condition)
    else:
        plain = fires_or_errs_bodies(rule.condition)
    if plain is not None:
        return [lines + body for body in plain]
    test = "fires_or_errs" if rule.effect == "deny" else "fires"
    return [[*lines, render(lib_call(test, compile_expr(rule.condition)), 1)]]


def risk_scale(policy: m.Policy) -> int:
    """10**digits: the unit in which the policy's risk weights are exact integers."""
    digits = RISK_DIGITS
    for term in policy.risk:
        exponent = term.weight.normalize().as_tuple().exponent
        if isinstance(exponent, int):
            digits = max(digits, -exponent)
    return 10**digits


def risk_units(weight: Decimal, scale: int) -> int:
    units = weight * scale
    if units != units.to_integral_value():  # pragma: no cover - risk_scale makes it exact
        raise AssertionError(f"weight {weight} is not a multiple of 1/{scale}")
    return int(units)


def _fail_closed_bodies(condition: m.Expr) -> list[list[str]]:
    """Bodies that hold when a risk term's or requirement's condition fires or errs."""
    plain = fires_or_errs_bodies(condition)
    if plain is not None:
        return plain
    return [[render(lib_call("fires_or_errs", compile_expr(condition)), 1)]]


def _policy_context(policy: m.Policy, rego_package: str, ctx: TargetContext) -> dict[str, Any]:
    scale = risk_scale(policy)
    rules = [
        {
            "qualified_id": f"{policy.name}/{rule.id}",
            "effect": rule.effect,
            "summary": _summary(rule),
            "bodies": _rule_bodies(rule, policy),
        }
        for rule in policy.rules
    ]
    effects = {rule.effect for rule in policy.rules}
    return {
        "version": ctx.version,
        "policy_name": policy.name,
        "package_name": policy.package,
        "rego_package": rego_package,
        "rules": rules,
        "missing_effects": [e for e in ("deny", "allow") if e not in effects],
        "risk_scale": scale,
        "risk_terms": [
            {
                "summary": f"weight {term.weight}",
                "units": risk_units(term.weight, scale),
                "bodies": _fail_closed_bodies(term.condition),
            }
            for term in policy.risk
        ],
        "requires": [
            {
                "name": req.obligation,
                "summary": req.obligation + (" when <condition>" if req.condition else ""),
                "bodies": [[]] if req.condition is None else _fail_closed_bodies(req.condition),
            }
            for req in policy.requires
        ],
        "default_allowed": "true" if policy.default == "allow" else "false",
    }


def _policy_uses_cidr(policy: m.Policy) -> bool:
    exprs: list[m.Node | None] = [r.condition for r in policy.rules]
    exprs += [t.condition for t in policy.risk] + [q.condition for q in policy.requires]
    return any(uses_cidr(e) for e in exprs)


# ------------------------------------------------------------------ data.json


def _pattern_data(pattern: m.EntityPattern) -> dict[str, Any]:
    return {"type": pattern.type, "ids": None if pattern.ids is None else list(pattern.ids)}


def data_document(
    project: m.Project, names: dict[tuple[str, str], tuple[str, str]], ctx: TargetContext
) -> dict[str, Any]:
    """`data.mcp.meta`: what the policies are, where they are, and the service identities."""
    policies = []
    for policy in project.policies:
        package, ident = names[(policy.package, policy.name)]
        policies.append(
            {
                "package": policy.package,
                "policy": policy.name,
                "decision": f"data.{ROOT}.{package}.{ident}.decision",
                "default": policy.default,
                "risk_scale": risk_scale(policy),
                "obligations": sorted({r.obligation for r in policy.requires}),
                "rules": [
                    {
                        "id": f"{policy.name}/{rule.id}",
                        "effect": rule.effect,
                        "principal": _pattern_data(rule.principal),
                        "resource": _pattern_data(rule.resource),
                        "actions": list(rule.actions),
                        "path": rule.path,
                        "path_regex": None if rule.path is None else glob_regex(rule.path),
                        "conditional": rule.condition is not None,
                    }
                    for rule in policy.rules
                ],
            }
        )
    services = {
        s.qualified: {
            "package": s.package,
            "name": s.name,
            "namespace": s.namespace,
            "identity": s.identity,
        }
        for s in project.services
    }
    identities = {s.identity: s.qualified for s in project.services if s.identity}
    meta = {
        "generator": "mcpdsl",
        "version": ctx.version,
        "entrypoints": {
            "decision": f"data.{ROOT}.main.decision",
            "allow": f"data.{ROOT}.main.allow",
        },
        "policies": policies,
        "services": services,
        "identities": dict(sorted(identities.items())),
        # the CheckRequest mapping of every door (mcp.envoy reads it; docs/runtime.md)
        "doors": doors_data(doors(project)),
    }
    return {ROOT: {"meta": meta}}


# ------------------------------------------------------------------ config.yaml


def config_document() -> dict[str, Any]:
    """OPA's configuration file for the OPA-Envoy plugin serving `mcp.envoy.allow`.

    The plugin's `path` is the decision's document path without `data.` (in
    `/` form); the rule is boolean, which the plugin accepts (true = OK,
    false = 403).  No `decision_logs` section: with one that is not `console:
    true`, OPA ships decision logs to the first service, i.e. the bundle
    server.  Bundle signing needs a `keys` section (targets/opa/README.md).

    >>> config_document()["plugins"]["envoy_ext_authz_grpc"]["path"]
    'mcp/envoy/allow'
    """
    return {
        "services": {BUNDLE_SERVICE: {"url": BUNDLE_SERVICE_URL}},
        "bundles": {ROOT: {"service": BUNDLE_SERVICE, "resource": BUNDLE_RESOURCE}},
        "plugins": {
            ENVOY_PLUGIN: {
                "addr": f":{OPA_PORT}",
                "path": ENVOY_DECISION_PATH,
                "dry-run": False,
                "enable-reflection": False,
            }
        },
    }


# ------------------------------------------------------------------ target


def compile(project: m.Project, ctx: TargetContext) -> TargetOutput:
    """Every Rego module, data.json, the bundle and OPA's configuration for a project."""
    names = rego_names(project)
    output = TargetOutput()
    files: dict[str, bytes] = {}
    main_policies = []
    for policy in sorted(project.policies, key=lambda p: (p.package, p.name)):
        package, ident = names[(policy.package, policy.name)]
        rego_package = f"{ROOT}.{package}.{ident}"
        text = render_template("policy.rego.j2", **_policy_context(policy, rego_package, ctx))
        files[f"{package}/{ident}.rego"] = text.encode("utf-8")
        main_policies.append(
            {"rego_package": rego_package, "source": f"{policy.package}.{policy.name}"}
        )
        where = f"data.{rego_package}.decision"
        for rule in policy.rules:
            record = Enforcement(rule=f"{policy.name}/{rule.id}", target=NAME, where=where)
            if SERVER.needs(rule, policy):
                SERVER.finding(output, record, rule, policy, rule.span or policy.span, "by opa")
            else:
                output.enforced(record, rule.span or policy.span)
    # `_ip_in` also serves the trusted headers' `sources` in mcp.envoy
    sources = any(h.sources for g in project.gateways for h in g.trusted_headers)
    cidr = sources or any(_policy_uses_cidr(p) for p in project.policies)
    lib = render_template("lib.rego.j2", version=ctx.version, cidr=cidr)
    main = render_template("main.rego.j2", version=ctx.version, policies=main_policies)
    envoy = render_template(
        "envoy.rego.j2", version=ctx.version, sources=sources, **rego_constants()
    )
    files[f"{ROOT}/lib.rego"] = lib.encode("utf-8")
    files[f"{ROOT}/main.rego"] = main.encode("utf-8")
    files[f"{ROOT}/envoy.rego"] = envoy.encode("utf-8")
    files["data.json"] = dump_json(data_document(project, names, ctx))
    for path in sorted(files):
        output.artifacts.append(Artifact(f"opa/{path}", files[path]))
    output.artifacts.append(Artifact("opa/bundle.tar.gz", bundle_tarball(files, roots=[ROOT])))
    output.artifacts.append(Artifact("opa/config.yaml", dump_yaml(config_document())))
    return output
