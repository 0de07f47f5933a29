"""A request target (`/path?query#fragment`) split the way every door splits it.

The canonical request carries `request.path` *without* the query and
`request.query` as a map, so that a rule's glob is matched on the path only,
as Envoy's route and RBAC path matchers do (they ignore the query), and a
condition can read one query parameter.  The engine, the CheckRequest mapping,
the generated Rego and `mcpdsl serve` all call (or mirror) this one function.

Query parameters: split on `&`; a parameter without `=` has the value `""`;
names and values are percent-decoded (a `+` stays a `+`: this is a URL
query, not a form body); an empty name is skipped; the first occurrence of a
name wins, as in Envoy's query-parameter matcher.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from mcpdsl.ir.paths import VALID_QUERY_COMPONENT as VALID_COMPONENT


def split_target(target: str) -> tuple[str, dict[str, str]]:
    """`(path, query)` of a raw request target; a fragment is dropped."""
    without_fragment = target.split("#", 1)[0]
    path, sep, raw_query = without_fragment.partition("?")
    query: dict[str, str] = {}
    if sep:
        for part in raw_query.split("&"):
            name, _, value = part.partition("=")
            key = unquote(name, errors="replace")
            if key and key not in query:
                query[key] = unquote(value, errors="replace")
    return path, query


_VALID_COMPONENT = re.compile(VALID_COMPONENT)  # fullmatch: `$` before a final newline


def query_problem(target: str) -> str | None:
    """Why the query of `target` cannot be decoded exactly (a refusal reason), or None."""
    without_fragment = target.split("#", 1)[0]
    _, sep, raw_query = without_fragment.partition("?")
    if not sep or "%" not in raw_query:
        return None
    for part in raw_query.split("&"):
        name, _, value = part.partition("=")
        for component in (name, value):
            if "%" in component and _VALID_COMPONENT.fullmatch(component) is None:
                return "a query parameter is not valid percent-encoded UTF-8"
    return None


def with_split_path(request: dict[str, Any], path: str) -> dict[str, Any]:
    """`request` with `request.path` cut at the query and `request.query` its map.

    Applied by the evaluators to a request whose path carries a `?` or `#`
    (docs/semantics.md, "The request"): the path's own query replaces any
    `request.query` given beside it, since it is what the server receives.
    """
    bare, query = split_target(path)
    inner = dict(request["request"])
    inner["path"] = bare
    inner["query"] = query
    out = dict(request)
    out["request"] = inner
    return out
