"""The one SARIF 2.1.0 writer: `mcpdsl check` findings and `mcpdsl diff` changes.

Both commands describe their output as rules and results; this module owns the
document shape (schema, run, driver, locations, regions) so that the two can
never drift apart.  Callers translate their data into `SarifRule`/`SarifResult`.
Output is deterministic: keys sorted, results in the caller's order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from mcpdsl.source import Span

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


@dataclass(frozen=True)
class SarifRule:
    """A `reportingDescriptor`; `short`/`full`/`level` are left out when None."""

    id: str
    short: str | None = None
    full: str | None = None
    level: str | None = None


@dataclass(frozen=True)
class SarifLocation:
    """A span in a file; `base` is the `uriBaseId` (None: `uri` is complete as it is)."""

    uri: str
    span: Span
    message: str = ""
    base: str | None = "SRCROOT"


@dataclass(frozen=True)
class SarifResult:
    """One result: its rule, level (`error`/`warning`/`note`), text and locations."""

    rule: str
    level: str
    text: str
    location: SarifLocation | None = None
    related: tuple[SarifLocation, ...] = ()
    properties: dict[str, object] | None = None  # SARIF's property bag (e.g. enforcement)


def _rule(rule: SarifRule) -> dict[str, object]:
    out: dict[str, object] = {"id": rule.id}
    if rule.short is not None:
        out["shortDescription"] = {"text": rule.short}
    if rule.full is not None:
        out["fullDescription"] = {"text": rule.full}
    if rule.level is not None:
        out["defaultConfiguration"] = {"level": rule.level}
    return out


def _location(loc: SarifLocation) -> dict[str, object]:
    artifact = {"uri": loc.uri} if loc.base is None else {"uri": loc.uri, "uriBaseId": loc.base}
    span = loc.span
    out: dict[str, object] = {
        "physicalLocation": {
            "artifactLocation": artifact,
            "region": {
                "startLine": span.line,
                "startColumn": span.column,
                "endLine": span.end_line,
                "endColumn": span.end_column,
            },
        }
    }
    if loc.message:
        out["message"] = {"text": loc.message}
    return out


def _result(result: SarifResult, index: dict[str, int]) -> dict[str, object]:
    out: dict[str, object] = {
        "ruleId": result.rule,
        "ruleIndex": index[result.rule],
        "level": result.level,
        "message": {"text": result.text},
    }
    if result.location is not None:
        out["locations"] = [_location(result.location)]
    if result.properties:
        out["properties"] = result.properties
    if result.related:
        out["relatedLocations"] = [
            {"id": i, **_location(loc)} for i, loc in enumerate(result.related)
        ]
    return out


def write_sarif(
    tool: str, version: str, rules: Sequence[SarifRule], results: Sequence[SarifResult]
) -> str:
    """The SARIF document (one run) as indented JSON; every result's rule must be in `rules`."""
    index = {rule.id: i for i, rule in enumerate(rules)}
    doc = {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": tool,
                        "version": version,
                        "rules": [_rule(rule) for rule in rules],
                    }
                },
                "results": [_result(result, index) for result in results],
            }
        ],
    }
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


__all__ = ["SCHEMA", "SarifLocation", "SarifResult", "SarifRule", "write_sarif"]
