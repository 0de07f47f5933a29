"""Renderers for `mcpdsl diff`: text, JSON, SARIF 2.1.0 and Markdown (pull-request comments).

A `DiffResult` is data; each renderer turns it into one document.  Spans are
shown as `LABEL/FILE:LINE`, LABEL being the side as the user named it (a
directory or `git:REV[:DIR]`).
"""

from __future__ import annotations

import json
from typing import Any

from mcpdsl.analysis.diff import AccessChange, DiffResult
from mcpdsl.analysis.witness import to_json
from mcpdsl.diagnostics.sarif import SarifLocation, SarifResult, SarifRule, write_sarif

FORMATS = ("text", "json", "sarif", "markdown")


def render(result: DiffResult, fmt: str, labels: tuple[str, str], version: str = "") -> str:
    if fmt == "json":
        return render_json(result, labels)
    if fmt == "sarif":
        return render_sarif(result, labels, version)
    if fmt == "markdown":
        return render_markdown(result, labels)
    return render_text(result, labels)


def where(change: AccessChange, labels: tuple[str, str]) -> str:
    if change.span is None:
        return ""
    root = labels[0] if change.side == "old" else labels[1]
    return f"{root.rstrip('/')}/{change.span.file}:{change.span.line}"


def _where(change: Any, labels: tuple[str, str]) -> str:
    if change.span is None:
        return ""
    root = labels[0] if change.side == "old" else labels[1]
    return f"{root.rstrip('/')}/{change.span.file}:{change.span.line}"


def _obl(names: list[str]) -> str:
    return "allow with " + ", ".join(names) if names else "allow"


def _decision(d: dict[str, Any]) -> str:
    word = "allow" if d["allowed"] else "deny"
    if d.get("default"):
        return f"{word} (default)"
    return f"{word} ({', '.join(d['rules'])})" if d["rules"] else word


def summary(result: DiffResult) -> str:
    w, n = len(result.widened), len(result.narrowed)
    parts = [f"{w} widened", f"{n} narrowed"]
    if result.obligations:
        k = len(result.obligations)
        parts.append(f"{k} obligation change" + ("" if k == 1 else "s"))
    if result.routes:
        parts.append(
            f"{len(result.routes)} routing change" + ("" if len(result.routes) == 1 else "s")
        )
    parts.append(
        f"{len(result.parameters)} parameter change" + ("" if len(result.parameters) == 1 else "s")
    )
    if result.inconclusive:
        parts.append(f"{len(result.inconclusive)} inconclusive")
    return ", ".join(parts)


def render_text(result: DiffResult, labels: tuple[str, str]) -> str:
    out = [f"mcpdsl diff {labels[0]} {labels[1]}", ""]
    if result.access:
        out.append("access:")
        for c in result.access:
            at = where(c, labels)
            out.append(f"  {c.direction:<9}{c.group} ({c.cause}){'  ' + at if at else ''}")
            out.append(f"    witness: {to_json(c.witness)}")
            out.append(f"    before: {_decision(c.before)}   now: {_decision(c.after)}")
        out.append("")
    else:
        out += ["access: unchanged", ""]
    if result.obligations:
        out.append("obligations:")
        for o in result.obligations:
            out.append(f"  {o.direction:<9}{o.policy}: require {o.obligation}")
            out.append(f"    witness: {to_json(o.witness)}")
            out.append(f"    before: {_obl(o.before)}   now: {_obl(o.after)}")
        out.append("")
    if result.routes:
        out.append("routing:")
        for r in result.routes:
            out.append(
                f'  {r.direction:<9}gateway {r.gateway} route "{r.route}" ({r.cause})'
                f"{'  ' + _where(r, labels) if _where(r, labels) else ''}"
            )
            out.append(f"    witness: {r.method} {r.path}")
            out.append(f"    before: {r.before}   now: {r.after}")
        out.append("")
    if result.parameters:
        out.append("parameters:")
        rows = [(p.kind, p.name, p.field, p.old, p.new) for p in result.parameters]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        for kind, name, fld, old, new in rows:
            out.append(
                f"  {kind:<{widths[0]}}  {name:<{widths[1]}}  {fld:<{widths[2]}}  {old} -> {new}"
            )
        out.append("")
    for text in result.inconclusive:
        out.append(f"inconclusive: {text}")
    out.append(summary(result))
    return "\n".join(out) + "\n"


def _change_obj(c: AccessChange, labels: tuple[str, str]) -> dict[str, Any]:
    return {
        "direction": c.direction,
        "group": c.group,
        "cause": c.cause,
        "location": where(c, labels) or None,
        "witness": json.loads(to_json(c.witness)),
        "before": c.before,
        "after": c.after,
    }


def render_json(result: DiffResult, labels: tuple[str, str]) -> str:
    doc = {
        "old": labels[0],
        "new": labels[1],
        "access": [_change_obj(c, labels) for c in result.access],
        "obligations": [
            {
                "direction": o.direction,
                "policy": o.policy,
                "obligation": o.obligation,
                "witness": json.loads(to_json(o.witness)),
                "before": o.before,
                "after": o.after,
            }
            for o in result.obligations
        ],
        "routes": [
            {
                "direction": r.direction,
                "gateway": r.gateway,
                "route": r.route,
                "cause": r.cause,
                "location": _where(r, labels) or None,
                "witness": {"method": r.method, "path": r.path},
                "before": r.before,
                "after": r.after,
            }
            for r in result.routes
        ],
        "parameters": [
            {"kind": p.kind, "name": p.name, "field": p.field, "old": p.old, "new": p.new}
            for p in result.parameters
        ],
        "inconclusive": result.inconclusive,
        "summary": {
            "widened": len(result.widened),
            "narrowed": len(result.narrowed),
            "obligations": len(result.obligations),
            "routes": len(result.routes),
            "parameters": len(result.parameters),
        },
    }
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


_RULES = {
    "access-widened": ("a request gains access", "warning"),
    "access-narrowed": ("a request loses access", "note"),
    "obligation-changed": ("an allowed request gains or loses an obligation", "note"),
    "route-changed": ("a gateway routes a request differently", "warning"),
    "parameter-changed": ("a scaling, capacity or carbon parameter changed", "note"),
}


def render_sarif(result: DiffResult, labels: tuple[str, str], version: str) -> str:
    """The changes as SARIF results, one rule per kind of change (`_RULES`)."""
    rules = [SarifRule(rid, text, level=level) for rid, (text, level) in _RULES.items()]
    results: list[SarifResult] = []
    for c in result.access:
        rid = f"access-{c.direction}"
        text = (
            f"{c.group} ({c.cause}): {_decision(c.before)} -> {_decision(c.after)}\n"
            f"witness: {to_json(c.witness)}"
        )
        location = None
        if c.span is not None:
            root = labels[0] if c.side == "old" else labels[1]
            location = SarifLocation(f"{root.rstrip('/')}/{c.span.file}", c.span, base=None)
        results.append(SarifResult(rid, _RULES[rid][1], text, location))
    for o in result.obligations:
        text = f"{o.policy}: obligation {o.obligation} {o.direction}\nwitness: {to_json(o.witness)}"
        results.append(SarifResult("obligation-changed", "note", text))
    for r in result.routes:
        level = "warning" if r.direction == "widened" else "note"
        text = (
            f"gateway {r.gateway} route {r.route} ({r.cause}, {r.direction}): "
            f"{r.method} {r.path}: {r.before} -> {r.after}"
        )
        results.append(SarifResult("route-changed", level, text))
    for p in result.parameters:
        text = f"{p.kind} {p.name} {p.field}: {p.old} -> {p.new}"
        results.append(SarifResult("parameter-changed", "note", text))
    return write_sarif("mcpdsl diff", version, rules, results)


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(result: DiffResult, labels: tuple[str, str]) -> str:
    out = [f"### mcpdsl diff `{labels[0]}` → `{labels[1]}`", "", f"**{summary(result)}**", ""]
    if result.widened:
        out.append("> [!WARNING]")
        out.append(f"> {len(result.widened)} change(s) give requests access they did not have.")
        out.append("")
    if result.access:
        out += [
            "#### Access",
            "",
            "| change | rule | cause | before | now | where |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for c in result.access:
            icon = "🔓 widened" if c.direction == "widened" else "🔒 narrowed"
            out.append(
                f"| {icon} | `{_md(c.group)}` | {_md(c.cause)} | {_md(_decision(c.before))} | "
                f"{_md(_decision(c.after))} | {_md(where(c, labels))} |"
            )
        out += ["", "<details><summary>Witness requests</summary>", ""]
        for c in result.access:
            out += [f"`{c.group}` ({c.direction}):", "", "```json", to_json(c.witness), "```", ""]
        out += ["</details>", ""]
    else:
        out += ["Access is unchanged.", ""]
    if result.obligations:
        out += [
            "#### Obligations",
            "",
            "| change | policy | obligation | witness |",
            "| --- | --- | --- | --- |",
        ]
        for o in result.obligations:
            out.append(
                f"| {o.direction} | `{_md(o.policy)}` | `{_md(o.obligation)}` | "
                f"`{_md(to_json(o.witness))}` |"
            )
        out.append("")
    if result.routes:
        out += [
            "#### Routing",
            "",
            "| change | gateway | route | request | before | now |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in result.routes:
            out.append(
                f"| {r.direction} | `{_md(r.gateway)}` | `{_md(r.route)}` ({r.cause}) | "
                f"`{_md(r.method)} {_md(r.path)}` | {_md(r.before)} | {_md(r.after)} |"
            )
        out.append("")
    if result.parameters:
        out += [
            "#### Scaling, capacity and carbon parameters",
            "",
            "| kind | name | field | old | new |",
            "| --- | --- | --- | --- | --- |",
        ]
        for p in result.parameters:
            out.append(
                f"| {p.kind} | `{_md(p.name)}` | `{_md(p.field)}` | {_md(p.old)} | {_md(p.new)} |"
            )
        out.append("")
    if result.inconclusive:
        out += ["#### Inconclusive", ""] + [f"- {_md(t)}" for t in result.inconclusive] + [""]
    return "\n".join(out)
