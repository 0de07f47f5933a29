"""Access decisions: policies compiled to indexed rules and closures (the fast path).

`PreparedPolicies` is built once from the IR and never mutated, so one
instance can serve any number of threads.  Rules are indexed by
(principal type, principal id) x (resource type, resource id) x action, each
with wildcard buckets (`any`, `TYPE any`, rules without actions); the
candidate list of a request key is memoised, so a request costs a dict lookup
plus its few candidate rules — unrelated rules cost nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from mcpdsl.evaluate.closures import Fn, path_matcher, prepare_expr
from mcpdsl.evaluate.target import query_problem, split_target, with_split_path
from mcpdsl.evaluate.values import MISSING, Refused, checked, now_fields, plain_request
from mcpdsl.ir import model as m
from mcpdsl.ir.globs import path_problem
from mcpdsl.ir.stats import project_reads_stats, stats_problem
from mcpdsl.source import Span

ZERO = Decimal(0)
ONE = Decimal(1)
_WILD = None  # the wildcard bucket key
MEMO_LIMIT = 65536  # memoised request keys before the memo is reset
#: The refusal of a request whose server counters are not what `mcpdsl serve` sends.
STATS_REFUSAL = "the request's server statistics are malformed: {}"


@dataclass(frozen=True, slots=True)
class Decision:
    """The decision for one request (docs/semantics.md).

    `risk` is an exact `Decimal` (0.1 + 0.2 is 0.3), clamped to 0..1.
    `enforced` is what a target without obligations does: allowed and every
    obligation proven by `request.auth.X == true`.
    """

    allowed: bool
    obligations: tuple[str, ...]
    risk: Decimal
    rules: tuple[str, ...]
    default_applied: bool
    enforced: bool
    spans: tuple[Span | None, ...] = ()
    _origin: tuple[Any, Any] | None = field(default=None, repr=False, compare=False)
    refusal: str | None = None  # why the request was refused unevaluated (then a deny)

    def explain(self) -> str:
        """Which rules matched, which conditions failed and why (a slow, tree-walking pass).

        The request is re-read at this point (for a CheckRequest decided by
        `checkrequest.decide`, the CheckRequest is mapped again, in full): do
        not mutate it in between.
        """
        if self.refusal is not None:
            return f"decision: deny (request refused: {self.refusal})"
        if self._origin is None:
            return "no explanation recorded for this decision"
        from mcpdsl.evaluate.explain import explain_decision

        policies, request = self._origin
        try:
            if callable(request):  # a door's decision: its request mapped in full only now
                request = request()
            return explain_decision(policies, request, self)
        except (RecursionError, ValueError, TypeError) as exc:  # mutated since authorize
            verdict = "allow" if self.allowed else "deny"
            return f"decision: {verdict}\nno explanation: {type(exc).__name__}: {exc}"

    def as_dict(self) -> dict[str, Any]:
        """The decision as JSON data (`risk` as a number)."""
        risk = self.risk
        out: dict[str, Any] = {
            "allowed": self.allowed,
            "default_applied": self.default_applied,
            "enforced": self.enforced,
            "obligations": list(self.obligations),
            "risk": int(risk) if risk == risk.to_integral_value() else float(risk),
            "rules": list(self.rules),
        }
        if self.refusal is not None:
            out["refusal"] = self.refusal
        return out


def _decision_maker() -> Callable[..., Decision]:
    """A constructor of `Decision` that sets its slots as plain attribute stores.

    Why: the dataclass's own `__init__` (frozen) sets each of the nine fields
    with a looked-up `object.__setattr__` call, about a fifth of a whole
    decision in a micro-benchmark; calling each slot's descriptor is half of
    that.  Here the fields are stored on an instance of a bare class with the
    very same slots (the interpreter's fastest store), whose class is then
    switched to `Decision` (allowed: the two layouts are identical).  The
    stores are generated from `Decision`'s own fields, so a field added there
    is stored here too; every slot is set before the object is seen.
    """
    names = [f.name for f in fields(Decision)]
    building = type("_DecisionUnderConstruction", (), {"__slots__": Decision.__slots__})
    given = names[:-1]  # every field but `refusal`, which a decided request has not
    if names[-1] != "refusal" or set(names) != set(Decision.__slots__):  # pragma: no cover
        raise TypeError("Decision's fields changed: update `_decision_maker`")
    lines = [f"def make({', '.join(given)}):", "    d = B()"]
    lines += [f"    d.{name} = {name}" for name in given]
    lines += ["    d.refusal = None", "    d.__class__ = D", "    return d"]
    namespace: dict[str, Any] = {"B": building, "D": Decision}
    exec(compile("\n".join(lines), "<Decision>", "exec"), namespace)
    make: Callable[..., Decision] = namespace["make"]
    return make


_decision = _decision_maker()


def refused(reason: str) -> Decision:
    """The decision for a request the engine does not evaluate: deny, risk 1, no rules."""
    return Decision(False, (), ONE, (), False, False, (), None, reason)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    key: str  # POLICY/ID
    policy: int  # index of its policy
    order: int  # global declaration order
    deny: bool
    actions: frozenset[str] | None
    path: Callable[[str], bool] | None
    cond: Fn | None
    span: Span | None
    ir: m.Rule


@dataclass(frozen=True, slots=True)
class CompiledTerm:
    weight: Decimal
    cond: Fn
    ir: m.RiskTerm


@dataclass(frozen=True, slots=True)
class CompiledRequirement:
    obligation: str
    cond: Fn | None
    ir: m.Requirement


@dataclass(frozen=True, slots=True)
class PreparedPolicy:
    name: str
    ir: m.Policy
    default_allow: bool
    risk: tuple[CompiledTerm, ...]
    requires: tuple[CompiledRequirement, ...]
    rules: tuple[CompiledRule, ...]


def policy_name(policy: m.Policy) -> str:
    """The POLICY part of `POLICY/ID` rule keys."""
    return policy.name


def _entity_keys(pattern: m.EntityPattern) -> list[Any]:
    if pattern.type is None:
        return [_WILD]
    if pattern.ids is None:
        return [(pattern.type, _WILD)]
    return [(pattern.type, i) for i in pattern.ids]


class PreparedPolicies:
    """Every policy of a project, compiled and indexed; immutable after construction."""

    def __init__(self, policies: tuple[m.Policy, ...]) -> None:
        self.policies: tuple[PreparedPolicy, ...]
        reads_now = False
        compiled: list[PreparedPolicy] = []
        order = 0
        # index[principal key][resource key][action or None] -> rules
        index: dict[Any, dict[Any, dict[str | None, list[CompiledRule]]]] = {}
        for pi, policy in enumerate(policies):
            name = policy_name(policy)
            rules = []
            for rule in policy.rules:
                cond = None
                if rule.condition is not None:
                    c = prepare_expr(rule.condition)
                    cond = c.fn
                    reads_now = reads_now or c.reads_now
                cr = CompiledRule(
                    key=f"{name}/{rule.id}",
                    policy=pi,
                    order=order,
                    deny=rule.effect == "deny",
                    actions=frozenset(rule.actions) if rule.actions else None,
                    path=path_matcher(rule.path) if rule.path is not None else None,
                    cond=cond,
                    span=rule.span,
                    ir=rule,
                )
                order += 1
                rules.append(cr)
                for pk in _entity_keys(rule.principal):
                    by_resource = index.setdefault(pk, {})
                    for rk in _entity_keys(rule.resource):
                        by_action = by_resource.setdefault(rk, {})
                        for action in cr.actions or (None,):
                            by_action.setdefault(action, []).append(cr)
            terms = []
            for term in policy.risk:
                c = prepare_expr(term.condition)
                reads_now = reads_now or c.reads_now
                terms.append(CompiledTerm(term.weight, c.fn, term))
            requires = []
            for req in policy.requires:
                fn = None
                if req.condition is not None:
                    c = prepare_expr(req.condition)
                    fn = c.fn
                    reads_now = reads_now or c.reads_now
                requires.append(CompiledRequirement(req.obligation, fn, req))
            compiled.append(
                PreparedPolicy(
                    name=name,
                    ir=policy,
                    default_allow=policy.default == "allow",
                    risk=tuple(terms),
                    requires=tuple(requires),
                    rules=tuple(rules),
                )
            )
        self.policies = tuple(compiled)
        self.reads_now = reads_now
        # the z3 analyses assume the server's counters are what the server sends
        # (mcpdsl.ir.stats); a policy reading them refuses a request whose are not
        self.reads_stats = project_reads_stats(policies)
        self.rule_count = order
        self._index = {
            pk: {rk: {a: tuple(rs) for a, rs in by_a.items()} for rk, by_a in by_r.items()}
            for pk, by_r in index.items()
        }
        self._memo: dict[tuple[Any, ...], tuple[CompiledRule, ...]] = {}
        #: What a layer above derived from these policies once (the CheckRequest
        #: door keeps the attributes they read here, `checkrequest.door_reads`):
        #: a cache of pure functions of the policies, filled on first use.
        self.memo: dict[str, Any] = {}

    # ------------------------------------------------------------ candidates

    def candidates(
        self, ptype: Any, pid: Any, rtype: Any, rid: Any, action: Any
    ) -> tuple[CompiledRule, ...]:
        """Rules whose principal, resource and action patterns match (declaration order)."""
        key = (ptype, pid, rtype, rid, action)
        try:
            found = self._memo.get(key)
        except TypeError:  # an unhashable id (a list): only the typed wildcards apply
            found = None
            key = None  # type: ignore[assignment]
        except Exception as exc:  # a foreign object's __hash__/__eq__ failing
            raise Refused(f"an entity key or the action is not JSON: {exc}") from exc
        if found is not None:
            return found
        exact = True
        for x in (ptype, pid, rtype, rid, action):
            if type(x) is not str and x is not None:
                exact = False
                checked(x)  # refuses a foreign type, NaN, a huge number
        found = self._lookup(ptype, pid, rtype, rid, action)
        # only plain keys are memoised: a `str` subclass hashes and compares like
        # its string, and must never decide what a later plain request gets
        if key is not None and exact:
            memo = self._memo
            if len(memo) >= MEMO_LIMIT:
                memo.clear()
            memo[key] = found
        return found

    def _lookup(
        self, ptype: Any, pid: Any, rtype: Any, rid: Any, action: Any
    ) -> tuple[CompiledRule, ...]:
        pkeys = _request_keys(ptype, pid)
        rkeys = _request_keys(rtype, rid)
        if type(action) is not str and isinstance(action, str):
            action = str.__str__(action)
        actions: tuple[str | None, ...] = (None, action) if type(action) is str else (None,)
        index = self._index
        out: list[CompiledRule] = []
        for pk in pkeys:
            by_r = index.get(pk)
            if by_r is None:
                continue
            for rk in rkeys:
                by_a = by_r.get(rk)
                if by_a is None:
                    continue
                for a in actions:
                    rules = by_a.get(a)
                    if rules:
                        out.extend(rules)
        if len(out) > 1:
            out.sort(key=_order)
            # a rule listed under several ids of one pattern appears once per match
            dedup: list[CompiledRule] = []
            last = -1
            for r in out:
                if r.order != last:
                    dedup.append(r)
                    last = r.order
            out = dedup
        return tuple(out)

    # -------------------------------------------------------------- decide

    def matched(self, request: dict[str, Any]) -> list[CompiledRule]:
        """Rules whose principal, resource, action and path match (fired or not)."""
        try:
            request = plain_request(request)
        except Refused:
            return []
        p, r = request.get("principal"), request.get("resource")
        ptype, pid = (p.get("type"), p.get("id")) if type(p) is dict else (None, None)
        rtype, rid = (r.get("type"), r.get("id")) if type(r) is dict else (None, None)
        req = request.get("request")
        path = req.get("path", MISSING) if type(req) is dict else MISSING
        if type(path) is str:
            path = split_target(path)[0]
        return [
            rule
            for rule in self.candidates(ptype, pid, rtype, rid, request.get("action"))
            if rule.path is None or (type(path) is str and rule.path(path))
        ]

    def authorize(self, request: dict[str, Any], origin: bool = True) -> Decision:
        """The decision for one request (see docs/semantics.md).

        Hostile input is denied with `Decision.refusal` saying why, never
        raised: a request that is not a JSON object, a `request.path` not in
        normal form (`globs.path_problem`), or a value the evaluation reads that
        is not JSON (NaN, a huge integer, a foreign type, nesting too deep).
        `str`/`dict`/... subclasses are read as the plain values they hold:
        the fast path checks the exact types of what it reads (the entity
        keys here, attributes in `closures.getter`) and only a request
        that fails that check is copied to plain data (`plain_request`).
        """
        try:
            inp = request
            if type(inp) is not dict:
                inp = request = plain_request(inp)
            p = inp.get("principal")
            r = inp.get("resource")
            req = inp.get("request")
            # the entity keys are classified by value in `candidates` (a `str`
            # subclass as its string); a container that is not exactly a dict,
            # or a path that is not exactly a str, takes the slow path
            if type(p) is dict:
                ptype, pid = p.get("type"), p.get("id")
            elif p is None or not isinstance(p, dict):
                ptype = pid = None
            else:
                return self._decide(plain_request(inp), origin)
            if type(r) is dict:
                rtype, rid = r.get("type"), r.get("id")
            elif r is None or not isinstance(r, dict):
                rtype = rid = None
            else:
                return self._decide(plain_request(inp), origin)
            path: Any = MISSING
            if type(req) is dict:
                path = req.get("path", MISSING)
                if type(path) is not str and isinstance(path, str):
                    return self._decide(plain_request(inp), origin)
            elif req is not None and isinstance(req, dict):
                return self._decide(plain_request(inp), origin)
            if type(path) is str and (
                path[:1] != "/" or "%" in path or "\\" in path or "//" in path or "/." in path
            ):  # `path_problem`'s own fast test, inlined: most paths never call it
                problem = path_problem(path)
                if problem is not None:
                    return refused(f"request.path is not in normal form: {problem}")
            if type(path) is str and ("?" in path or "#" in path):
                inp, path = _split_query(inp, path)
            action = inp.get("action")
            try:  # a memoised key was checked when it was first seen
                cands = self._memo.get((ptype, pid, rtype, rid, action))
            except Exception:  # unhashable or foreign: `candidates` says why
                cands = None
            if cands is None:
                for key in (ptype, pid, rtype, rid, action, path):
                    if type(key) is str and not key.isascii():
                        checked(key)  # a lone surrogate: refused, as `plain_request` refuses it
            elif type(path) is str and not path.isascii():
                checked(path)
            if self.reads_now and "now" not in inp:
                inp = dict(inp)
                inp["now"] = now_fields(datetime.now(UTC))
            if self.reads_stats and "stats" in inp and stats_problem(inp) is not None:
                # a subclass of dict or int is read as the plain value it holds
                problem = stats_problem(plain_request(inp))
                if problem is not None:
                    return refused(STATS_REFUSAL.format(problem))
            if cands is None:
                cands = self.candidates(ptype, pid, rtype, rid, action)
            return self._evaluate(inp, request, origin, cands, path)
        except Refused as exc:
            return refused(str(exc))
        except RecursionError:  # pragma: no cover - nesting is bounded by MAX_DEPTH
            return refused("the request is nested too deeply")

    def authorize_mapped(
        self, request: dict[str, Any], explained: Callable[[], dict[str, Any]] | None = None
    ) -> Decision:
        """`authorize` for a request a door has just built (`mcpdsl.evaluate.checkrequest`).

        Sound only for such a request, whose shape the door's mapping
        guarantees (`checkrequest._body_source`): the request, its `principal`,
        `resource` and `request` are plain dicts; the entity keys are exact
        strings or absent, the action an exact string; `request.path` an exact
        string already cut at the query (no `?`, no `#`); no `stats` and no
        `now`.  So `authorize`'s checks of those shapes (the slow path for
        subclasses, the split of a query, the server counters, an unhashable
        key) cannot fire, and are skipped; every check of a value the request
        carries stays: the path's normal form, lone surrogates in the keys and
        the path, and whatever the conditions read (`closures.getter`).

        `explained`, when given, builds the request `explain()` reads instead
        of `request`: a door that left out of `request` what no condition
        reads (`checkrequest.door_reads`) explains from its full mapping.
        """
        p = request["principal"]
        r = request["resource"]
        return self.authorize_parts(
            request,
            p.get("type"),
            p.get("id"),
            r.get("type"),
            r.get("id"),
            request["action"],
            request["request"]["path"],
            explained,
        )

    def authorize_parts(
        self,
        request: dict[str, Any],
        ptype: Any,
        pid: Any,
        rtype: Any,
        rid: Any,
        action: str,
        path: str,
        explained: Callable[[], dict[str, Any]] | None,
    ) -> Decision:
        """`authorize_mapped`, given the request's entity keys, action and path as well.

        The door's generated decider (`checkrequest._body_source`) has them at
        hand as it builds the request; they must be the request's own
        (`principal.type`, `principal.id`, `resource.type`, `resource.id`,
        `action`, `request.path`).
        """
        try:
            if path[:1] != "/" or "%" in path or "\\" in path or "//" in path or "/." in path:
                problem = path_problem(path)
                if problem is not None:
                    return refused(f"request.path is not in normal form: {problem}")
            cands = self._memo.get((ptype, pid, rtype, rid, action))
            if cands is None:
                for key in (ptype, pid, rtype, rid, action, path):
                    if type(key) is str and not key.isascii():
                        checked(key)  # a lone surrogate: refused, as `authorize` refuses it
                cands = self.candidates(ptype, pid, rtype, rid, action)
            elif not path.isascii():
                checked(path)
            inp = request
            if self.reads_now:
                inp = dict(request)
                inp["now"] = now_fields(datetime.now(UTC))
            origin: Any = request if explained is None else explained
            policies = self.policies
            if len(policies) == 1:
                return self._evaluate_one(policies[0], inp, origin, True, cands, path)
            return self._evaluate(inp, origin, True, cands, path)
        except Refused as exc:
            return refused(str(exc))
        except RecursionError:  # pragma: no cover - nesting is bounded by MAX_DEPTH
            return refused("the request is nested too deeply")

    def _decide(self, inp: dict[str, Any], origin: bool) -> Decision:
        """`authorize` for a request already made plain (the slow path)."""
        p, r, req = inp.get("principal"), inp.get("resource"), inp.get("request")
        ptype, pid = (p.get("type"), p.get("id")) if type(p) is dict else (None, None)
        rtype, rid = (r.get("type"), r.get("id")) if type(r) is dict else (None, None)
        path = req.get("path", MISSING) if type(req) is dict else MISSING
        if type(path) is str:
            problem = path_problem(path)
            if problem is not None:
                return refused(f"request.path is not in normal form: {problem}")
            if "?" in path or "#" in path:
                inp, path = _split_query(inp, path)
        if self.reads_now and "now" not in inp:
            inp = dict(inp)
            inp["now"] = now_fields(datetime.now(UTC))
        problem = stats_problem(inp) if self.reads_stats else None
        if problem is not None:
            return refused(STATS_REFUSAL.format(problem))
        cands = self.candidates(ptype, pid, rtype, rid, inp.get("action"))
        return self._evaluate(inp, inp, origin, cands, path)

    def _evaluate(
        self,
        inp: dict[str, Any],
        request: Any,
        origin: bool,
        cands: tuple[CompiledRule, ...],
        path: Any,
    ) -> Decision:
        policies = self.policies
        if not policies:
            return Decision(
                False, (), ZERO, (), True, False, (), (self, request) if origin else None
            )
        if len(policies) == 1:
            return self._evaluate_one(policies[0], inp, request, origin, cands, path)

        # risk of each policy (terms that fire or error count: fail closed)
        risks = []
        for pol in policies:
            total = ZERO
            for term in pol.risk:
                v = term.cond(inp, ZERO)
                if v is not False and v is not MISSING:
                    total += term.weight
            if total > ONE:
                total = ONE
            elif total < ZERO:
                total = ZERO
            risks.append(total)

        n = len(policies)
        denies: list[list[CompiledRule]] = [[] for _ in range(n)]
        allows: list[list[CompiledRule]] = [[] for _ in range(n)]
        for rule in cands:
            matcher = rule.path
            if matcher is not None and (type(path) is not str or not matcher(path)):
                continue
            cond = rule.cond
            if rule.deny:
                if cond is None:
                    denies[rule.policy].append(rule)
                else:
                    v = cond(inp, risks[rule.policy])
                    if v is not False and v is not MISSING:  # fires, or errors: fail closed
                        denies[rule.policy].append(rule)
            elif cond is None or cond(inp, risks[rule.policy]) is True:
                allows[rule.policy].append(rule)

        allowed_all = True
        defaults_all = True
        fired: list[CompiledRule] = []
        obligations: set[str] = set()
        for pi, pol in enumerate(policies):
            if denies[pi]:
                allowed_all = False
                defaults_all = False
                fired.extend(denies[pi])
                continue
            if allows[pi]:
                defaults_all = False
                fired.extend(allows[pi])
            elif not pol.default_allow:
                allowed_all = False
                continue
            for req_ in pol.requires:
                if req_.cond is None:
                    obligations.add(req_.obligation)
                else:
                    v = req_.cond(inp, risks[pi])
                    if v is not False and v is not MISSING:
                        obligations.add(req_.obligation)
        risk = risks[0] if n == 1 else max(risks)
        if len(fired) > 1:
            fired.sort(key=_key)
        keys = tuple(r.key for r in fired)
        spans = tuple(r.span for r in fired)
        if obligations:
            obl = tuple(sorted(obligations))
            enforced = allowed_all and _proven(inp, obl)
        else:
            obl = ()
            enforced = allowed_all
        return _decision(
            allowed_all,
            obl,
            risk,
            keys,
            defaults_all,
            enforced,
            spans,
            (self, request) if origin else None,
        )

    def _evaluate_one(
        self,
        pol: PreparedPolicy,
        inp: dict[str, Any],
        request: Any,
        origin: bool,
        cands: tuple[CompiledRule, ...],
        path: Any,
    ) -> Decision:
        """`_evaluate` for a tree of one policy (the common case), without the per-policy lists.

        The same steps in the same order: every term, every candidate's
        condition (a refusal anywhere refuses the request), then the requirements
        of an allowing policy.
        """
        risk = ZERO
        for term in pol.risk:
            v = term.cond(inp, ZERO)
            if v is not False and v is not MISSING:  # fires, or errors: fail closed
                risk += term.weight
        if risk is not ZERO:
            if risk > ONE:
                risk = ONE
            elif risk < ZERO:
                risk = ZERO
        denies: list[CompiledRule] = []
        allows: list[CompiledRule] = []
        for rule in cands:
            matcher = rule.path
            if matcher is not None and (type(path) is not str or not matcher(path)):
                continue
            cond = rule.cond
            if rule.deny:
                if cond is None:
                    denies.append(rule)
                else:
                    v = cond(inp, risk)
                    if v is not False and v is not MISSING:
                        denies.append(rule)
            elif cond is None or cond(inp, risk) is True:
                allows.append(rule)
        if denies:
            fired, allowed, default_applied = denies, False, False
        elif allows or pol.default_allow:
            fired, allowed, default_applied = allows, True, not allows
        else:
            fired, allowed, default_applied = allows, False, True
        obligations: tuple[str, ...] = ()
        if allowed and len(pol.requires) == 1:  # the common case, without the set
            req_ = pol.requires[0]
            v = True if req_.cond is None else req_.cond(inp, risk)
            if v is not False and v is not MISSING:
                obligations = (req_.obligation,)
        elif allowed and pol.requires:
            held = set()
            for req_ in pol.requires:
                if req_.cond is None:
                    held.add(req_.obligation)
                else:
                    v = req_.cond(inp, risk)
                    if v is not False and v is not MISSING:
                        held.add(req_.obligation)
            obligations = tuple(sorted(held))
        if not fired:
            keys: tuple[str, ...] = ()
            spans: tuple[Span | None, ...] = ()
        elif len(fired) == 1:
            keys, spans = (fired[0].key,), (fired[0].span,)
        else:
            fired.sort(key=_key)
            keys = tuple(r.key for r in fired)
            spans = tuple(r.span for r in fired)
        enforced = allowed and (not obligations or _proven(inp, obligations))
        return _decision(
            allowed,
            obligations,
            risk,
            keys,
            default_applied,
            enforced,
            spans,
            (self, request) if origin else None,
        )


def _proven(inp: dict[str, Any], obligations: tuple[str, ...]) -> bool:
    req = inp.get("request")
    auth = req.get("auth") if type(req) is dict else None
    if type(auth) is not dict:
        return False
    return all(auth.get(o, MISSING) is True for o in obligations)


def _request_keys(etype: Any, eid: Any) -> tuple[Any, ...]:
    if type(etype) is not str and isinstance(etype, str):
        etype = str.__str__(etype)  # a subclass is read as the string it holds
    if type(eid) is not str and isinstance(eid, str):
        eid = str.__str__(eid)
    if type(etype) is not str:
        return (_WILD,)
    if type(eid) is not str:
        return (_WILD, (etype, _WILD))
    return (_WILD, (etype, _WILD), (etype, eid))


def _order(rule: CompiledRule) -> int:
    return rule.order


def _key(rule: CompiledRule) -> str:
    return rule.key


__all__ = ["Decision", "PreparedPolicies"]


def _split_query(inp: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    """The request with `request.path` cut at the query, `request.query` its map.

    Raises Refused for a query that does not decode exactly (`query_problem`):
    the Rego refuses the same requests, so the two never read a query differently.
    """
    problem = query_problem(path)
    if problem is not None:
        raise Refused(f"request.path has a query that cannot be read: {problem}")
    out = with_split_path(inp, path)
    return out, out["request"]["path"]
