"""Gateway paths: request-path normalisation, rewrite semantics, glob overlap.

Everything here is pure and shared by the Envoy target (`mcpdsl.compile.envoy`,
which spells it in Envoy's vocabulary in `compile/envoy_matchers.py`) and the
in-process evaluator (`mcpdsl.evaluate.route`): `normalize_request_path` and
`rewrite_path` are the one definition of what a gateway does to a path, so the
two agree by construction.  It lives in `ir`, beside `globs`, because both of
them sit above `ir` and neither may import the other.

Rewrite semantics (targets/envoy/README.md):

* a route `PREFIX/**` with `rewrite R`: the matched PREFIX is replaced by R
  without its trailing slashes; an empty result is `/`.  `/v1/**` rewrite
  `/` maps `/v1/items` -> `/items`, `/v1` -> `/`, `/v1/` -> `/`; rewrite
  `/api` maps `/v1/items` -> `/api/items`, `/v1` -> `/api`;
* any other route with `rewrite R`: the whole path is replaced by R;
* no rewrite: the path is forwarded unchanged, except for routes to an
  integration, which get an implied rewrite from the call URL's path template
  (`implied_rewrite`);
* the query string (from the first `?` or `#`) is kept as it is, and
  control characters in R are percent-encoded (a raw one cannot be sent).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from urllib.parse import urlsplit

from mcpdsl.ir import model as m
from mcpdsl.ir.globs import is_literal, matches, strip_query

PLACEHOLDER = re.compile(r"\{[^{}/]*\}")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# ---------------------------------------------------------- route matching

#: One query component (a name or a value) that `mcpdsl.evaluate.target.split_target` decodes without
#: repair: every `%` starts a two-hex-digit escape, and the escaped bytes, with
#: the ASCII characters between them, are UTF-8.  The generated Rego matches the
#: same expression (RE2 and Python's `re` read it alike), so the engine and OPA
#: refuse exactly the same requests; the others decode to the same text in both.
_HEX = "[0-9A-Fa-f]"
_CONT = "%[89ABab]" + _HEX
VALID_QUERY_COMPONENT = (
    "^(?:[^%]"
    f"|%[0-7]{_HEX}"
    f"|%[Cc][2-9A-Fa-f]{_CONT}"
    f"|%[Dd]{_HEX}{_CONT}"
    f"|%[Ee]0%[ABab]{_HEX}{_CONT}"
    f"|%[Ee][1-9A-Ca-cEFef]{_CONT}{_CONT}"
    f"|%[Ee][Dd]%[89]{_HEX}{_CONT}"
    f"|%[Ff]0%[9ABab]{_HEX}{_CONT}{_CONT}"
    f"|%[Ff][1-3]{_CONT}{_CONT}{_CONT}"
    f"|%[Ff]4%8{_HEX}{_CONT}{_CONT}"
    ")*$"
)

#: Headers Envoy sets, rewrites or strips before routing (and `host`, which it
#: routes on as `:authority`): a route condition on them could not mean in
#: Envoy what it means in the engine, so the front end refuses them.
ENVOY_MANAGED_HEADERS = re.compile(
    r"^(host|connection|keep-alive|proxy-connection|transfer-encoding|upgrade|te|"
    r"x-request-id|x-forwarded-.*|x-envoy-.*)$"
)
_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
#: Longest header name accepted in a route condition (Envoy's own limit is larger).
MAX_HEADER_NAME = 256


def header_name_problem(name: str) -> str | None:
    """Why `name` cannot be a route's header condition (the words after the name), or None."""
    if not name:
        return "is empty"
    if len(name) > MAX_HEADER_NAME:
        return f"is longer than {MAX_HEADER_NAME} characters"
    if _TOKEN.match(name) is None:
        return "is not an HTTP header name"
    if ENVOY_MANAGED_HEADERS.match(name.lower()):
        return "is set or rewritten by the gateway itself"
    return None


def prefix_error(prefix: str) -> str | None:
    """Why `prefix` cannot be a `route prefix "..."`, or None (mirrors `globs.glob_error`)."""
    if not prefix.startswith("/"):
        return f"path prefix `{prefix}` must start with `/`"
    if "?" in prefix or "#" in prefix:
        return "path prefixes match the path only; remove the query or fragment"
    if "*" in prefix:
        return "a path prefix is matched as text: `*` would only match a literal `*`"
    if CONTROL.search(prefix):
        return "a path prefix cannot hold control characters"
    if "//" in prefix or "/./" in prefix or "/../" in prefix or prefix.endswith(("/.", "/..")):
        return "a path prefix must be in normal form (no `//`, `.` or `..` segments)"
    return None


def prefix_cover(prefix: str) -> str:
    """A glob matching every path that starts with `prefix` (and maybe more).

    For the consumers that reason in globs (rule relevance, overlap pre-filters):
    `/v1/bl` -> `/v1/*/**`, `/v1/` -> `/v1/**`, `/` -> `/**`.
    """
    head, _, last = prefix.rpartition("/")
    return f"{head}/**" if last == "" else f"{head}/*/**"


def route_glob(route: m.Route) -> str:
    """The route's glob, or for a `prefix` route a glob covering it (`prefix_cover`)."""
    return prefix_cover(route.path) if route.prefix else route.path


def route_takes_path(route: m.Route, path: str) -> bool:
    """Whether the route's path part matches `path` (query ignored; methods not looked at)."""
    if route.prefix:
        return strip_query(path).startswith(route.path)
    return matches(route.path, path)


def conditions_hold(route: m.Route, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
    """The route's header and query conditions on a request (`m.RouteCondition`).

    `headers` has lower-case names; `query` is `split_target`'s map (decoded,
    first occurrence).  A missing header or parameter fails every condition.
    """
    for cond in route.headers:
        if not _holds(cond, headers.get(cond.name)):
            return False
    return all(_holds(cond, query.get(cond.name)) for cond in route.query)


def _holds(cond: m.RouteCondition, value: str | None) -> bool:
    if value is None:
        return False
    if cond.op == "==":
        return value == cond.value
    if cond.op == "!=":
        return value != cond.value
    return True


def segments(pattern: str) -> list[str]:
    return pattern.split("/")[1:]


def tail_prefix(pattern: str) -> str | None:
    """PREFIX when `pattern` is exactly `PREFIX/**` and has no other wildcard, else None."""
    segs = segments(pattern)
    if not segs or segs[-1] != "**" or any(s in ("*", "**") for s in segs[:-1]):
        return None
    return "".join("/" + s for s in segs[:-1])


def percent_controls(text: str) -> str:
    """Percent-encode C0 controls and DEL (they cannot appear raw in a request path)."""
    return CONTROL.sub(lambda mt: f"%{ord(mt.group()):02X}", text)


# ---------------------------------------------------------- normalisation

#: The path settings of every generated `http_connection_manager` (envoy.py emits
#: exactly these; tests/compile checks it).  `normalize_request_path` implements them.
HCM_PATH_SETTINGS: dict[str, object] = {
    "normalize_path": True,
    "merge_slashes": True,
    "path_with_escaped_slashes_action": "REJECT_REQUEST",
}

_ESCAPED_SLASH = re.compile(r"%(?:2f|5c)", re.IGNORECASE)
_ENCODED_DOT = re.compile(r"%2e", re.IGNORECASE)
_SLASH_RUN = re.compile(r"/{2,}")


class PathRejected(ValueError):
    """Envoy answers the request itself (400) before routing: the path is refused.

    Same meaning as tests/compile/envoy_matcher.py's `RequestRejected`.
    """

    def __init__(self, path: str, reason: str, status: int = 400) -> None:
        super().__init__(f"{status}: {reason}: {path!r}")
        self.path = path
        self.reason = reason
        self.status = status


def split_path(path: str) -> tuple[str, str]:
    """(the path proper, the rest from the first `?` or `#`), as `globs.strip_query` cuts."""
    bare = strip_query(path)
    return bare, path[len(bare) :]


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4 on an absolute path (`.` and `..` segments; `..` stops at `/`)."""
    segs = path.split("/")[1:]
    out: list[str] = []
    last = len(segs) - 1
    for i, seg in enumerate(segs):
        if seg == ".":
            if i == last:
                out.append("")
        elif seg == "..":
            if out:
                out.pop()
            if i == last:
                out.append("")
        else:
            out.append(seg)
    return "/" + "/".join(out)


def normalize_request_path(path: str) -> str:
    """The `:path` Envoy routes on and forwards, for the generated HCM (`HCM_PATH_SETTINGS`).

    Envoy (`ConnectionManagerUtility::maybeNormalizePath`) works on the part
    before the query, in this order, and this function does the same:

    1. `path_with_escaped_slashes_action: REJECT_REQUEST` -- a `%2F` or `%5C`
       (any case) in the path is answered with 400: raises `PathRejected`;
    2. `normalize_path: true` -- "Should paths be normalized according to RFC
       3986 before any processing of requests by HTTP filters or routing?
       This affects the upstream :path header as well ... Envoy will respond
       with 400 to paths that are malformed" (HCM proto doc).  Envoy runs
       Chromium's URL path canonicaliser (`PathUtil::canonicalPath`); what is
       modelled here, each case from Envoy's path_utility tests:
       `%2e`/`%2E` is a `.` wherever it occurs (`/a/b/%2E%2E/c` -> `/a/c`), a
       raw `\\` is a `/` (`/a/..\\c` -> `/c`), then RFC 3986 dot-segment
       removal (`/a/b/../../../../c` -> `/c`, `a/b/../c` -> `/a/c`); other
       escapes are kept as written, hex case included (`/%5c%25`,
       `/a/%2F%2f/c`); an escaped NUL (`%00`) is malformed: `PathRejected`;
    3. `merge_slashes: true` -- runs after 2: `//` -> `/`.

    Not modelled (documented, not needed by paths made of RFC 3986 path
    characters without percent-encoded unreserved characters): the
    canonicaliser percent-encodes raw characters a path must not carry
    (space, `"`, `<`, non-ASCII, ...) and, depending on the Chromium URL
    library version Envoy links, may decode percent-encoded unreserved
    characters other than `.` (`%41` -> `A`; not verified, so not done);
    recent Envoy versions strip `;params` from dot segments (`/x/..;p/y` ->
    `/y`, runtime guard `strip_dotdot_segments_with_parameters`); and Envoy
    rejects a path with a fragment (`#`) by default, where mcpdsl treats `#`
    like `?` (the rest is kept unchanged).
    """
    if "." not in path and "%" not in path and "\\" not in path and "//" not in path:
        return path  # nothing to normalise (the common case)
    bare, rest = split_path(path)
    if "%" in bare:
        if _ESCAPED_SLASH.search(bare):
            raise PathRejected(path, "escaped slash (%2F or %5C) in the path")
        if "%00" in bare:
            raise PathRejected(path, "escaped NUL (%00) in the path")
        bare = _ENCODED_DOT.sub(".", bare)
    bare = bare.replace("\\", "/")
    if not bare.startswith("/"):
        bare = "/" + bare
    bare = _SLASH_RUN.sub("/", remove_dot_segments(bare))
    return bare + rest


# ---------------------------------------------------------------- rewrite


@dataclass(frozen=True)
class Rewrite:
    """What a route does to the path; `kind` is prefix, text, replace or template.

    `text` is the rewrite of a `route prefix "P"`: P is replaced by the value
    as it is (Envoy's `prefix_rewrite` on a `prefix` match), slashes included.
    """

    kind: str
    value: str  # prefix: the new base; replace: the new path; template: the URL path template
    prefix: str = ""  # prefix: the matched PREFIX
    pattern: str = ""  # template: the route's glob (only `*` wildcards)


def url_template(url: str) -> str:
    """The path template of an integration's call URL (no query, no fragment)."""
    return urlsplit(url).path


def _template_base(template: str) -> str:
    """The template up to (not including) the first segment with a placeholder."""
    first = PLACEHOLDER.search(template)
    if first is None:
        return template
    return template[: template.rfind("/", 0, first.start())]


def implied_rewrite(route: m.Route, integration: m.Integration) -> Rewrite | None:
    """The rewrite a route to `integration` gets from the call URL (None: path unchanged).

    * `PREFIX/**` -> PREFIX is replaced by the template up to its first
      placeholder segment (`/v1/crm/**` + `/api/v2/customers/{id}` maps
      `/v1/crm/42` -> `/api/v2/customers/42`);
    * only `*` wildcards, as many as placeholders -> the k-th `*` segment fills
      the k-th placeholder (`/v1/crm/*` maps `/v1/crm/42` the same way);
    * a literal route and a template without placeholders -> the template;
    * anything else cannot be mapped: the path is forwarded unchanged.
    """
    template = url_template(integration.url)
    holes = PLACEHOLDER.findall(template)
    if route.prefix:
        return Rewrite("text", percent_controls(_template_base(template)), prefix=route.path)
    prefix = tail_prefix(route.path)
    if prefix is not None:
        return Rewrite("prefix", percent_controls(_template_base(template)), prefix=prefix)
    if not holes:
        return (
            Rewrite("replace", percent_controls(template) or "/")
            if is_literal(route.path)
            else None
        )
    segs = segments(route.path)
    if "**" not in segs and segs.count("*") == len(holes):
        return Rewrite("template", percent_controls(template), pattern=route.path)
    return None


def route_rewrite(route: m.Route, integration: m.Integration | None = None) -> Rewrite | None:
    """The rewrite of a route: its own `rewrite`, else the integration's implied one."""
    if route.rewrite is not None:
        value = percent_controls(route.rewrite)
        if route.prefix:
            return Rewrite("text", value, prefix=route.path)
        prefix = tail_prefix(route.path)
        if prefix is not None:
            return Rewrite("prefix", value.rstrip("/"), prefix=prefix)
        return Rewrite("replace", value)
    if route.target.kind == "integration" and integration is not None:
        rewrite = implied_rewrite(route, integration)
        if rewrite is not None and rewrite.kind == "prefix":
            return Rewrite("prefix", rewrite.value.rstrip("/"), prefix=rewrite.prefix)
        return rewrite
    return None


@lru_cache(maxsize=1024)
def capture_regex(pattern: str) -> str:
    """`glob_regex` for a pattern with only `*` wildcards, each one a capture group."""
    out = []
    for seg in segments(pattern):
        out.append("/([^/]+)" if seg == "*" else "/" + re.escape(seg))
    return "(?s)^" + "".join(out) + "$"


def apply_rewrite(rewrite: Rewrite | None, path: str) -> str:
    stripped = strip_query(path)
    rest = path[len(stripped) :]
    if rewrite is None:
        return path
    if rewrite.kind in ("prefix", "text"):
        new = rewrite.value + stripped[len(rewrite.prefix) :]
    elif rewrite.kind == "replace":
        new = rewrite.value
    else:
        found = re.match(capture_regex(rewrite.pattern), stripped)
        assert found is not None
        values = iter(found.groups())
        new = PLACEHOLDER.sub(lambda _: next(values), rewrite.value)
    return (new or "/") + rest


def rewrite_path(route: m.Route, path: str, integration: m.Integration | None = None) -> str:
    """The path Envoy forwards for a request `path` (query kept) that matched `route`.

    For a route to an integration without its own `rewrite`, pass the
    integration: the call URL's path template decides (`implied_rewrite`).
    Raises ValueError when `path` does not match the route, or when an
    integration route needs its integration and none was given.

    >>> from mcpdsl.ir.model import Ref, Route, RouteTarget
    >>> api = RouteTarget(kind="service", ref=Ref(package="p", name="api"))
    >>> rewrite_path(Route(path="/v1/**", target=api, rewrite="/"), "/v1/items?x=1")
    '/items?x=1'
    >>> rewrite_path(Route(path="/v1/**", target=api, rewrite="/api"), "/v1")
    '/api'
    >>> rewrite_path(Route(path="/v1/*/x", target=api, rewrite="/y"), "/v1/a/x")
    '/y'
    """
    if not route_takes_path(route, path):
        raise ValueError(f"path {path!r} does not match route {route.path!r}")
    if route.target.kind == "integration" and route.rewrite is None and integration is None:
        raise ValueError("a route to an integration without `rewrite` needs the integration")
    return apply_rewrite(route_rewrite(route, integration), path)


# ---------------------------------------------------------------- overlap


def globs_overlap(a: str, b: str) -> bool:
    """Whether some path matches both globs (segment-wise, exact).

    >>> globs_overlap("/v1/**", "/v1/items/*")
    True
    >>> globs_overlap("/v1/**", "/admin/**")
    False
    """
    sa, sb = segments(a), segments(b)

    @cache
    def go(i: int, j: int) -> bool:
        if i == len(sa) and j == len(sb):
            return True
        if i < len(sa) and sa[i] == "**":
            return go(i + 1, j) or (j < len(sb) and go(i, j + 1))
        if j < len(sb) and sb[j] == "**":
            return go(i, j + 1) or (i < len(sa) and go(i + 1, j))
        if i == len(sa) or j == len(sb):
            return False
        x, y = sa[i], sb[j]
        if x == "*" and y == "*":
            ok = True
        elif x == "*":
            ok = y != ""
        elif y == "*":
            ok = x != ""
        else:
            ok = x == y
        return ok and go(i + 1, j + 1)

    return go(0, 0)


# ---------------------------------------------------------------- retries


def effective_retry(route: m.Route, integration: m.Integration | None = None) -> m.Retry | None:
    """The retry policy of a route: its own `retry`, field by field over the integration's.

    Shared by the Envoy target and `Engine.route`.  The route's count wins; its
    conditions, backoff and per-try timeout win when it gives them, else the
    integration's apply; no conditions at all means `5xx`.  None (no policy)
    when the count is 0 or neither declares a retry.
    """
    own, base = route.retry, integration.retry if integration is not None else None
    if own is None and route.retries is not None:  # an IR built without `retry` (older trees)
        own = m.Retry(attempts=route.retries)
    if own is None and base is None:
        return None
    attempts = own.attempts if own is not None else base.attempts  # type: ignore[union-attr]
    if not attempts:
        return None

    def pick(field: str) -> object:
        value = getattr(own, field, None) if own is not None else None
        if value in (None, ()) and base is not None:
            value = getattr(base, field)
        return value

    backoff_from = own if own is not None and own.backoff_min is not None else base
    on = pick("on") or ("5xx",)
    return m.Retry(
        attempts=attempts,
        backoff_min=backoff_from.backoff_min if backoff_from is not None else None,
        backoff_max=backoff_from.backoff_max if backoff_from is not None else None,
        on=tuple(dict.fromkeys(on)),  # type: ignore[call-overload]
        per_try_timeout=pick("per_try_timeout"),  # type: ignore[arg-type]
    )
