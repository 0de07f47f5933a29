"""The documents the Data API serves: the generated Rego packages, answered by the evaluator.

`mcpdsl build` emits one Rego package per policy plus a combiner, an Envoy
adapter and a data document (`mcpdsl.compile.opa`).  An OPA client queries
them by path; this module maps the same paths to the evaluator, so that a
client written for the generated bundle in OPA works unchanged against
`mcpdsl serve`:

| path (`/v1/data/...`) | package | documents |
| --- | --- | --- |
| `mcp/main` | every policy combined | `decision`, `allow`, `deny` |
| `mcp/<package>/<policy>` | one policy (Rego names: `rego_names`) | `decision`, `allow`, `deny` |
| `mcp/envoy` | a CheckRequest as `input` (OPA-Envoy) | `decision`, `allow`, `request` |
| `mcp/meta` | data | the build's `data.json` |

A path may go below a document (`mcp/main/decision/rules/0`), as OPA allows;
a path that names no document is undefined.  A path above the packages
(`mcp`, a Rego package of policies, the root) is a `Group`: answering it
would decide once per policy, so the app refuses it with a clear error.

`input` as the generated Rego reads it: a missing or non-object input leaves
every attribute undefined, so the per-policy packages decide it as `{}` (the
combiner refuses a non-object, as `mcp.main` does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from mcpdsl._version import __version__
from mcpdsl.compile import TargetContext
from mcpdsl.compile.opa import ROOT, data_document, rego_names
from mcpdsl.evaluate.policy import PreparedPolicies
from mcpdsl.evaluate.project import PreparedProject

Kind = Literal["main", "envoy", "policy"]

#: The documents of each kind of package, in the order OPA lists them (sorted).
LEAVES: dict[Kind, tuple[str, ...]] = {
    "main": ("allow", "decision", "deny"),
    "policy": ("allow", "decision", "deny"),
    "envoy": ("allow", "decision", "request"),
}


@dataclass(frozen=True)
class Package:
    """A query of one generated package: `leaf` None for the whole package object."""

    kind: Kind
    name: str  # `mcp/main`, `mcp/<package>/<policy>`, `mcp/envoy`
    policy: int | None = None  # the policy's index in the project (kind `policy`)
    leaf: str | None = None
    rest: tuple[str, ...] = ()  # a path below the document


@dataclass(frozen=True)
class Data:
    """A query of a data document (`mcp/meta`), below it by `rest`."""

    value: Any
    rest: tuple[str, ...] = ()


@dataclass(frozen=True)
class Group:
    """A path above the packages (answering it would decide once per policy)."""

    path: str


Target = Package | Data | Group | None


def descend(value: Any, rest: tuple[str, ...]) -> tuple[bool, Any]:
    """`value` at `rest` (object keys, array indices); (False, None) when undefined."""
    for step in rest:
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return False, None
    return True, value


@dataclass
class DocumentTree:
    """The packages of one prepared project (built lazily; one per policy swap)."""

    prepared: PreparedProject
    _packages: dict[tuple[str, ...], Package] = field(default_factory=dict)
    _groups: set[tuple[str, ...]] = field(default_factory=set)
    _policies: dict[int, PreparedPolicies] = field(default_factory=dict)
    _meta: Any = None

    def __post_init__(self) -> None:
        project = self.prepared.project
        self._packages[(ROOT, "main")] = Package("main", f"{ROOT}/main")
        self._packages[(ROOT, "envoy")] = Package("envoy", f"{ROOT}/envoy")
        names = rego_names(project)
        self._groups.update({(), (ROOT,)})
        for index, policy in enumerate(project.policies):
            package, ident = names[(policy.package, policy.name)]
            path = (ROOT, package, ident)
            self._packages[path] = Package("policy", "/".join(path), index)
            self._groups.add((ROOT, package))

    def resolve(self, segments: tuple[str, ...]) -> Target:
        """What a `/v1/data/...` path names (None: nothing, an undefined document)."""
        if segments in self._groups:
            return Group("/".join(segments))
        if segments[:2] == (ROOT, "meta"):
            return Data(self.meta(), segments[2:])
        for cut in (2, 3):
            package = self._packages.get(segments[:cut])
            if package is None:
                continue
            rest = segments[cut:]
            if not rest:
                return package
            if rest[0] not in LEAVES[package.kind]:
                return None
            return Package(package.kind, package.name, package.policy, rest[0], rest[1:])
        return None

    def policies(self, index: int) -> PreparedPolicies:
        """One policy, prepared on its own: what its Rego package decides."""
        found = self._policies.get(index)
        if found is None:
            found = PreparedPolicies((self.prepared.project.policies[index],))
            self._policies[index] = found
        return found

    def meta(self) -> Any:
        """`data.mcp.meta` as the build's `opa/data.json` carries it."""
        if self._meta is None:
            project = self.prepared.project
            document = data_document(project, rego_names(project), TargetContext(__version__))
            self._meta = document[ROOT]["meta"]
        return self._meta


__all__ = ["LEAVES", "Data", "DocumentTree", "Group", "Package", "Target", "descend"]
