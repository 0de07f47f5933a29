"""Resolve: join the files of a tree into one project and bind every name.

Reports duplicate declarations, unknown references (with did-you-mean),
imports that are missing or leave the tree, qualified names of packages a file
does not import, and declarations that claim the same thing.  Returns a
`Project` whose references all carry their package.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, TypeVar

from mcpdsl.diagnostics import Diagnostic, Label, make
from mcpdsl.ir import model as m
from mcpdsl.source import Span
from mcpdsl.syntax.parser import closest

D = TypeVar("D", bound=m.Decl)

_KIND_WORD = {
    "service": "service",
    "pool": "pool",
    "carbon": "carbon block",
    "integration": "integration",
    "gateway": "gateway",
    "scale": "scale block",
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

    def names(self, kind: str, packages: set[str]) -> list[str]:
        return sorted(n if p in packages else f"{p}.{n}" for (k, p, n) in self.table if k == kind)


class _FileResolver:
    def __init__(self, scope: _Scope, unit: m.FileUnit, diags: list[Diagnostic]) -> None:
        self.scope = scope
        self.unit = unit
        self.diags = diags
        self.imported = {i.package for i in unit.imports}
        self.used: set[str] = set()

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
        if (kind, package, ref.name) in self.scope.table:
            return ref.model_copy(update={"package": package})
        if (kind, package, ref.name) in self.scope.failed:
            return None  # already reported where it is declared
        if ref.package is None:
            # An unqualified name may live in an imported package when unambiguous.
            hits = [p for p in sorted(self.imported) if (kind, p, ref.name) in self.scope.table]
            if len(hits) == 1:
                self.used.add(hits[0])
                return ref.model_copy(update={"package": hits[0]})
        visible = {self.unit.package} | self.imported
        word = what or _KIND_WORD.get(kind, kind)
        if ref.package is None:
            elsewhere = sorted(
                p for p in self.scope.packages - visible if (kind, p, ref.name) in self.scope.table
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
        guess = closest(ref.name, self.scope.names(kind, visible))
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


def resolve(units: list[m.FileUnit], root: str = "") -> tuple[m.Project, list[Diagnostic]]:
    """Bind names across all files; returns the project and diagnostics."""
    diags: list[Diagnostic] = []
    scope = _Scope(units, diags)
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
    out: dict[str, list[Any]] = defaultdict(list)
    for unit in units:
        resolver = _FileResolver(scope, unit, diags)
        for imp in unit.imports:
            _check_import(imp, unit.package, scope, diags)
        for decl in unit.decls:
            if scope.table.get((decl.kind, decl.package, decl.name)) is not decl:  # type: ignore[attr-defined]
                continue
            bound = _bind(resolver, decl, tools)
            if bound is not None:
                out[decl.kind].append(bound)  # type: ignore[attr-defined]
        for imp in unit.imports:
            if imp.package in scope.packages and imp.package not in resolver.used:
                diags.append(
                    make(
                        "W0101",
                        f"import `{imp.package}` is never used",
                        imp.span,
                        label="unused import",
                        help="remove the import",
                    )
                )
    project = m.Project(
        root=root,
        packages=tuple(sorted(scope.packages)),
        **{
            field: tuple(sorted(out[kind], key=lambda d: (d.package, d.name)))
            for kind, field in m.DECL_KINDS.items()
        },
    )
    broken_scales = {
        (unit.package, name) for unit in units for kind, name in unit.failed if kind == "scale"
    }
    _check_conflicts(project, diags, broken_scales)
    return project, diags


def _check_import(imp: m.Import, own: str, scope: _Scope, diags: list[Diagnostic]) -> None:
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
    if text not in scope.packages:
        guess = closest(text, scope.packages - {own})  # never suggest importing oneself
        diags.append(
            make(
                "E0403",
                f"no package `{text}` in this tree",
                imp.span,
                label="imported here",
                help=f'did you mean "{guess}"?' if guess else "declare `package NAME` in some file",
            )
        )


def _bind(r: _FileResolver, decl: m.Decl, tools: dict[str, m.Integration]) -> m.Decl | None:
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
        rules = tuple(_bind_rule(r, rule, tools) for rule in decl.rules)
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
        return decl.model_copy(update={"routes": tuple(routes)})
    if isinstance(decl, m.Test):
        return _bind_test(r, decl, tools)
    return decl


def _bind_entity(
    r: _FileResolver, pattern: m.EntityPattern, tools: dict[str, m.Integration]
) -> m.EntityPattern:
    if pattern.ids is None or pattern.type not in ("service", "tool"):
        return pattern
    ids = []
    for ident in pattern.ids:
        local = ("service", r.unit.package, ident)
        if pattern.type == "service" and "." not in ident and local in r.scope.table:
            ids.append(ident)  # the common case, without building a Ref
            continue
        if pattern.type == "service":
            pkg, _, name = ident.rpartition(".")
            ref = m.Ref(package=pkg or None, name=name, span=pattern.span)
            bound = r.ref(ref, "service")
            ids.append(bound.name if bound is not None else name)
        else:
            if ident not in tools:
                guess = closest(ident, tools)
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


def _bind_rule(r: _FileResolver, rule: m.Rule, tools: dict[str, m.Integration]) -> m.Rule:
    principal = _bind_entity(r, rule.principal, tools)
    resource = _bind_entity(r, rule.resource, tools)
    if principal is rule.principal and resource is rule.resource:
        return rule
    return rule.model_copy(update={"principal": principal, "resource": resource})


def _bind_test(r: _FileResolver, test: m.Test, tools: dict[str, m.Integration]) -> m.Test:
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
            if entity["type"] == "tool" and entity["id"] not in tools:
                guess = closest(entity["id"], tools)
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
    names = {n for (k, _, n) in r.scope.table if k == "service"}
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
    scale = r.scope.table.get(("scale", service.package or "", service.name))
    if scale is None:
        r.diags.append(
            make(
                "E0208",
                f"service `{service.name}` has no `scale` block to test",
                given.span,
                help=f"add `scale {service.name} {{ ... }}` or test another service",
            )
        )
        return
    assert isinstance(scale, m.Scale)
    known = {t.metric if t.metric != "pods" else (t.name or "") for t in scale.targets}
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
