"""Envoy route-configuration pieces for gateway paths: matchers and rewrite actions.

The meaning of a route's path glob and of its `rewrite` is defined once, in
`mcpdsl.ir.paths` (shared with the in-process evaluator, so the two agree by
construction); this module only spells that meaning in Envoy's vocabulary
(`RouteMatch` path specifiers, `:method` header matchers, `regex_rewrite`).
"""

from __future__ import annotations

import re

from mcpdsl.ir import model as m
from mcpdsl.ir.globs import glob_regex, is_literal
from mcpdsl.ir.paths import CONTROL, PLACEHOLDER, Rewrite, capture_regex, tail_prefix

#: Characters Envoy rejects in header-like values (HTTP_HEADER_VALUE, strict false).
_HEADER_VALUE_FORBIDDEN = re.compile(r"[\x00\r\n]")


def valid_header_value(text: str) -> bool:
    return _HEADER_VALUE_FORBIDDEN.search(text) is None


def path_match(pattern: str) -> dict[str, object]:
    """The `RouteMatch` path specifier with exactly the glob's meaning.

    * a literal pattern -> `path` (exact; Envoy compares the path without query);
    * `PREFIX/**` -> `path_separated_prefix: PREFIX` (Envoy: the path without
      query equals PREFIX or starts with `PREFIX/`), or `prefix: /` for `/**`;
    * anything else -> `safe_regex` with `glob_regex(pattern)` (RE2; Envoy
      matches it against the whole path without query).
    """
    if is_literal(pattern):
        return {"path": pattern}
    prefix = tail_prefix(pattern)
    if prefix == "":
        return {"prefix": "/"}
    if (
        prefix is not None
        and len(prefix) >= 2
        and not prefix.endswith("/")
        and CONTROL.search(prefix) is None
    ):
        return {"path_separated_prefix": prefix}
    return {"safe_regex": {"regex": glob_regex(pattern)}}


def method_matcher(methods: tuple[str, ...]) -> dict[str, object]:
    """A `:method` HeaderMatcher for one or several methods (exact, case-sensitive)."""
    if len(methods) == 1:
        return {"name": ":method", "string_match": {"exact": methods[0]}}
    alternatives = "|".join(re.escape(x) for x in methods)
    return {"name": ":method", "string_match": {"safe_regex": {"regex": f"^(?:{alternatives})$"}}}


def _re2_substitution(text: str) -> str:
    """A literal for an RE2 rewrite string (`\\` escapes; `\\1` is a group)."""
    return text.replace("\\", "\\\\")


def condition_matchers(route: m.Route) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """The route's `header` / `query` conditions as Envoy HeaderMatchers and
    QueryParameterMatchers (`mcpdsl.ir.paths.conditions_hold` is their meaning).

    `==` is an exact string match, `!=` the same inverted (Envoy: an absent
    header fails an inverted matcher too, as in the engine), no operator is
    `present_match`.  Query parameters are matched on the first occurrence,
    decoded, by Envoy as by `split_target`.
    """

    def one(cond: m.RouteCondition) -> dict[str, object]:
        matcher: dict[str, object] = {"name": cond.name}
        if cond.op == "present":
            matcher["present_match"] = True
        else:
            matcher["string_match"] = {"exact": cond.value}
            if cond.op == "!=":
                matcher["invert_match"] = True
        return matcher

    return [one(c) for c in route.headers], [one(c) for c in route.query]


def rewrite_action(
    rewrite: Rewrite | None, route_path: str, *, prefix: bool = False
) -> dict[str, object]:
    """The RouteAction fields implementing `rewrite` exactly (see `apply_rewrite`)."""
    if rewrite is None:
        return {}
    if rewrite.kind == "text" and prefix and valid_header_value(rewrite.value):
        return {"prefix_rewrite": rewrite.value}  # Envoy replaces the matched `prefix`
    if rewrite.kind == "text":
        escaped = re.escape(rewrite.prefix)
        pattern, substitution = f"(?s)^{escaped}(.*)$", _re2_substitution(rewrite.value) + "\\1"
    elif rewrite.kind == "prefix":
        escaped = re.escape(rewrite.prefix)
        if rewrite.value == "":
            pattern, substitution = f"(?s)^{escaped}/?(.*)$", "/\\1"
        else:
            pattern, substitution = f"(?s)^{escaped}(.*)$", _re2_substitution(rewrite.value) + "\\1"
    elif rewrite.kind == "replace":
        if is_literal(route_path) and valid_header_value(rewrite.value):
            return {"prefix_rewrite": rewrite.value}
        pattern, substitution = "(?s)^.*$", _re2_substitution(rewrite.value)
    else:
        pattern = capture_regex(rewrite.pattern)
        parts = PLACEHOLDER.split(rewrite.value)
        substitution = _re2_substitution(parts[0])
        for index, part in enumerate(parts[1:], 1):
            substitution += f"\\{index}" + _re2_substitution(part)
    return {"regex_rewrite": {"pattern": {"regex": pattern}, "substitution": substitution}}
