"""Requests drawn from the vocabulary of a policy tree, for differential testing.

The vocabulary is what the tree itself talks about: its principals and
resources (typed ids, and strangers for `TYPE any`), actions, paths made from
the rules' globs, every attribute path its conditions read, and for each
attribute the values that sit on the boundaries of the comparisons it takes
part in (each numeric literal and +/- small deltas, as int and float), the
string and list literals it meets, addresses inside and outside each CIDR,
and wrong-typed values (null, strings for numbers, numbers for strings,
lists, objects).  How many attributes a request carries, and how many of them
are odd, varies per request; the rest are left out (MISSING).
"""

from __future__ import annotations

import copy
import ipaddress
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from mcpdsl.ir import model as m

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ODD_VALUES: list[Any] = [None, True, False, 0, 1, -1, 2.5, "", "x", "true", [], {}, ["x"], {"k": 1}]


@dataclass
class Vocabulary:
    entities: list[tuple[str, str]] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    attributes: dict[tuple[str, ...], list[Any]] = field(default_factory=dict)
    strings: set[str] = field(default_factory=set)
    # per rule: (principals, resources, actions, paths) that match its patterns
    shapes: list[tuple[list[tuple[str, str]], list[tuple[str, str]], list[str], list[str]]] = field(
        default_factory=list
    )


def _number_variants(value: Decimal) -> list[Any]:
    out: list[Any] = []
    for delta in (Decimal(0), Decimal("0.001"), Decimal("-0.001"), Decimal(1), Decimal(-1)):
        v = value + delta
        if v == v.to_integral_value():
            out.extend([int(v), float(v)])
        else:
            out.append(float(v))
    out.append(str(value))  # a number spelled as a string: a type error for `<`
    return out


def _glob_instances(pattern: str) -> list[str]:
    out = {
        pattern.replace("/**", "").replace("*", "x") or "/",
        pattern.replace("**", "a/b").replace("*", "x"),
        pattern.replace("**", "").replace("*", "y"),
        pattern.replace("**", "q").replace("*", "x") + "?k=v",
    }
    segs = pattern.split("/")
    if len(segs) > 2:
        out.add("/".join(segs[:-1]).replace("**", "a").replace("*", "x") or "/")
        out.add(pattern.replace("**", "a").replace("*", "x/z"))
    if pattern.startswith("/") and len(pattern) > 1:
        out.add(pattern.split("/")[1] and "/" + pattern.split("/")[1] + "0")  # `/v10` for `/v1`
    return sorted(p for p in out if p)


def _cidr_values(cidr: str) -> list[Any]:
    net = ipaddress.ip_network(cidr, strict=False)
    inside = str(net.network_address + 1) if net.num_addresses > 1 else str(net.network_address)
    outside_int = int(net.broadcast_address) + 1
    values: list[Any] = [inside, str(net.network_address), "not-an-ip", 5, None, cidr]
    if outside_int < 2 ** (32 if net.version == 4 else 128):
        values.append(str(ipaddress.ip_address(outside_int)))
    values.append("10.1.2.3" if net.version == 6 else "fd00::1")
    return values


class _Collector:
    def __init__(self, vocab: Vocabulary) -> None:
        self.v = vocab
        self.arith: set[tuple[str, ...]] = set()  # attributes used in arithmetic
        self.numbers: set[Decimal] = set()  # every numeric literal of the tree

    def add(self, path: tuple[str, ...], *values: Any) -> None:
        pool = self.v.attributes.setdefault(path, [])
        for value in values:
            if not any(type(value) is type(x) and value == x for x in pool):
                pool.append(value)

    def literal_values(self, e: m.Node) -> list[Any]:
        if isinstance(e, m.Literal_):
            if isinstance(e.value, Decimal):
                self.numbers.add(e.value)
                return _number_variants(e.value)
            if isinstance(e.value, str):
                self.v.strings.add(e.value)
                return [e.value, e.value.upper(), e.value + "x", ""]
            return [e.value, not e.value]
        if isinstance(e, m.ListExpr):
            out: list[Any] = []
            for item in e.items:
                out.extend(self.literal_values(item)[:1])
            return out
        return []

    def walk(self, e: m.Node | None, boolean: bool = False) -> None:
        if e is None:
            return
        if isinstance(e, m.Attr):
            if e.root not in ("risk", "action", "now"):
                self.add((e.root, *e.path))
                if boolean:
                    self.add((e.root, *e.path), True, False)
            return
        if isinstance(e, (m.And, m.Or)):
            for o in e.operands:
                self.walk(o, boolean=True)
            return
        if isinstance(e, m.Not):
            self.walk(e.operand, boolean=True)
            return
        if isinstance(e, m.Compare):
            for side, other in ((e.left, e.right), (e.right, e.left)):
                if isinstance(side, m.Attr) and side.root not in ("risk", "action"):
                    self.add((side.root, *side.path), *self.literal_values(other))
        if isinstance(e, m.In):
            if isinstance(e.item, m.Attr) and isinstance(e.collection, m.ListExpr):
                values = self.literal_values(e.collection)
                self.add((e.item.root, *e.item.path), *values, "outsider")
            if isinstance(e.collection, m.Attr) and isinstance(e.item, m.Literal_):
                values = self.literal_values(e.item)
                self.add(
                    (e.collection.root, *e.collection.path),
                    values[:1],
                    [],
                    [*values[:1], "x"],
                    "notalist",
                )
            if isinstance(e.item, m.Attr) and isinstance(e.collection, m.Attr):
                self.v.strings.add("shared")
                self.add((e.item.root, *e.item.path), "shared", "other")
                self.add((e.collection.root, *e.collection.path), ["shared"], ["other", "x"], [])
        if isinstance(e, m.InCidr) and isinstance(e.operand, m.Attr):
            self.add((e.operand.root, *e.operand.path), *_cidr_values(e.cidr))
        if isinstance(e, m.Matches) and isinstance(e.operand, m.Attr):
            self.add((e.operand.root, *e.operand.path), *_glob_instances(e.pattern), 7)
        if isinstance(e, m.Call) and e.args:
            first = e.args[0]
            while isinstance(first, m.Call) and first.function in ("lower", "upper") and first.args:
                first = first.args[0]
            if isinstance(first, m.Attr):
                where = (first.root, *first.path)
                self.add(where, "abc", "0123456789abcdef0123", "", ["a"], 3)
                other = e.args[1] if len(e.args) > 1 else None
                if isinstance(other, m.Literal_) and isinstance(other.value, str):
                    lit = other.value
                    self.add(
                        where,
                        lit,
                        lit + "a",
                        "a" + lit,
                        lit.upper() + "B",
                        [lit, "x"],
                        [lit],
                        ["x", "y"],
                    )
                if e.function == "len":
                    self.add(where, ["x", "y"], ["x"], [], "xyz")
        if isinstance(e, m.Compare) and isinstance(e.left, m.Attr) and isinstance(e.right, m.Attr):
            for side in (e.left, e.right):
                self.add((side.root, *side.path), "shared", 1, None)
        if isinstance(e, m.Arith | m.Neg):
            for sub in (e.left, e.right) if isinstance(e, m.Arith) else (e.operand,):
                if isinstance(sub, m.Attr):
                    self.arith.add((sub.root, *sub.path))
        for value in e.__dict__.values():
            if isinstance(value, m.Node):
                self.walk(value)
            elif isinstance(value, tuple):
                for item in value:
                    if isinstance(item, m.Node):
                        self.walk(item)


def vocabulary(project: m.Project) -> Vocabulary:
    vocab = Vocabulary()
    collect = _Collector(vocab)
    entities: set[tuple[str, str]] = set()
    actions: set[str] = {"GET", "get", "PATCH"}
    paths: set[str] = {"/", "/v1", "/other/x"}
    for policy in project.policies:
        for rule in policy.rules:
            sides = []
            for pattern in (rule.principal, rule.resource):
                if pattern.type is None:
                    these = [("service", "stranger"), ("user", "stranger")]
                elif pattern.ids is None:
                    these = [(pattern.type, "stranger")]
                else:
                    these = [(pattern.type, i) for i in pattern.ids]
                entities.update(these)
                sides.append(these)
            actions.update(rule.actions)
            rule_paths = ["/v1/x"]
            if rule.path is not None:
                rule_paths = _glob_instances(rule.path)
                paths.update(rule_paths)
            vocab.shapes.append(
                (sides[0], sides[1], list(rule.actions) or ["GET", "DELETE"], rule_paths)
            )
            collect.walk(rule.condition, boolean=True)
        for term in policy.risk:
            collect.walk(term.condition, boolean=True)
        for req in policy.requires:
            collect.walk(req.condition, boolean=True)
            collect.add(("request", "auth", req.obligation), True, False, "true", 1)
    for test in project.tests:
        if test.request is None:
            continue
        for side in ("principal", "resource"):
            entity = test.request[side]
            entities.add((entity["type"], entity["id"]))
        actions.add(test.request["action"])
        path = test.request.get("request", {}).get("path")
        if isinstance(path, str):
            paths.add(path)
        for prefix, value in _leaves(test.request):
            if (
                prefix[0] in ("principal", "resource")
                and prefix[-1] in ("type", "id")
                and len(prefix) == 2
            ):
                continue
            if prefix[:2] == ("request", "path") or prefix == ("action",):
                continue
            collect.add(prefix, value)
    entities.add(("tool", "stranger"))
    vocab.entities = sorted(entities)
    vocab.actions = sorted(actions)
    vocab.paths = sorted(paths)
    numbers: list[Any] = [0, 1, 11]
    for n in sorted(collect.numbers):
        for part in (n, n / 2, n / 4, -n):
            numbers.append(int(part) if part == part.to_integral_value() else float(part))
    for path in collect.arith:
        collect.add(path, *numbers)
    strings = sorted(vocab.strings)
    for path, pool in vocab.attributes.items():
        if len(path) >= 2 and path[-1] in ("countries", "groups", "tags", "roles", "scopes"):
            pool.extend([strings[:2], strings[-1:], []])
        if not pool:
            pool.extend([True, 1, "x"])
    return vocab


def _leaves(obj: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    if isinstance(obj, dict) and obj:
        out = []
        for k, v in obj.items():
            out.extend(_leaves(v, (*prefix, k)))
        return out
    return [(prefix, obj)] if prefix else []


def _set(req: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    cursor = req
    for part in path[:-1]:
        nxt = cursor.setdefault(part, {})
        if not isinstance(nxt, dict):
            return  # an earlier attribute put a non-object here: keep it
        cursor = nxt
    if path[-1] not in cursor:
        cursor[path[-1]] = value


SEEDS = st.integers(0, 2**64 - 1)


@st.composite
def requests(draw: st.DrawFn, vocab: Vocabulary) -> dict[str, Any]:
    """One request from the vocabulary (see the module docstring)."""
    return make_request(random.Random(draw(SEEDS)), vocab)


@st.composite
def batches(draw: st.DrawFn, vocab: Vocabulary, size: int) -> list[dict[str, Any]]:
    """`size` requests from one hypothesis-drawn seed.

    Hypothesis draws the seed, a `random.Random` draws the choices: hypothesis'
    own choices (and `st.randoms()`) lean towards early items and small
    values, which leaves rules late in a file and narrow conditions unreached.
    """
    rnd = random.Random(draw(SEEDS))
    return [make_request(rnd, vocab) for _ in range(size)]


def make_request(rnd: Any, vocab: Vocabulary) -> dict[str, Any]:
    """A request; choices are uniform (plain `sampled_from` favours early items, and
    rules late in a file would rarely be reached); three in four aim at one rule."""
    if vocab.shapes and rnd.random() < 0.75:
        principals, resources, actions, paths = rnd.choice(vocab.shapes)
    else:
        principals, resources, actions, paths = (
            vocab.entities,
            vocab.entities,
            vocab.actions,
            vocab.paths,
        )
    ptype, pid = rnd.choice(principals)
    rtype, rid = rnd.choice(resources)
    req: dict[str, Any] = {
        "principal": {"type": ptype, "id": pid},
        "action": rnd.choice(actions),
        "resource": {"type": rtype, "id": rid},
        "request": {"path": rnd.choice(paths), "headers": {}},
    }
    shape = rnd.randrange(20)
    if shape == 0:
        del req["principal"]
    elif shape == 1:
        req["resource"]["id"] = 7
    elif shape == 2:
        del req["request"]["path"]
    elif shape == 3:
        del req["action"]
    hour, minute = rnd.randrange(24), rnd.choice([0, 29, 59])
    now: dict[str, Any] = {
        "hour": hour,
        "minute": minute,
        "weekday": rnd.choice(WEEKDAYS),
        "time": hour * 60 + minute,
        "date": "2026-11-25",
    }
    if rnd.randrange(10) == 0:
        now.pop(rnd.choice(sorted(now)))
    req["now"] = now
    present = rnd.choice([0.15, 0.4, 0.7, 0.95])  # how many attributes this request carries
    odd = rnd.choice([0.0, 0.1, 0.3])  # how many of them are wrong-typed or odd
    if any(path[0] == "args" for path in vocab.attributes):
        # a tool call carries `args` (an object, `{}` without arguments); one about a
        # tool without it reads every argument as ERROR (mcpdsl.ir.args)
        which = rnd.randrange(8)
        if which < 3:
            req["args"] = {}
        elif which == 3:
            req["args"] = copy.deepcopy(rnd.choice([None, "x", [], ["x"], 3, True]))
    for path in sorted(vocab.attributes, key=len):
        if rnd.random() < present:
            pool = ODD_VALUES if rnd.random() < odd else vocab.attributes[path]
            _set(req, path, copy.deepcopy(rnd.choice(pool)))
    return req
