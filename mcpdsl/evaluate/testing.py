"""Run a tree's `test` blocks against the engine (`mcpdsl test`), with rule coverage.

Expectations: `expect allow|deny [with X, ...]` checks `allowed` (and, with
`with`, exactly the obligations); `expect risk N` the exact risk; `expect
replicas N` the HPA decision (a test without `at` sees no `during` window);
`expect service|integration NAME [rewrite "/p"]` and `expect no route` the
gateway route; `expect output {...}` the transform result (JSON equality) and
`expect error ["text"]` a `TransformError` (containing the text).

A rule is *exercised* when its principal, resource, action and path match a
test request, whether it then fires or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from mcpdsl.evaluate.project import PreparedProject
from mcpdsl.evaluate.route import RouteDecision
from mcpdsl.evaluate.scale import ScaleError, decide, find_scale, parse_at
from mcpdsl.evaluate.transform import TransformError
from mcpdsl.evaluate.values import json_eq, show, to_json
from mcpdsl.ir import model as m
from mcpdsl.source import Span


@dataclass(frozen=True)
class TestOutcome:
    test: m.Test
    passed: bool
    message: str = ""
    details: tuple[str, ...] = ()
    span: Span | None = None
    exercised: frozenset[str] = field(default_factory=frozenset)

    @property
    def name(self) -> str:
        return self.test.name


def _sort_key(test: m.Test) -> tuple[str, int, int, str]:
    span = test.span
    if span is None:
        return ("", 0, 0, test.name)
    return (span.file, span.line, span.column, test.name)


def run_tests(compiled: PreparedProject) -> list[TestOutcome]:
    """Every test of the project, in source order."""
    return [run_test(compiled, t) for t in sorted(compiled.project.tests, key=_sort_key)]


def run_test(compiled: PreparedProject, test: m.Test) -> TestOutcome:
    try:
        if test.request is not None:
            return _request_test(compiled, test)
        if test.scale is not None:
            return _scale_test(compiled, test)
        if test.route is not None:
            return _route_test(compiled, test)
        if test.transform is not None:
            return _transform_test(compiled, test)
    except (ScaleError, KeyError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        return TestOutcome(test, False, f"cannot run the test: {message}", span=test.span)
    return TestOutcome(test, False, "the test has no input", span=test.span)


def _fail(
    test: m.Test, e: m.Expectation, message: str, details: list[str] | None = None, **kw: Any
) -> TestOutcome:
    return TestOutcome(test, False, message, tuple(details or ()), e.span or test.span, **kw)


def _request_test(compiled: PreparedProject, test: m.Test) -> TestOutcome:
    request = test.request or {}
    policies = compiled.policies
    decision = policies.authorize(request)
    exercised = frozenset(r.key for r in policies.matched(request))
    for e in test.expect:
        if e.kind == "decision":
            got = "allow" if decision.allowed else "deny"
            want = "allow" if e.allowed else "deny"
            if decision.allowed != e.allowed:
                return _fail(
                    test,
                    e,
                    f"expected {want}, got {got}",
                    decision.explain().splitlines(),
                    exercised=exercised,
                )
            if e.obligations is not None and tuple(sorted(e.obligations)) != decision.obligations:
                have = ", ".join(decision.obligations) or "no obligations"
                return _fail(
                    test,
                    e,
                    f"expected allow with {', '.join(e.obligations) or 'no obligations'}, got allow with {have}",
                    decision.explain().splitlines(),
                    exercised=exercised,
                )
        elif e.kind == "risk":
            assert e.risk is not None
            if decision.risk != e.risk:
                return _fail(
                    test,
                    e,
                    f"expected risk {e.risk.normalize():f}, got {decision.risk.normalize():f}",
                    decision.explain().splitlines(),
                    exercised=exercised,
                )
    return TestOutcome(test, True, exercised=exercised, span=test.span)


def _scale_test(compiled: PreparedProject, test: m.Test) -> TestOutcome:
    given = test.scale
    assert given is not None
    scale = find_scale(compiled.project.scales, str(given.service))
    now = parse_at(given.at) if given.at else None
    metrics: dict[str, Decimal] = dict(given.metrics)
    result = decide(scale, metrics, given.replicas, None, now)
    for e in test.expect:
        if e.kind == "replicas" and result.desired != e.replicas:
            return _fail(
                test,
                e,
                f"expected {e.replicas} replicas, got {result.desired}: {result.reason}",
                list(result.steps),
            )
    return TestOutcome(test, True, span=test.span)


def _route_test(compiled: PreparedProject, test: m.Test) -> TestOutcome:
    given = test.route
    assert given is not None
    gateway = compiled.gateways.get(str(given.gateway)) or compiled.gateways.get(given.gateway.name)
    if gateway is None:
        raise KeyError(f"no gateway `{given.gateway}`")
    decision = gateway.route(given.method, given.path, given.headers or None)
    for e in test.expect:
        if e.kind == "no-route" and decision is not None:
            return _fail(test, e, f"expected no route, got {_describe_route(gateway.ir, decision)}")
        if e.kind == "route":
            assert e.route is not None
            want = f"{e.route.kind} {e.route.ref.name}"
            if decision is None:
                return _fail(
                    test, e, f"expected {want}, got no route for {given.method} {given.path}"
                )
            target = gateway.ir.routes[decision.index].target
            if target.kind != e.route.kind or target.ref != e.route.ref:
                return _fail(
                    test, e, f"expected {want}, got {_describe_route(gateway.ir, decision)}"
                )
            if e.rewrite is not None and decision.path != e.rewrite:
                return _fail(
                    test, e, f"expected the upstream path {e.rewrite!r}, got {decision.path!r}"
                )
    return TestOutcome(test, True, span=test.span)


def _describe_route(gateway: m.Gateway, d: RouteDecision) -> str:
    route = gateway.routes[d.index]
    where = f" ({route.span})" if route.span is not None else ""
    return f'{d.target_kind} {d.target} via route "{route.path}"{where}, path {d.path!r}'


def _transform_test(compiled: PreparedProject, test: m.Test) -> TestOutcome:
    given = test.transform
    assert given is not None
    transform = compiled.transforms.get(str(given.integration)) or compiled.transforms.get(
        given.integration.name
    )
    if transform is None:
        raise KeyError(f"no integration `{given.integration}`")
    try:
        output: dict[str, Any] | None = transform.apply(given.payload)
        error: TransformError | None = None
    except TransformError as exc:
        output, error = None, exc
    for e in test.expect:
        if e.kind == "output":
            if error is not None:
                return _fail(test, e, f"expected an output, got an error: {error}")
            if not json_eq(to_json(output), to_json(e.output)):
                return _fail(test, e, f"expected output {show(e.output)}, got {show(output)}")
        elif e.kind == "error":
            if error is None:
                return _fail(test, e, f"expected an error, got output {show(output)}")
            if e.error is not None and e.error.lower() not in str(error).lower():
                return _fail(test, e, f"expected an error mentioning {e.error!r}, got: {error}")
    return TestOutcome(test, True, span=test.span)


def all_rules(compiled: PreparedProject) -> list[tuple[str, Span | None]]:
    return [(r.key, r.ir.span) for p in compiled.policies.policies for r in p.rules]


def coverage(
    compiled: PreparedProject, outcomes: list[TestOutcome]
) -> tuple[list[tuple[str, Span | None]], float]:
    """The rules no test exercised, and the percentage exercised (100 when there are none)."""
    rules = all_rules(compiled)
    exercised: set[str] = set()
    for o in outcomes:
        exercised |= o.exercised
    missed = [(k, s) for k, s in rules if k not in exercised]
    percent = 100.0 if not rules else 100.0 * (len(rules) - len(missed)) / len(rules)
    return missed, percent
