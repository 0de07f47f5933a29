"""Helpers for the analysis tests: run the analyses, and re-check every witness with the engine.

`check_witnesses` is the heart of the suite: every request a finding prints
is parsed back from its JSON note and re-run through `Engine.authorize` (or
`Engine.route`, or the engine's `during` test); a witness the engine does
not confirm fails the test, as a bug of the encoder.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from mcpdsl.analysis import Analysis, Options, analyze
from mcpdsl.analysis.witness import Confirmer
from mcpdsl.diagnostics import Diagnostic
from mcpdsl.engine import Engine
from mcpdsl.evaluate.closures import path_matcher, prepare_expr
from mcpdsl.evaluate.scale import during_active
from mcpdsl.evaluate.values import MISSING
from mcpdsl.ir import model as m
from mcpdsl.pipeline import Compilation, compile_tree

HERE = Path(__file__).parent
CASES_DIR = HERE / "cases"
REPO = HERE.parent.parent


def run(path: Path, options: Options | None = None) -> tuple[Compilation, Analysis]:
    c = compile_tree(path)
    assert c.project is not None, [d.message for d in c.diagnostics if d.is_error]
    return c, analyze(c.project, c.sources, options)


def located(d: Diagnostic) -> str:
    assert d.span is not None
    return f"{d.code} {d.span.file}:{d.span.line}"


def witnesses(d: Diagnostic) -> list[tuple[str, Any]]:
    """(label, parsed JSON) of every `witness...: {...}` note."""
    out = []
    for note in d.notes:
        found = re.match(r"witness(?: \(([^)]*)\))?: (\{.*?\})(?: goes to route (\d+).*)?$", note)
        if found:
            out.append((found.group(1) or found.group(3) or "", json.loads(found.group(2))))
    return out


def _rule_at(project: m.Project, line: int) -> tuple[int, m.Rule]:
    for pi, p in enumerate(project.policies):
        for r in p.rules:
            if r.span is not None and r.span.line == line:
                return pi, r
    raise AssertionError(f"no rule at line {line}")


def check_witnesses(d: Diagnostic, project: m.Project) -> int:
    """Re-run the witnesses of one finding through the engine; returns how many were checked."""
    conf = Confirmer(project)
    engine = Engine.from_project(project)
    checked = 0
    assert d.span is not None
    if d.code in ("A0102", "A0103", "A0104", "A0107"):
        pi, rule = _rule_at(project, d.span.line)
        for label, w in witnesses(d):
            decision = engine.authorize(w)
            assert conf.fires(pi, rule, w), f"{d.code}: `{rule.id}` does not fire on {w}"
            if d.code == "A0102":
                assert not decision.allowed, f"A0102 witness is allowed: {w}"
            elif d.code == "A0103":
                other_line = d.secondary[0].span.line
                oi, other = _rule_at(project, other_line)
                assert conf.fires(oi, other, w)
            elif d.code == "A0104":
                assert not decision.allowed
                assert f"{project.policies[pi].name}/{rule.id}" in decision.rules
                allow = next(r for r in project.policies[pi].rules if r.id == label)
                assert conf.fires(pi, allow, w), f"`{label}` does not fire on {w}"
            elif d.code == "A0107":
                assert not decision.allowed
                assert rule.condition is not None
                value = prepare_expr(rule.condition).fn(w, decision.risk)
                assert value is not True and value is not False and value is not MISSING
            checked += 1
    elif d.code == "A0110":
        gateway = next(
            g for g in project.gateways for r in g.routes if r.span and r.span.line == d.span.line
        )
        j = next(i for i, r in enumerate(gateway.routes) if r.span and r.span.line == d.span.line)
        route = gateway.routes[j]
        for label, w in witnesses(d):
            taken = engine.route(gateway.qualified, w["method"], w["path"])
            assert taken is not None and taken.index == int(label) - 1 < j
            assert path_matcher(route.path)(w["path"])
            assert not route.methods or w["method"] in route.methods
            checked += 1
    elif d.code == "A0120":
        at = next(n for n in d.notes if n.startswith("witness: both are active at "))
        moment = datetime.fromisoformat(at.rsplit(" ", 1)[1].replace("Z", "+00:00"))
        windows = [
            w
            for s in project.scales
            for w in s.during
            if w.span and w.span.line in (d.span.line, d.secondary[0].span.line)
        ]
        assert len(windows) == 2 and all(during_active(w, moment) for w in windows)
        checked += 1
    return checked


STYLE_PLACEHOLDER = re.compile(r"\{[a-z_]+\}|None|<[A-Za-z_.]+ object")


def check_style(d: Diagnostic) -> None:
    """The diagnostics style guide (tests/cli/test_diagnostic_goldens.py), for A codes too."""
    for text in (d.message, d.label, *(lb.message for lb in d.secondary)):
        if text:
            assert not text[0].isupper(), text
            assert not text.endswith("."), text
            assert not STYLE_PLACEHOLDER.search(text), text
    for text in (d.help, *d.notes):
        if text:
            assert not text.endswith("."), text
    assert d.span is not None and d.span.line >= 1
