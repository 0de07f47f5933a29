"""Route a request through a generated Envoy bootstrap the way Envoy would.

`match_route(bootstrap_json, method, path, headers)` reads the generated JSON
(never the IR) and returns the first matching route of the listener's
virtual host, with the path Envoy would forward.  It interprets what the
Envoy target emits: HCM path normalisation (`normalize_path`, `merge_slashes`,
`path_with_escaped_slashes_action`), virtual host domains, the `path`,
`prefix`, `path_separated_prefix` and `safe_regex` path specifiers, header
matchers (exact/prefix/suffix/contains/safe_regex/present, invert), and the
`prefix_rewrite` / `regex_rewrite` of the route action.  Regexes run on
Python's `re`: the generated regexes use only syntax RE2 and `re` read the
same way (test_envoy.py compiles each one with real RE2, in a subprocess,
because `google-re2` and `regopy` abort when loaded into one process).

Normalisation follows Envoy's order (escaped-slash check, then Chromium's
path canonicaliser, then slash merging) and is written here on purpose as
its own character scanner after Chromium's `DoPartialPath` (`IsDot`,
`ClassifyAfterDot`, `BackUpToPreviousSlash`): this module is the oracle the
engine is tested against, so it does not reuse the engine's
`mcpdsl.ir.paths.normalize_request_path` (a segment-wise RFC 3986
implementation); tests/engine/test_engine_route.py compares the two.
Modelled: `%2e` as `.`, a backslash as `/`, dot segments, an escaped NUL being
malformed (400).  Envoy's canonicaliser also percent-encodes characters a
path must not carry raw (space, `"`, non-ASCII, ...) and may decode other
percent-encoded unreserved characters, which this helper does not model:
feed it paths made of RFC 3986 path characters.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

__all__ = ["RequestRejected", "authorize", "match_route", "normalize_path"]

_HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ESCAPED_SLASH = re.compile(r"%2f|%5c", re.IGNORECASE)
_COMPILED: dict[str, Any] = {}


class RequestRejected(Exception):
    """Envoy answers the request itself (e.g. 400 for an escaped slash) before routing."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


def _rx(pattern: str) -> Any:
    found = _COMPILED.get(pattern)
    if found is None:
        found = _COMPILED[pattern] = re.compile(pattern)
    return found


def _split(path: str) -> tuple[str, str]:
    """(path without query or fragment, the rest from `?` or `#`)."""
    cut = min((i for i in (path.find("?"), path.find("#")) if i != -1), default=len(path))
    return path[:cut], path[cut:]


def _is_dot(s: str, i: int) -> int:
    """Chromium `IsDot`: the length of a `.` or `%2e` (any case) at `i`, else 0."""
    if s.startswith(".", i):
        return 1
    return 3 if s[i : i + 3].lower() == "%2e" else 0


def _after_dot(s: str, j: int) -> tuple[str, int]:
    """Chromium `ClassifyAfterDot`: (`cur`/`up`/`name`, input consumed after the first dot)."""
    if j == len(s):
        return "cur", 0
    if s[j] in "/\\":
        return "cur", 1
    second = _is_dot(s, j)
    if second:
        k = j + second
        if k == len(s):
            return "up", second
        if s[k] in "/\\":
            return "up", second + 1
    return "name", 0


def _canonical(bare: str) -> str | None:
    """Chromium's path canonicaliser on the modelled characters; None when malformed."""
    out = [] if bare[:1] in ("/", "\\") else ["/"]
    i = 0
    while i < len(bare):
        ch = bare[i]
        dot = _is_dot(bare, i)
        if dot:
            kind, extra = _after_dot(bare, i + dot) if out and out[-1] == "/" else ("name", 0)
            if kind == "name":
                out.append(".")
            elif kind == "up" and len(out) > 1:  # back up to the previous slash, keeping it
                del out[-1]
                while len(out) > 1 and out[-1] != "/":
                    del out[-1]
            i += dot + extra
            continue
        if ch == "\\":
            out.append("/")
        elif ch == "%" and re.fullmatch(r"[0-9a-fA-F]{2}", bare[i + 1 : i + 3]):
            if bare[i + 1 : i + 3] == "00":
                return None  # an escaped NUL is invalid
            out.append(bare[i : i + 3])  # kept as written, hex case included
            i += 3
            continue
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def normalize_path(path: str, *, dots: bool = True, merge_slashes: bool = True) -> str:
    """Envoy's `normalize_path` (Chromium canonicaliser) then `merge_slashes`, query untouched.

    Raises RequestRejected when the canonicaliser refuses the path (`%00`).
    """
    bare, rest = _split(path)
    if dots:
        canonical = _canonical(bare)
        if canonical is None:
            raise RequestRejected(400, "malformed path")
        bare = canonical
    if merge_slashes:
        bare = re.sub(r"/{2,}", "/", bare)
    return bare + rest


def _hcm(bootstrap: dict[str, Any], listener: int) -> dict[str, Any]:
    chain = bootstrap["static_resources"]["listeners"][listener]["filter_chains"][0]
    for network_filter in chain["filters"]:
        config = network_filter.get("typed_config", {})
        if config.get("@type", "").endswith(_HCM):
            return config  # type: ignore[no-any-return]
    raise ValueError("listener has no http_connection_manager")


def _domain_matches(domain: str, host: str) -> bool:
    domain, host = domain.lower(), host.lower()
    if domain == "*":
        return True
    if domain.startswith("*"):
        return host.endswith(domain[1:]) and len(host) > len(domain) - 1
    if domain.endswith("*"):
        return host.startswith(domain[:-1]) and len(host) > len(domain) - 1
    return domain == host


def _virtual_host(hcm: dict[str, Any], host: str | None) -> dict[str, Any] | None:
    hosts = hcm["route_config"]["virtual_hosts"]
    if host is None:
        return hosts[0] if hosts else None
    if hcm.get("strip_any_host_port") and not host.endswith("]"):
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    exact = [v for v in hosts if any(d.lower() == host.lower() for d in v["domains"])]
    if exact:
        return exact[0]
    for kind in ("suffix", "prefix", "any"):
        for v in hosts:
            for d in v["domains"]:
                shape = "any" if d == "*" else "suffix" if d.startswith("*") else "prefix"
                if shape == kind and d != host and _domain_matches(d, host):
                    return v  # type: ignore[no-any-return]
    return None


def _string_match(matcher: dict[str, Any], value: str) -> bool:
    if matcher.get("ignore_case"):
        value_cmp = value.lower()

        def fold(x: str) -> str:
            return x.lower()
    else:
        value_cmp = value

        def fold(x: str) -> str:
            return x

    if "exact" in matcher:
        return value_cmp == fold(matcher["exact"])
    if "prefix" in matcher:
        return value_cmp.startswith(fold(matcher["prefix"]))
    if "suffix" in matcher:
        return value_cmp.endswith(fold(matcher["suffix"]))
    if "contains" in matcher:
        return fold(matcher["contains"]) in value_cmp
    if "safe_regex" in matcher:
        return _rx(matcher["safe_regex"]["regex"]).fullmatch(value) is not None
    raise ValueError(f"unsupported string matcher {sorted(matcher)}")


def _header_matches(matcher: dict[str, Any], headers: dict[str, str]) -> bool:
    value = headers.get(matcher["name"].lower())
    if value is None:
        if matcher.get("treat_missing_header_as_empty"):
            value = ""
        else:
            return "present_match" in matcher and matcher["present_match"] is False
    if "present_match" in matcher:
        result = bool(matcher["present_match"])
    elif "string_match" in matcher:
        result = _string_match(matcher["string_match"], value)
    else:
        raise ValueError(f"unsupported header matcher {sorted(matcher)}")
    return result is not bool(matcher.get("invert_match"))


def _query_params(full: str) -> dict[str, str]:
    """Envoy's `QueryParamsMulti::parseAndDecodeQueryString`, first value per name.

    Written here from Envoy's behaviour, not with the engine's split: the query
    after the first `?` (the fragment never reaches Envoy's matcher: cut at `#`),
    split on `&`, name and value at the first `=` (no `=`: value ""), each
    percent-decoded with invalid escapes kept as written (`+` is not a space).
    """
    bare = full.split("#", 1)[0]
    if "?" not in bare:
        return {}
    out: dict[str, str] = {}
    for piece in bare.split("?", 1)[1].split("&"):
        if not piece:
            continue
        eq = piece.find("=")
        name, value = (piece, "") if eq < 0 else (piece[:eq], piece[eq + 1 :])
        name, value = _percent_decode(name), _percent_decode(value)
        if name not in out:
            out[name] = value
    return out


def _percent_decode(text: str) -> str:
    raw = bytearray()
    i = 0
    data = text.encode("utf-8")
    while i < len(data):
        if data[i] == 0x25 and i + 2 < len(data) and _is_hex(data[i + 1 : i + 3]):
            raw.append(int(data[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.append(data[i])
            i += 1
    return raw.decode("utf-8", errors="replace")


def _is_hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)


def _query_matches(matcher: dict[str, Any], params: dict[str, str]) -> bool:
    value = params.get(matcher["name"])
    if value is None:
        return False
    if matcher.get("present_match"):
        return True
    if "string_match" in matcher:
        return _string_match(matcher["string_match"], value)
    raise ValueError(f"unsupported query parameter matcher {sorted(matcher)}")


def _path_matches(match: dict[str, Any], full: str) -> bool:
    bare, _ = _split(full)
    if "path" in match:
        return bare == match["path"]
    if "prefix" in match:
        return full.startswith(match["prefix"])
    if "path_separated_prefix" in match:
        p = match["path_separated_prefix"]
        return bare == p or bare.startswith(p + "/")
    if "safe_regex" in match:
        return _rx(match["safe_regex"]["regex"]).fullmatch(bare) is not None
    raise ValueError(f"unsupported path specifier {sorted(match)}")


def _expand(substitution: str, found: Any) -> str:
    """An RE2 rewrite string: `\\N` is group N (unmatched = empty), `\\\\` a backslash."""
    out, i = [], 0
    while i < len(substitution):
        ch = substitution[i]
        if ch == "\\":
            nxt = substitution[i + 1]
            if nxt.isdigit():
                out.append(found.group(int(nxt)) or "")
            elif nxt == "\\":
                out.append("\\")
            else:
                raise ValueError(f"invalid RE2 rewrite string {substitution!r}")
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _rewrite(route: dict[str, Any], full: str) -> str:
    action = route["route"]
    match = route["match"]
    bare, rest = _split(full)
    if "regex_rewrite" in action:
        spec = action["regex_rewrite"]
        rx = _rx(spec["pattern"]["regex"])
        return rx.sub(lambda found: _expand(spec["substitution"], found), bare) + rest
    if "prefix_rewrite" in action:
        new = action["prefix_rewrite"]
        if "prefix" in match:  # the prefix is replaced in the whole :path, query included
            return new + full[len(match["prefix"]) :]
        if "path_separated_prefix" in match:
            return new + full[len(match["path_separated_prefix"]) :]
        return new + rest  # path and safe_regex routes: the whole path is replaced
    return full


def _seconds(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text.removesuffix("s"))


def match_route(
    bootstrap_json: dict[str, Any],
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    *,
    listener: int = 0,
) -> dict[str, Any] | None:
    """The first route Envoy would pick for the request, or None (404).

    Returns `name`, `cluster`, `path` (as forwarded: normalised and rewritten,
    query kept), `timeout` (Decimal seconds or None), `retries` (num_retries
    or None), `retry_on`, `host` (host_rewrite_literal), `hash_policy`,
    `target` (`(kind, "package.name")` from the route metadata) and `index`
    (the route's position in the gateway).  Raises RequestRejected when the
    connection manager answers before routing.
    """
    hcm = _hcm(bootstrap_json, listener)
    rejects = hcm.get("path_with_escaped_slashes_action") == "REJECT_REQUEST"
    if rejects and _ESCAPED_SLASH.search(_split(path)[0]):
        raise RequestRejected(400, "escaped slash in path")
    full = normalize_path(
        path,
        dots=bool(hcm.get("normalize_path")),
        merge_slashes=bool(hcm.get("merge_slashes")),
    )
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    lowered[":method"] = method
    lowered[":path"] = full
    host = lowered.get(":authority", lowered.get("host"))
    vhost = _virtual_host(hcm, host)
    if vhost is None:
        return None
    for route in vhost["routes"]:
        match = route["match"]
        if not _path_matches(match, full):
            continue
        if not all(_header_matches(h, lowered) for h in match.get("headers", [])):
            continue
        query = match.get("query_parameters", [])
        if query and not all(_query_matches(q, _query_params(full)) for q in query):
            continue
        action = route.get("route", {})
        retry = action.get("retry_policy")
        meta = route.get("metadata", {}).get("filter_metadata", {}).get("mcpdsl", {})
        return {
            "name": route.get("name"),
            "cluster": action.get("cluster"),
            "path": _rewrite(route, full),
            "timeout": _seconds(action.get("timeout")),
            "retries": None if retry is None else retry.get("num_retries", 1),
            "retry_on": None if retry is None else retry.get("retry_on"),
            "per_try_timeout": None if retry is None else _seconds(retry.get("per_try_timeout")),
            "host": action.get("host_rewrite_literal"),
            "hash_policy": action.get("hash_policy"),
            "target": (meta["target_kind"], meta["target"]) if meta else None,
            "index": meta.get("index"),
        }
    return None


# ------------------------------------------------------------ access control


def _cidr_contains(cidr: dict[str, Any], ip: str) -> bool:
    import ipaddress

    network = ipaddress.ip_network(f"{cidr['address_prefix']}/{cidr.get('prefix_len', 0)}")
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return address.version == network.version and address in network


def _principal(p: dict[str, Any], req: dict[str, Any]) -> bool:
    if "any" in p:
        return True
    if "and_ids" in p:
        return all(_principal(x, req) for x in p["and_ids"]["ids"])
    if "or_ids" in p:
        return any(_principal(x, req) for x in p["or_ids"]["ids"])
    if "not_id" in p:
        return not _principal(p["not_id"], req)
    if "authenticated" in p:
        peer = req["peer"]
        matcher = p["authenticated"].get("principal_name")
        return peer is not None and (matcher is None or _string_match(matcher, peer))
    if "direct_remote_ip" in p:
        return _cidr_contains(p["direct_remote_ip"], req["source_ip"])
    return _common(p, req)


def _permission(p: dict[str, Any], req: dict[str, Any]) -> bool:
    if "any" in p:
        return True
    if "and_rules" in p:
        return all(_permission(x, req) for x in p["and_rules"]["rules"])
    if "or_rules" in p:
        return any(_permission(x, req) for x in p["or_rules"]["rules"])
    if "not_rule" in p:
        return not _permission(p["not_rule"], req)
    return _common(p, req)


def _common(p: dict[str, Any], req: dict[str, Any]) -> bool:
    if "header" in p:
        return _header_matches(p["header"], req["headers"])
    if "url_path" in p:
        return _string_match(p["url_path"]["path"], _split(req["headers"][":path"])[0])
    raise ValueError(f"unsupported RBAC matcher {sorted(p)}")


def _rbac_denies(rules: dict[str, Any], req: dict[str, Any]) -> bool:
    hit = any(
        any(_permission(x, req) for x in policy["permissions"])
        and any(_principal(x, req) for x in policy["principals"])
        for policy in rules.get("policies", {}).values()
    )
    return hit if rules.get("action", "ALLOW") == "DENY" else not hit


def authorize(
    bootstrap_json: dict[str, Any],
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    *,
    source_ip: str = "10.0.0.1",
    peer: str | None = None,
    listener: int = 0,
) -> str | None:
    """Run the HTTP filters' access control for a request: `allow`, `deny`, `ext_authz`.

    `peer` is the verified URI SAN of the client certificate (None: no mTLS).
    RBAC filters use the route's `typed_per_filter_config` (an RBACPerRoute
    without `rbac` turns the filter off) or the listener-wide config; the
    first filter that denies decides; an enabled ext_authz returns
    `ext_authz` (OPA decides).  None when no route matches (404).
    """
    hcm = _hcm(bootstrap_json, listener)
    found = match_route(bootstrap_json, method, path, headers, listener=listener)
    if found is None:
        return None
    vhost_routes = [r for v in hcm["route_config"]["virtual_hosts"] for r in v["routes"]]
    route = next(r for r in vhost_routes if r.get("name") == found["name"])
    full = normalize_path(
        path, dots=bool(hcm.get("normalize_path")), merge_slashes=bool(hcm.get("merge_slashes"))
    )
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    lowered[":method"] = method
    lowered[":path"] = full
    req = {"headers": lowered, "source_ip": source_ip, "peer": peer}
    per_route = route.get("typed_per_filter_config", {})
    for http_filter in hcm["http_filters"]:
        name = http_filter["name"]
        kind = http_filter["typed_config"]["@type"].rsplit(".", 1)[-1]
        config = per_route.get(name)
        if kind == "RBAC":
            if config is not None:
                rules = config.get("rbac", {}).get("rules")
            else:
                rules = http_filter["typed_config"].get("rules")
            if rules is not None and _rbac_denies(rules, req):
                return "deny"
        elif kind == "ExtAuthz" and not (config is not None and config.get("disabled")):
            return "ext_authz"
    return "allow"
