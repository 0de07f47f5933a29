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

from urllib.parse import unquote


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
