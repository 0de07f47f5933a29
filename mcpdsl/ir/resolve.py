"""Resolve: join the files of a tree into one project and bind every name.

Reports duplicate declarations, unknown references (with did-you-mean),
imports that are missing or leave the tree, qualified names of packages a file
does not import, and declarations that claim the same thing.  Returns a
`Project` whose references all carry their package.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, TypeVar

from mcpdsl.diagnostics import Diagnostic, Label, make
from mcpdsl.diagnostics.wording import closest
from mcpdsl.ir import model as m
from mcpdsl.ir.identity import with_jwks_keys
from mcpdsl.ir.jwks import JwksCheck
from mcpdsl.source import Span

D = TypeVar("D", bound=m.Decl)

_UNASKED = object()

_KIND_WORD = {
    "service": "service",
    "pool": "pool",
    "carbon": "carbon block",
    "integration": "integration",
    "gateway": "gateway",
    "scale": "scale block",
    "provider": "identity provider",
}


class _Scope:
    """Declarations by (kind, package, name), and what one file may see."""

    def __init__(self, units: list[m.FileUnit], diags: list[Diagnostic]) -> None:
        self.diags = diags
        self.table: dict[tuple[str, str, str], m.Decl] = {}
        self.packages = {u.package for u in units}
        # Declarations that had errors in lowering: references to them are not
        # reported again as unknown.
        self.failed = {(kind, u.package, name) for u in units for kind, name in u.failed}
        for unit in units:
            for decl in unit.decls:
                key = (decl.kind, decl.package, decl.name)  # type: ignore[attr-defined]
                previous = self.table.get(key)
                if previous is not None:
                    diags.append(
                        make(
                            "E0401",
                            f"{decl.kind} `{decl.name}` is declared twice in package "  # type: ignore[attr-defined]
                            f"`{decl.package}`",
                            decl.span,
                            label="second declaration",
                            secondary=_labels((previous.span, "first declared here")),
                            help="rename or remove one of them",
                        )
                    )
                    continue
                self.table[key] = decl

    def names(self, kind: str, packages: frozenset[str]) -> tuple[str, ...]:
        return tuple(
            sorted(n if p in packages else f"{p}.{n}" for (k, p, n) in self.table if k == kind)
        )

    def answer(self, query: tuple[Any, ...], unit: m.FileUnit, tools: frozenset[str]) -> object:
        """The answer to one question a file's binding asks about the rest of the tree.

        Every read of the scope during binding goes through here (via
        `_FileResolver.ask`), so that the questions and answers of a file are
        a complete record of what its result depends on.
        """
        what = query[0]
        if what == "declared":
            return query[1:] in self.table
        if what == "failed":
            return query[1:] in self.failed
        if what == "packages":
            return frozenset(self.packages)
        if what == "names":
            return self.names(query[1], query[2])
        if what == "tools":
            return tools
        if what == "federated":
            return frozenset(
                d.prefix
                for d in self.table.values()
                if isinstance(d, m.Integration) and d.prefix is not None
            )
        if what == "service names":
            return frozenset(n for (k, _, n) in self.table if k == "service")
        if what == "scale targets":
            scale = self.table.get(("scale", query[1], query[2]))
            if not isinstance(scale, m.Scale):
                return None
            return frozenset(
                t.metric if t.metric != "pods" else (t.name or "") for t in scale.targets
            )
        if what == "wins":  # is the file's declaration number `query[1]` the one in the table?
            decl = unit.decls[query[1]]
            return self.table.get((decl.kind, decl.package, decl.name)) is decl  # type: ignore[attr-defined]
        raise ValueError(f"unknown scope question {what!r}")  # pragma: no cover


class _FileResolver:
    """Binds one file; reads the tree's scope only through `ask`, which records it."""

    def __init__(
        self, scope: _Scope, unit: m.FileUnit, diags: list[Diagnostic], tools: frozenset[str]
    ) -> None:
        self._scope = scope
        self._tools = tools
        self.unit = unit
        self.diags = diags
        self.imported = {i.package for i in unit.imports}
        self.used: set[str] = set()
        self.asked: dict[tuple[Any, ...], object] = {}

    def ask(self, *query: Any) -> Any:
        answer = self.asked.get(query, _UNASKED)
        if answer is _UNASKED:
            answer = self.asked[query] = self._scope.answer(query, self.unit, self._tools)
        return answer

    def declared(self, kind: str, package: str, name: str) -> bool:
        return bool(self.ask("declared", kind, package, name))

    def packages(self) -> frozenset[str]:
        return self.ask("packages")  # type: ignore[no-any-return]

    def tools(self) -> frozenset[str]:
        return self.ask("tools")  # type: ignore[no-any-return]

    def ref(self, ref: m.Ref | None, kind: str, what: str | None = None) -> m.Ref | None:
        """Bind a reference to a declaration of `kind`; report if unknown."""
        if ref is None:
            return None
        package = ref.package or self.unit.package
        if ref.package and ref.package != self.unit.package:
            if ref.package not in self.imported:
                self.diags.append(
                    make(
                        "E0405",
                        f"package `{ref.package}` is not imported",
                        ref.span,
                        label="qualified name of a package this file does not import",
                        help=f'add `import "{ref.package}"` after the package declaration',
                    )
                )
                return None
            self.used.add(ref.package)
        if self.declared(kind, package, ref.name):
            return ref.model_copy(update={"package": package})
        if self.ask("failed", kind, package, ref.name):
            return None  # already reported where it is declared
        if ref.package is None:
            # An unqualified name may live in an imported package when unambiguous.
            hits = [p for p in sorted(self.imported) if self.declared(kind, p, ref.name)]
            if len(hits) == 1:
                self.used.add(hits[0])
                return ref.model_copy(update={"package": hits[0]})
        visible = {self.unit.package} | self.imported
        word = what or _KIND_WORD.get(kind, kind)
        if ref.package is None:
            elsewhere = sorted(
                p for p in self.packages() - visible if self.declared(kind, p, ref.name)
            )
            if elsewhere:
                self.diags.append(
                    make(
                        "E0405",
                        f"{word} `{ref.name}` is declared in package `{elsewhere[0]}`, "
                        "which this file does not import",
                        ref.span,
                        label="not visible here",
                        help=f'add `import "{elsewhere[0]}"` after the package declaration',
                    )
                )
                return None
        guess = closest(ref.name, self.ask("names", kind, frozenset(visible)))
        self.diags.append(
            make(
                "E0402",
                f"unknown {word} `{ref}`",
                ref.span,
                label=f"no {word} with this name",
                help=f"did you mean `{guess}`?"
                if guess
                else f"declare `{kind} {ref.name} {{ ... }}`",
            )
        )
        return None


def _labels(*pairs: tuple[Span | None, str]) -> list[Label]:
    return [Label(span=s, message=t) for s, t in pairs if s is not None]


@dataclass(frozen=True)
class _UnitResult:
    """What resolving one file produced, and every question it asked of the rest of the tree."""

    bound: tuple[tuple[str, m.Decl], ...]  # (kind, declaration) in the file's order
    diags: tuple[Diagnostic, ...]
    asked: tuple[tuple[tuple[Any, ...], object], ...]  # (question, answer) pairs


class ResolveMemo:
    """Per-file results of `resolve`, reused when they cannot have changed.

    Binding a file is a function of the file's unit and of the answers to the
    questions it asks about the rest of the tree (is `service a` declared in
    package `p`, which packages exist, which tools are exposed, ...); every such
    read goes through `_FileResolver.ask`, which records it.  On the next call,
    a file whose unit is the very same object as before (the front-end cache
    hands back the same unit exactly when the file's bytes did not change) keeps
    its previous result if every recorded question still has the same answer
    in the new scope; otherwise it is bound again.  So a keystroke re-binds the
    edited file, plus exactly the files that asked about a declaration the
    keystroke added, removed or changed.  The result equals `resolve` without
    a memo (tests/lsp/test_incremental_resolve.py, random edit sequences).
    """

    def __init__(self) -> None:
        self._results: dict[str, tuple[m.FileUnit, _UnitResult]] = {}
        self.reused = 0  # files whose result the last call reused

    def _get(self, unit: m.FileUnit, scope: _Scope, tools: frozenset[str]) -> _UnitResult | None:
        entry = self._results.get(unit.path)
        if entry is None or entry[0] is not unit:
            return None
        result = entry[1]
        for question, answer in result.asked:
            if scope.answer(question, unit, tools) != answer:
                return None
        self.reused += 1
        return result

    def _keep(self, fresh: dict[str, tuple[m.FileUnit, _UnitResult]]) -> None:
        self._results = fresh  # only the files of this call: the memo never grows


def resolve(
    units: list[m.FileUnit],
    root: str = "",
    memo: ResolveMemo | None = None,
    *,
    jwks: JwksCheck | None = None,
) -> tuple[m.Project, list[Diagnostic]]:
    """Bind names across all files; returns the project and diagnostics.

    With a `memo`, files whose result cannot have changed since the previous
    call with the same memo are not bound again (see `ResolveMemo`).  `jwks`
    judges the bytes of each `jwks file` (`mcpdsl.ir.jwks.load_jwks`).
    """
    diags: list[Diagnostic] = []
    scope = _Scope(units, diags)
    exposed = _exposed_tools(scope, diags)
    _check_prefixes(scope, exposed, diags)
    tools = frozenset(exposed)
    _check_service_names(scope, diags)
    if memo is not None:
        memo.reused = 0
    fresh: dict[str, tuple[m.FileUnit, _UnitResult]] = {}
    out: dict[str, list[Any]] = defaultdict(list)
    for unit in units:
        result = memo._get(unit, scope, tools) if memo is not None else None
        if result is None:
            result = _resolve_unit(scope, unit, tools)
        fresh[unit.path] = (unit, result)
        diags.extend(result.diags)
        for kind, bound in result.bound:
            out[kind].append(bound)
    if memo is not None:
        memo._keep(fresh)
    decls = {
        field: tuple(sorted(out[kind], key=lambda d: (d.package, d.name)))
        for kind, field in m.DECL_KINDS.items()
    }
    # `fast`: every value is a tuple of nodes of the declared class, as validation
    # would return it; building Project's validator alone is most of a warm `check`.
    project = m.Project.fast(
        root=root,
        packages=tuple(sorted(scope.packages)),
        mcp=next((s.mcp for s in decls["servers"] if s.mcp is not None), None),
        **decls,
    )
    broken_scales = {
        (unit.package, name) for unit in units for kind, name in unit.failed if kind == "scale"
    }
    _check_conflicts(project, diags, broken_scales)
    # The IR carries the keys of each `jwks file` as this compile read them (builds,
    # IR files and ConfigMaps have no tree to read them from at run time).
    return with_jwks_keys(project, jwks), diags


def _exposed_tools(scope: _Scope, diags: list[Diagnostic]) -> dict[str, m.Integration]:
    tools: dict[str, m.Integration] = {}
    for decl in scope.table.values():
        if isinstance(decl, m.Integration) and decl.tool:
            if decl.tool in tools:
                diags.append(
                    make(
                        "E0406",
                        f"tool `{decl.tool}` is exposed by two integrations",
                        decl.span,
                        label="second integration exposing it",
                        secondary=_labels((tools[decl.tool].span, "also exposed here")),
                        help="tool names are unique in a tree; rename one of them",
                    )
                )
            else:
                tools[decl.tool] = decl
    return tools


def _check_prefixes(
    scope: _Scope, tools: dict[str, m.Integration], diags: list[Diagnostic]
) -> None:
    """E1111: a federated server's prefix is its own (not a tool's, not another server's).

    A federated tool `x` of the server with prefix `P` is called `P.x`; if an
    exposed tool is `P` or starts with `P.` (or another federated server's prefix
    nests with `P`), a name `P.x` could mean two tools, and the rules written for
    one would govern the other.
    """
    federated = sorted(
        (d for d in scope.table.values() if isinstance(d, m.Integration) and d.prefix),
        key=lambda d: (d.package, d.name),
    )
    prefixes: dict[str, m.Integration] = {}
    for decl in federated:
        prefix = decl.prefix or ""
        other = next(
            (p for q, p in prefixes.items() if _nested(q, prefix) or _nested(prefix, q)), None
        )
        owner = next(
            (i for t, i in sorted(tools.items()) if t == prefix or _nested(prefix, t)), None
        )
        if other is not None:
            what = f"integration `{other.name}` federates with the prefix `{other.prefix}`"
        elif owner is not None:
            what = f"integration `{owner.name}` exposes tool `{owner.tool}`"
            other = owner
        else:
            prefixes[prefix] = decl
            continue
        diags.append(
            make(
                "E1111",
                f"the tool prefix `{prefix}` of integration `{decl.name}` collides: {what}",
                decl.span,
                label="federated tools named `" + prefix + ".*`",
                secondary=_labels((other.span, "also names tools `" + prefix + ".*`")),
                help=f'give the federated server a prefix of its own: `prefix "{decl.name}"`',
            )
        )


def _nested(prefix: str, name: str) -> bool:
    """`name` is `prefix` or lies under it (`docs` and `docs.search`, not `docsearch`)."""
    return name == prefix or name.startswith(prefix + ".")


def _check_service_names(scope: _Scope, diags: list[Diagnostic]) -> None:
    services_by_name: dict[str, m.Service] = {}
    for decl in scope.table.values():
        if isinstance(decl, m.Service):
            other = services_by_name.get(decl.name)
            if other is not None:
                diags.append(
                    make(
                        "E0406",
                        f"service name `{decl.name}` is used in packages `{other.package}` and "
                        f"`{decl.package}`",
                        decl.span,
                        secondary=_labels((other.span, "first declared here")),
                        help="service names are workload identities and must be unique in a tree",
                    )
                )
            else:
                services_by_name[decl.name] = decl


def _resolve_unit(scope: _Scope, unit: m.FileUnit, tools: frozenset[str]) -> _UnitResult:
    """One file's imports checked and declarations bound against the whole tree's scope."""
    diags: list[Diagnostic] = []
    bound_decls: list[tuple[str, m.Decl]] = []
    resolver = _FileResolver(scope, unit, diags, tools)
    for imp in unit.imports:
        _check_import(imp, unit.package, resolver.packages(), diags)
    for index, decl in enumerate(unit.decls):
        if not resolver.ask("wins", index):  # a duplicate, reported by the scope
            continue
        bound = _bind(resolver, decl)
        if bound is not None:
            bound_decls.append((decl.kind, bound))  # type: ignore[attr-defined]
    for imp in unit.imports:
        if imp.package in resolver.packages() and imp.package not in resolver.used:
            diags.append(
                make(
                    "W0101",
                    f"import `{imp.package}` is never used",
                    imp.span,
                    label="unused import",
                    help="remove the import",
                )
            )
    return _UnitResult(tuple(bound_decls), tuple(diags), tuple(resolver.asked.items()))


def _check_import(
    imp: m.Import, own: str, packages: frozenset[str], diags: list[Diagnostic]
) -> None:
    text = imp.package
    if text.startswith("/") or ".." in text.split("/") or "\\" in text:
        diags.append(
            make(
                "E0404",
                f"import `{text}` leaves the policy tree",
                imp.span,
                help="imports name packages of the same tree; no absolute paths or `..`",
            )
        )
        return
    if text not in packages:
        guess = closest(text, packages - {own})  # never suggest importing oneself
        diags.append(
            make(
                "E0403",
                f"no package `{text}` in this tree",
                imp.span,
                label="imported here",
                help=f'did you mean "{guess}"?' if guess else "declare `package NAME` in some file",
            )
        )


def _bind(r: _FileResolver, decl: m.Decl) -> m.Decl | None:
    if isinstance(decl, m.Service):
        return decl.model_copy(update={"pool": r.ref(decl.pool, "pool")})
    if isinstance(decl, (m.Scale, m.Balance)):
        service = r.ref(decl.service, "service")
        return None if service is None else decl.model_copy(update={"service": service})
    if isinstance(decl, m.Pool):
        reservations = []
        for res in decl.reservations:
            service = r.ref(res.service, "service")
            if service is not None:
                reservations.append(res.model_copy(update={"service": service}))
        return decl.model_copy(update={"reservations": tuple(reservations)})
    if isinstance(decl, m.Job):
        return decl.model_copy(
            update={"carbon": r.ref(decl.carbon, "carbon"), "pool": r.ref(decl.pool, "pool")}
        )
    if isinstance(decl, m.Policy):
        rules = tuple(_bind_rule(r, rule) for rule in decl.rules)
        return decl.model_copy(update={"rules": rules})
    if isinstance(decl, m.Gateway):
        routes = []
        for route in decl.routes:
            target = r.ref(route.target.ref, route.target.kind)
            if target is not None:
                routes.append(
                    route.model_copy(
                        update={"target": route.target.model_copy(update={"ref": target})}
                    )
                )
        providers = tuple(
            bound for ref in decl.providers if (bound := r.ref(ref, "provider")) is not None
        )
        return decl.model_copy(update={"routes": tuple(routes), "providers": providers})
    if isinstance(decl, m.Test):
        return _bind_test(r, decl)
    if isinstance(decl, m.Server) and decl.mcp is not None:
        accepted = tuple(
            bound for ref in decl.mcp.providers if (bound := r.ref(ref, "provider")) is not None
        )
        return decl.model_copy(update={"mcp": decl.mcp.model_copy(update={"providers": accepted})})
    return decl


def _bind_entity(r: _FileResolver, pattern: m.EntityPattern) -> m.EntityPattern:
    if pattern.ids is None or pattern.type not in ("service", "tool"):
        return pattern
    ids = []
    for ident in pattern.ids:
        if (
            pattern.type == "service"
            and "." not in ident
            and r.declared("service", r.unit.package, ident)
        ):
            ids.append(ident)  # the common case, without building a Ref
            continue
        if pattern.type == "service":
            pkg, _, name = ident.rpartition(".")
            ref = m.Ref(package=pkg or None, name=name, span=pattern.span)
            bound = r.ref(ref, "service")
            ids.append(bound.name if bound is not None else name)
        else:
            if ident not in r.tools() and not _federated(ident, r.ask("federated")):
                guess = closest(ident, r.tools())
                r.diags.append(
                    make(
                        "E0402",
                        f"unknown tool `{ident}`",
                        pattern.span,
                        label="no integration exposes this tool",
                        help=f'did you mean "{guess}"?'
                        if guess
                        else 'expose it with `expose tool "..."` in an integration',
                    )
                )
            ids.append(ident)
    if tuple(ids) == pattern.ids:
        return pattern
    return pattern.model_copy(update={"ids": tuple(ids)})


def _federated(tool: str, prefixes: frozenset[str]) -> bool:
    """`tool` is `P.x` for the prefix `P` of a federated MCP server (discovered at run time)."""
    return any(tool.startswith(p + ".") and len(tool) > len(p) + 1 for p in prefixes)


def _bind_rule(r: _FileResolver, rule: m.Rule) -> m.Rule:
    principal = _bind_entity(r, rule.principal)
    resource = _bind_entity(r, rule.resource)
    if principal is rule.principal and resource is rule.resource:
        return rule
    return rule.model_copy(update={"principal": principal, "resource": resource})


def _bind_test(r: _FileResolver, test: m.Test) -> m.Test:
    update: dict[str, Any] = {}
    if test.scale is not None:
        service = r.ref(test.scale.service, "service")
        if service is not None:
            update["scale"] = test.scale.model_copy(update={"service": service})
            _check_scale_given(r, test.scale, service)
    if test.route is not None:
        gateway = r.ref(test.route.gateway, "gateway")
        if gateway is not None:
            update["route"] = test.route.model_copy(update={"gateway": gateway})
    if test.transform is not None:
        integration = r.ref(test.transform.integration, "integration")
        if integration is not None:
            update["transform"] = test.transform.model_copy(update={"integration": integration})
    expects = []
    for e in test.expect:
        if e.route is not None:
            target = r.ref(e.route.ref, e.route.kind)
            if target is not None:
                e = e.model_copy(update={"route": e.route.model_copy(update={"ref": target})})
        expects.append(e)
    update["expect"] = tuple(expects)
    if test.request is not None:
        for side in ("principal", "resource"):
            entity = test.request[side]
            if (
                entity["type"] == "tool"
                and entity["id"] not in r.tools()
                and not _federated(entity["id"], r.ask("federated"))
            ):
                guess = closest(entity["id"], r.tools())
                r.diags.append(
                    make(
                        "E0402",
                        f"unknown tool `{entity['id']}` in test request",
                        test.span,
                        label="in this test",
                        help=f'did you mean "{guess}"?' if guess else None,
                    )
                )
            elif entity["type"] == "service":
                _check_test_service(r, entity["id"], test)
    return test.model_copy(update=update)


def _check_test_service(r: _FileResolver, ident: str, test: m.Test) -> None:
    """A test request naming a service that does not exist would pass by default deny."""
    names: frozenset[str] = r.ask("service names")
    name = ident.rpartition(".")[2]
    if name in names:
        return
    guess = closest(name, names)
    r.diags.append(
        make(
            "E0402",
            f"unknown service `{ident}` in test request",
            test.span,
            label="in this test",
            help=f"did you mean `{guess}`?" if guess else "declare the service or fix the name",
        )
    )


def _check_scale_given(r: _FileResolver, given: m.ScaleGiven, service: m.Ref) -> None:
    """`given scale` needs a `scale` block, and its metrics must be the block's targets."""
    known: frozenset[str] | None = r.ask("scale targets", service.package or "", service.name)
    if known is None:
        r.diags.append(
            make(
                "E0208",
                f"service `{service.name}` has no `scale` block to test",
                given.span,
                help=f"add `scale {service.name} {{ ... }}` or test another service",
            )
        )
        return
    for metric in given.metrics:
        if metric not in known:
            guess = closest(metric, known)
            r.diags.append(
                make(
                    "E0208",
                    f"`scale {service.name}` has no target `{metric}`",
                    given.span,
                    label="metric not scaled on",
                    help=f"did you mean `{guess}`?"
                    if guess
                    else "targets: " + ", ".join(f"`{k}`" for k in sorted(known)),
                )
            )


def _in_source_order(decls: tuple[D, ...]) -> list[D]:
    """Declarations as written (the project sorts by name): "first" means first in the files."""

    def key(d: D) -> tuple[str, int, int]:
        return (d.span.file, d.span.line, d.span.column) if d.span else ("", 0, 0)

    return sorted(decls, key=key)


def _check_conflicts(
    project: m.Project, diags: list[Diagnostic], broken_scales: set[tuple[str, str]]
) -> None:
    services = {(s.package, s.name): s for s in project.services}
    for kind, decls in (("scale", project.scales), ("balance", project.balances)):
        seen: dict[tuple[str | None, str], m.Decl] = {}
        for decl in _in_source_order(decls):
            key = (decl.service.package, decl.service.name)  # type: ignore[attr-defined]
            if key in seen:
                diags.append(
                    make(
                        "E0406",
                        f"service `{decl.service}` has two `{kind}` blocks",  # type: ignore[attr-defined]
                        decl.span,
                        label=f"second `{kind}` block",
                        secondary=_labels((seen[key].span, "first one here")),
                        help="merge them into one block",
                    )
                )
            seen[key] = decl
    ports: dict[int, m.Gateway] = {}
    for gw in _in_source_order(project.gateways):
        if gw.port in ports:
            diags.append(
                make(
                    "E0406",
                    f"gateways `{ports[gw.port].name}` and `{gw.name}` both listen on {gw.port}",
                    gw.span,
                    label=f"second gateway on {gw.port}",
                    secondary=_labels((ports[gw.port].span, "first gateway")),
                    help="give each gateway its own `listen` port",
                )
            )
        else:
            ports[gw.port] = gw
    # A `scale` block that failed to lower was reported already; its service
    # is not "without scale".
    scaled = {(s.service.package, s.service.name) for s in project.scales} | broken_scales
    balanced = {(b.service.package, b.service.name) for b in project.balances}
    for key, svc in sorted(services.items()):
        if not svc.stateful and key not in scaled:
            diags.append(
                make(
                    "W0102",
                    f"stateless service `{svc.name}` has no `scale` block",
                    svc.span,
                    label="runs a fixed number of replicas",
                    help=f"add `scale {svc.name} {{ replicas 2..10 target cpu 70% }}` or mark it "
                    "`stateful`",
                )
            )
    for bal in project.balances:
        if bal.affinity is not None and bal.strategy not in ("ring-hash", "maglev"):
            diags.append(
                make(
                    "W0103",
                    f"`affinity` has no effect with strategy `{bal.strategy}`",
                    bal.affinity.span,
                    label="sticky sessions need a hashing strategy",
                    help="use `strategy ring-hash` or `strategy maglev`",
                )
            )
    for gw in project.gateways:
        for route in gw.routes:
            t = route.target
            if t.kind == "service" and (t.ref.package, t.ref.name) not in balanced:
                diags.append(
                    make(
                        "W0105",
                        f"internet-facing service `{t.ref.name}` has no `balance` block",
                        t.span,
                        label=f"routed from gateway `{gw.name}`",
                        help=f"add `balance {t.ref.name} {{ ... }}` with health checks and a limit",
                    )
                )
