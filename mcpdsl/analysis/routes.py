"""Gateway routes: a route is shadowed when earlier routes take every request it matches.

Routes are tried in declaration order and the first match wins
(`mcpdsl.evaluate.route`).  Route `j` is shadowed exactly when
`match(j) and not match(0) and ... and not match(j-1)` is unsatisfiable; the
earlier routes that can overlap `j` (same syntactic pre-filter as rules) are
tracked, so the unsat core names the routes that take its traffic.  The
witness is a request `j` matches, which the engine routes to an earlier route.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcpdsl.analysis.index import actions_overlap, globs_may_overlap
from mcpdsl.analysis.witness import to_json
from mcpdsl.ir import model as m
from mcpdsl.ir.paths import route_glob

if TYPE_CHECKING:
    from mcpdsl.analysis import Analysis


def routes(a: Analysis) -> None:
    for gateway in a.project.gateways:
        for j, route in enumerate(gateway.routes):
            if route.headers or route.query:
                continue  # takes requests by header or query, which the encoding leaves out
            earlier = [
                (i, r)
                for i, r in enumerate(gateway.routes[:j])
                if actions_overlap(r.methods, route.methods)
                and globs_may_overlap(route_glob(r), route_glob(route))
                and not (r.headers or r.query)
            ]
            if earlier:
                _check(a, gateway, j, route, earlier)


def _check(
    a: Analysis, gateway: m.Gateway, j: int, route: m.Route, earlier: list[tuple[int, m.Route]]
) -> None:
    enc = a.encoder
    tracked = tuple((i, ~enc.route_match(r)) for i, r in earlier)
    subject = (f"route `{route.path}` of gateway `{gateway.name}`", route.span)
    out = a.solve(enc.route_match(route), subject=subject, tracked=tracked)
    if out.status != "unsat":
        return
    core = sorted(set(out.core)) or [i for i, _ in earlier]
    notes = []
    witness = _witness(a, gateway, j, route)
    if witness is not None:
        method, path, taken = witness
        notes.append(
            f"witness: {to_json({'method': method, 'path': path})} goes to route {taken + 1} "
            f"`{gateway.routes[taken].path}`"
        )
    a.report(
        "A0110",
        f"route `{route.path}` of gateway `{gateway.name}` is shadowed by earlier routes",
        route.span,
        label="never reached: an earlier route takes every request it matches",
        secondary=tuple(
            (gateway.routes[i].span, f"route {i + 1} takes its requests") for i in core
        ),
        notes=notes,
        help="routes are tried in order and the first match wins: move it before them",
    )


def _witness(
    a: Analysis, gateway: m.Gateway, j: int, route: m.Route
) -> tuple[str, str, int] | None:
    enc = a.encoder
    prefer = (enc.equals(("action",), route.methods[0] if route.methods else "GET"),)
    out = enc.solve(enc.route_match(route), prefer=prefer)
    if out.status != "sat" or out.witness is None:
        return None
    w: dict[str, Any] = out.witness
    method = w.get("action")
    req = w.get("request")
    path = req.get("path") if isinstance(req, dict) else None
    if not isinstance(method, str) or not isinstance(path, str):
        return None
    engine = a.confirmer.full
    decision = engine.route(gateway.qualified, method, path)
    if decision is None or decision.index >= j:
        a.unconfirmed_witness(f"route {route.path} shadowed", w)
        return None
    return method, path, decision.index
