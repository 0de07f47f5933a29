"""Access rules as Istio AuthorizationPolicy rules, exactly or not at all.

An Istio rule is `from` AND `to` AND `when`; inside `from`/`to` every field
is ANDed, the values of one field are ORed, `notX` fields match when none of
their values does; the rules of a policy are ORed.  So a rule condition is
brought into disjunctive normal form (negations pushed to the atoms), and
every conjunction becomes one Istio rule.  An atom is kept only where Istio's
answer equals the evaluator's for every request the sidecar sees
(docs/semantics.md: MISSING is false, `not MISSING` is true):

| mcpdsl atom | Istio | why exact |
| --- | --- | --- |
| `service X` principal | `source.principals` = X's workload identity | mTLS STRICT: every request has a peer certificate; only on workloads that verify no tokens (the token would name the principal) |
| `action == "M"` / `in [...]` | `methods` / `notMethods` | the method is always there |
| rule path, `request.path matches G` | `paths` / `notPaths`: literal, or `P` + `P/*` for `P/**`, or `*` for `/**` | Istio compares the path without query, as globs do; its only wildcards are a final `*` (prefix) and `{*}`/`{**}` templates, which are not used (their character classes are narrower than a segment) |
| `source.ip in cidr N` | `ipBlocks` / `notIpBlocks` | the peer address, as the ext_authz request carries it; `remoteIpBlocks` reads X-Forwarded-For, which the caller writes |
| `source.namespace == "n"` / `in` | `namespaces` / `notNamespaces` | Istio reads the namespace out of the peer identity and `notNamespaces` matches a request without one, as `not` does; `!=` / `not in` also require a namespace (`namespaces: ["*"]`) because MISSING makes them false |
| `request.auth.mfa` (positive only) | `when request.auth.claims[C]` values V | the providers' `mfa` claim mapping; a missing claim is no match, which is MISSING = false; a negated claim test would match a request without a token in the evaluator but not in Istio, so it is not exact |
| `resource.type`, `resource.id` | folded: the workload is `service NAME` | |

Everything else (`risk`, `context`, `now`, other `request.auth`, principal
attributes, headers, orderings, functions, arithmetic, `user`/`agent`/
`group`/`tool` principals) raises `Inexpressible` with the reason; the
caller then routes the workload through ext_authz (CUSTOM).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from mcpdsl.compile.envoy_authz import Inexpressible
from mcpdsl.ir import model as m
from mcpdsl.ir.globs import is_literal

#: Alternatives one access rule may expand to (DNF terms); beyond, the rule is not expressed.
MAX_ALTERNATIVES = 64

#: Path characters a literal Istio path value may hold: no `*` (Istio's wildcard), no `{}`
#: (its templates), no `?`/`#` (never part of the path it compares), no space or control.
_PATH_TEXT = re.compile(r"^/[^*{}?#\s\x00-\x1f\x7f]*$")
_CLAIM = re.compile(r"^[A-Za-z0-9_:-]+$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_METHOD = re.compile(r"^[A-Za-z0-9!#$%&'+.^_`|~-]+$")  # an HTTP token without `*`


@dataclass(frozen=True, order=True)
class Atom:
    """One Istio field test: `field` holds one of `values` (or, `negated`, none of them).

    Fields: `principals`, `namespaces`, `ipBlocks`, `methods`, `paths` and
    `claim:<name>` (a `when` on `request.auth.claims[<name>]`).
    """

    field: str
    values: tuple[str, ...]
    negated: bool = False


Term = tuple[Atom, ...]  # a conjunction
Dnf = list[Term]  # a disjunction; [] is false, [()] is true

TRUE: Dnf = [()]
FALSE: Dnf = []


@dataclass(frozen=True)
class Facts:
    """What the translation may assume about one workload (its sidecar's view)."""

    service: str  # the workload is `service <service>`
    identities: dict[str, tuple[str, ...]]  # service name -> Istio principals ("" = shared)
    namespaces_exact: bool  # every service's namespace is written as declared
    verifies_tokens: bool  # the workload has a RequestAuthentication
    mfa_claim: tuple[str, tuple[str, ...]] | None  # the providers' one mfa mapping


# ------------------------------------------------------------- DNF algebra


def dnf_or(parts: Iterable[Dnf], limit: int = MAX_ALTERNATIVES) -> Dnf:
    out: Dnf = []
    for part in parts:
        for term in part:
            if term not in out:
                out.append(term)
    if () in out:
        return TRUE
    _cap(out, limit)
    return out


def dnf_and(parts: Iterable[Dnf], limit: int = MAX_ALTERNATIVES) -> Dnf:
    out: Dnf = TRUE
    for part in parts:
        product: Dnf = []
        for left in out:
            for right in part:
                term = tuple(sorted(set(left) | set(right)))
                if term not in product:
                    product.append(term)
        _cap(product, limit)
        out = product
        if not out:
            return FALSE
    return out


def _cap(terms: Dnf, limit: int) -> None:
    if len(terms) > limit:
        raise Inexpressible(f"expands to more than {limit} alternatives")


# ---------------------------------------------------------------- globs


def path_values(glob: str) -> tuple[str, ...]:
    """The Istio `paths` values matching exactly the paths `glob` matches."""
    if glob == "/**":
        return ("*",)
    if is_literal(glob):
        if not _PATH_TEXT.match(glob):
            raise Inexpressible(f"matches path `{glob}`, which Istio would read as a pattern")
        return (glob,)
    prefix, sep, rest = glob.rpartition("/")
    if rest == "**" and sep and prefix and is_literal(prefix):
        if _PATH_TEXT.match(prefix) and not prefix.endswith("/"):
            return (prefix, prefix + "/*")
        raise Inexpressible(f"matches path `{glob}`, which Istio would read as a pattern")
    raise Inexpressible(
        f"matches path `{glob}`: Istio's `{{*}}`/`{{**}}` templates match fewer characters "
        "than a glob segment, so only literal paths and `PREFIX/**` are exact"
    )


# ----------------------------------------------------------- conditions


def _const(e: m.Node) -> tuple[bool, object]:
    if isinstance(e, m.Literal_) and (e.unit is None or e.unit == "number"):
        return True, e.value
    return False, None


def _json_eq(a: object, b: object) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, Decimal) and isinstance(b, Decimal):
        return a == b
    return type(a) is type(b) and a == b


class Translator:
    """Conditions of rules reaching one workload, to DNF over `Atom`s (module docstring)."""

    def __init__(self, facts: Facts) -> None:
        self.facts = facts

    def condition(self, e: m.Node, positive: bool = True) -> Dnf:
        """The DNF of `e` (or of `not e` when not `positive`)."""
        if isinstance(e, m.Literal_):
            if isinstance(e.value, bool):
                return TRUE if e.value is positive else FALSE
            raise Inexpressible("uses a non-boolean value as a condition")
        if isinstance(e, m.Not):
            return self.condition(e.operand, not positive)
        if isinstance(e, m.And | m.Or):
            parts = [self.condition(x, positive) for x in e.operands]
            conjunction = isinstance(e, m.And) is positive
            return dnf_and(parts) if conjunction else dnf_or(parts)
        if isinstance(e, m.Compare):
            return self._compare(e, positive)
        if isinstance(e, m.In):
            return self._member(e, positive)
        if isinstance(e, m.InCidr):
            return self._cidr(e, positive)
        if isinstance(e, m.Matches):
            if isinstance(e.operand, m.Attr) and e.operand.dotted() == "request.path":
                return [(Atom("paths", path_values(e.pattern), not positive),)]
            raise Inexpressible("uses `matches` on something other than `request.path`")
        if isinstance(e, m.Attr):
            return self._flag(e, positive)
        if isinstance(e, m.Call):
            raise Inexpressible(f"uses `{e.function}()`")
        what = {m.Arith: "arithmetic", m.Default: "`??`", m.Neg: "negation"}.get(type(e))
        raise Inexpressible(f"uses {what or 'a non-boolean value as a condition'}")

    # ---- attributes

    def _constant_attr(self, attr: m.Attr) -> tuple[bool, object]:
        if attr.root == "resource" and attr.path == ("type",):
            return True, "service"
        if attr.root == "resource" and attr.path == ("id",):
            return True, self.facts.service
        return False, None

    def _flag(self, attr: m.Attr, positive: bool) -> Dnf:
        """`request.auth.mfa` as a boolean: the providers' mfa claim holds an mfa value."""
        if attr.dotted() != "request.auth.mfa":
            raise Inexpressible(f"reads `{attr.dotted()}`")
        if not self.facts.verifies_tokens or self.facts.mfa_claim is None:
            raise Inexpressible("reads `request.auth.mfa`, which no provider maps to one claim")
        if not positive:
            raise Inexpressible(
                "tests `request.auth.mfa` negatively: Istio's claim conditions do not match a "
                "request without the claim, the evaluator's `not` does"
            )
        claim, values = self.facts.mfa_claim
        return [(Atom(f"claim:{claim}", values),)]

    def _field(self, attr: m.Attr) -> str:
        dotted = attr.dotted()
        if dotted == "action":
            return "methods"
        if dotted == "source.namespace":
            if not self.facts.namespaces_exact:
                raise Inexpressible(
                    "reads `source.namespace`, and a namespace of the tree is renamed for "
                    "Kubernetes"
                )
            return "namespaces"
        raise Inexpressible(f"reads `{dotted}`")

    def _values(self, field: str, values: list[object]) -> tuple[str, ...] | None:
        """The Istio values equal to one of `values`; None when Istio would read a pattern."""
        out: list[str] = []
        pattern = _METHOD if field == "methods" else _DNS_LABEL
        for value in values:
            if not isinstance(value, str):
                continue  # the attribute is a string: JSON equality with a non-string fails
            if "*" in value:
                return None
            if pattern.match(value) and value not in out:
                out.append(value)
            # a value no request can carry (a namespace that is no DNS label) never matches
        return tuple(sorted(out))

    def _equals(self, attr: m.Attr, values: list[object], positive: bool, eq: bool) -> Dnf:
        """`attr in values` (eq) or `attr not in values` (not eq), under `positive`."""
        if attr.dotted() == "request.auth.mfa" and values == [True] and eq:
            return self._flag(attr, positive)
        field = self._field(attr)
        found = self._values(field, values)
        if found is None:
            raise Inexpressible(f"compares `{attr.dotted()}` with a value holding `*`")
        always = field == "methods"  # a request always has a method; a namespace may be absent
        if eq:
            if not found:
                return FALSE if positive else TRUE
            return [(Atom(field, found, not positive),)]
        # `!=` / `not in`: false when the attribute is MISSING
        present: Dnf = TRUE if always else [(Atom(field, ("*",)),)]
        absent: Dnf = FALSE if always else [(Atom(field, ("*",), True),)]
        outside: Dnf = [(Atom(field, found, True),)] if found else TRUE
        inside: Dnf = [(Atom(field, found),)] if found else FALSE
        if positive:
            return dnf_and([present, outside])
        return dnf_or([absent, inside])

    def _compare(self, e: m.Compare, positive: bool) -> Dnf:
        sides: list[tuple[bool, object, m.Attr | None]] = []
        for side in (e.left, e.right):
            if isinstance(side, m.Attr):
                known, value = self._constant_attr(side)
                sides.append((known, value, side))
            else:
                known, value = _const(side)
                if isinstance(side, m.Call):
                    raise Inexpressible(f"uses `{side.function}()`")
                if not known:
                    raise Inexpressible("compares a computed value")
                sides.append((True, value, None))
        if e.op not in ("==", "!="):
            for _, _, attr in sides:
                if attr is not None:
                    self._field(attr)
            raise Inexpressible(f"orders values with `{e.op}`")
        (kl, vl, al), (kr, vr, ar) = sides
        if kl and kr:
            same = _json_eq(vl, vr) is (e.op == "==")
            return TRUE if same is positive else FALSE
        if not kl and not kr:
            raise Inexpressible("compares two request attributes")
        attr, value = (al, vr) if not kl else (ar, vl)
        assert attr is not None
        return self._equals(attr, [value], positive, e.op == "==")

    def _member(self, e: m.In, positive: bool) -> Dnf:
        if isinstance(e.collection, m.Attr):
            raise Inexpressible(f"reads `{e.collection.dotted()}`")
        if not isinstance(e.collection, m.ListExpr):
            raise Inexpressible("tests membership in a value Istio cannot see")
        values: list[object] = []
        for item in e.collection.items:
            known, value = _const(item)
            if not known:
                raise Inexpressible("tests membership in a computed list")
            values.append(value)
        if isinstance(e.item, m.Attr):
            known, value = self._constant_attr(e.item)
            if not known:
                return self._equals(e.item, values, positive, not e.negated)
        else:
            known, value = _const(e.item)
            if not known:
                raise Inexpressible("tests membership of a computed value")
        inside = any(_json_eq(value, v) for v in values)
        return TRUE if (inside is not e.negated) is positive else FALSE

    def _cidr(self, e: m.InCidr, positive: bool) -> Dnf:
        if not (isinstance(e.operand, m.Attr) and e.operand.dotted() == "source.ip"):
            raise Inexpressible("tests `in cidr` on something other than `source.ip`")
        try:
            net = ipaddress.ip_network(e.cidr, strict=False)
        except ValueError as exc:
            raise Inexpressible(f"tests the network `{e.cidr}`, which is not a CIDR") from exc
        return [(Atom("ipBlocks", (str(net),), not positive),)]


# ---------------------------------------------------------------- rules


def principal_dnf(pattern: m.EntityPattern, facts: Facts) -> Dnf:
    """`any`, or services named by their mesh identities (module docstring)."""
    if pattern.type is None:
        return TRUE
    if pattern.type != "service":
        raise Inexpressible(
            f"names principal `{pattern.describe()}`: only the token says who that is, and "
            "only ext_authz maps tokens to principals"
        )
    if facts.verifies_tokens:
        raise Inexpressible(
            f"names principal `{pattern.describe()}` on a workload that verifies tokens, where "
            "a token would name the principal instead of the peer"
        )
    names = sorted(facts.identities) if pattern.ids is None else list(dict.fromkeys(pattern.ids))
    principals: list[str] = []
    for name in names:
        known = facts.identities.get(name)
        if not known:
            raise Inexpressible(f"names service `{name}`, which is not a workload of this tree")
        if "" in known:
            raise Inexpressible(f"names service `{name}`, whose identity another service shares")
        principals.extend(p for p in known if p not in principals)
    return [(Atom("principals", tuple(sorted(principals))),)]


def rule_dnf(rule: m.Rule, facts: Facts) -> Dnf:
    """The alternatives on which `rule` fires at the workload; raises `Inexpressible`."""
    reasons: list[str] = []
    parts: list[Dnf] = []
    try:
        parts.append(principal_dnf(rule.principal, facts))
    except Inexpressible as exc:
        reasons.append(str(exc))
    if rule.actions:
        try:
            parts.append(
                Translator(facts)._equals(m.Attr(root="action"), [*rule.actions], True, True)
            )
        except Inexpressible as exc:
            reasons.append(str(exc))
    if rule.path is not None:
        try:
            parts.append([(Atom("paths", path_values(rule.path)),)])
        except Inexpressible as exc:
            reasons.append(str(exc))
    if rule.condition is not None:
        try:
            parts.append(Translator(facts).condition(rule.condition))
        except Inexpressible as exc:
            reasons.append(str(exc))
    if reasons:
        raise Inexpressible("; ".join(reasons))
    return dnf_and(parts)


# ------------------------------------------------------------ Istio rules

_SOURCE = {"principals": "principals", "namespaces": "namespaces", "ipBlocks": "ipBlocks"}
_OPERATION = {"methods": "methods", "paths": "paths"}


def _negated_name(field: str) -> str:
    return "not" + field[0].upper() + field[1:]


def _intersect_values(field: str, left: tuple[str, ...], right: tuple[str, ...]) -> tuple[str, ...]:
    """Values of one single-valued attribute both positive tests admit."""
    if field == "paths":
        return tuple(sorted({v for a in left for b in right if (v := _path_meet(a, b))}))
    if field == "ipBlocks":
        nets = []
        for a in left:
            for b in right:
                na, nb = ipaddress.ip_network(a), ipaddress.ip_network(b)
                if na.version != nb.version:
                    continue
                if na.subnet_of(nb):  # type: ignore[arg-type]
                    nets.append(str(na))
                elif nb.subnet_of(na):  # type: ignore[arg-type]
                    nets.append(str(nb))
        return tuple(sorted(set(nets)))
    if left == ("*",):
        return right
    if right == ("*",):
        return left
    return tuple(sorted(set(left) & set(right)))


def _path_meet(a: str, b: str) -> str | None:
    """The one Istio path value matching what both match (exact, `P*` prefix, `*`), if any."""
    if a == "*":
        return b
    if b == "*":
        return a
    pa, pb = a.endswith("*"), b.endswith("*")
    if pa and pb:
        shorter, longer = sorted((a[:-1], b[:-1]), key=len)
        return longer + "*" if longer.startswith(shorter) else None
    if pa or pb:
        prefix, exact = (a[:-1], b) if pa else (b[:-1], a)
        return exact if exact.startswith(prefix) else None
    return a if a == b else None


def istio_rule(term: Term) -> dict[str, object] | None:
    """One AuthorizationPolicy rule matching exactly the conjunction; None when it is empty."""
    positive: dict[str, tuple[str, ...]] = {}
    negative: dict[str, set[str]] = {}
    for atom in term:
        if atom.negated:
            negative.setdefault(atom.field, set()).update(atom.values)
        elif atom.field in positive:
            positive[atom.field] = _intersect_values(atom.field, positive[atom.field], atom.values)
        else:
            positive[atom.field] = atom.values
    if any(not values for values in positive.values()):
        return None
    for field, values in positive.items():
        if field != "ipBlocks" and field != "paths" and set(values) <= negative.get(field, set()):
            return None
    source: dict[str, list[str]] = {}
    operation: dict[str, list[str]] = {}
    when: list[dict[str, object]] = []
    for field in sorted(set(positive) | set(negative)):
        if field.startswith("claim:"):
            if field in negative:  # never built: negated claims are not exact
                raise AssertionError("a negated claim test reached an Istio rule")
            key = f"request.auth.claims[{field.partition(':')[2]}]"
            when.append({"key": key, "values": list(positive[field])})
            continue
        target = source if field in _SOURCE else operation
        if field in positive:
            target[field] = list(positive[field])
        if field in negative:
            target[_negated_name(field)] = sorted(negative[field])
    rule: dict[str, object] = {}
    if source:
        rule["from"] = [{"source": source}]
    if operation:
        rule["to"] = [{"operation": operation}]
    if when:
        rule["when"] = when
    return rule


def istio_rules(terms: Dnf) -> list[dict[str, object]]:
    """The rules of a disjunction, empty conjunctions dropped, duplicates removed."""
    out: list[dict[str, object]] = []
    for term in terms:
        rule = istio_rule(term)
        if rule is not None and rule not in out:
            out.append(rule)
    return out
