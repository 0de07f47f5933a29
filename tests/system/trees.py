"""Seeded random policy trees with a gateway, for the system differential.

Each tree has a few services in a few namespaces (SPIFFE identities), one
gateway whose routes use exact paths, `*` and `**` globs and method lists, and
one `default deny` policy whose rules use what the edge can verify: service
principals, `any`, methods, path globs, `source.ip` CIDRs and
`source.namespace` (allows and denies, conditions with `when` and `unless`).
"""

from __future__ import annotations

import random
from pathlib import Path

__all__ = ["write_tree"]

PATTERNS = ("/api/**", "/api/admin/**", "/items/*", "/health", "/v2/*/runs/**", "/**")
METHODS = ("GET", "POST", "PUT", "DELETE")


def _pick(rng: random.Random, items: tuple[str, ...] | list[str], most: int) -> list[str]:
    return sorted(rng.sample(list(items), rng.randint(1, min(most, len(items)))))


def _rule(rng: random.Random, services: list[str], namespaces: list[str]) -> str:
    effect = rng.choice(("allow", "allow", "deny"))
    who = rng.choice(("any", "service", "service"))
    principal = "any" if who == "any" else "service [" + ", ".join(_pick(rng, services, 2)) + "]"
    resource = "service [" + ", ".join(_pick(rng, services, 2)) + "]"
    text = f"{effect} {principal} -> {resource}"
    if rng.random() < 0.7:  # a path glob comes after a method list
        text += " on " + ", ".join(_pick(rng, METHODS, 2))
        if rng.random() < 0.7:
            text += f' "{rng.choice(PATTERNS)}"'
    roll = rng.random()
    keyword = "unless" if effect == "deny" and rng.random() < 0.5 else "when"
    if roll < 0.3:
        text += f' {keyword} source.ip in cidr "{rng.choice(("10.0.0.0/8", "192.168.0.0/16"))}"'
    elif roll < 0.5:
        text += f' {keyword} source.namespace == "{rng.choice(namespaces)}"'
    return text


def write_tree(root: Path, seed: int) -> Path:
    """Write generated tree number `seed` under `root` and return its directory."""
    rng = random.Random(seed)
    namespaces = [f"ns{i}" for i in range(rng.randint(1, 3))]
    services = [f"svc{i}" for i in range(rng.randint(2, 4))]
    lines = [f"package gen{seed}", ""]
    for name in services:
        ns = rng.choice(namespaces)
        lines += [
            f"service {name} {{",
            '  image "example/app:1"',
            "  port 8080",
            "  stateful",
            f'  namespace "{ns}"',
            f'  identity "spiffe://gen.test/ns/{ns}/sa/{name}"',
            "}",
            "",
        ]
    lines += ["gateway edge {", "  listen 8443", '  hosts ["gen.test"]']
    for _ in range(rng.randint(2, 5)):
        route = f'  route "{rng.choice(PATTERNS)}"'
        if rng.random() < 0.4:
            route += " on " + ", ".join(_pick(rng, METHODS, 2))
        lines.append(f"{route} -> service {rng.choice(services)}")
    lines += ["}", "", "policy edge {", "  default deny"]
    lines += [f"  {_rule(rng, services, namespaces)}" for _ in range(rng.randint(3, 7))]
    lines += ["}", ""]
    tree = root / f"gen{seed}"
    tree.mkdir(parents=True)
    (tree / "main.mcp").write_text("\n".join(lines), encoding="utf-8")
    return tree
