"""One mapping from an Envoy/Istio `CheckRequest` to the canonical request (docs/runtime.md).

Envoy's ext_authz and Istio's CUSTOM action send a `CheckRequest`; as JSON
(protojson field names, what the OPA-Envoy plugin gives Rego as `input`) it
carries the HTTP method, target and headers, the peer's address and verified
SPIFFE id, the destination, the verified JWT payloads (`metadataContext`,
namespace `envoy.filters.http.jwt_authn`, key = provider) and the route's
context extensions.  `to_request` turns it into the request of
docs/semantics.md, reading only what the door *verified*; the generated Rego
(`targets/opa/envoy.rego.j2`) does the same from the same table
(`mcpdsl.ir.door.DoorMapping`, in `data.mcp.meta.doors`), and
tests/engine/test_checkrequest_differential.py holds the two to agreement.

* principal: the first accepted provider (the gateway's order) whose payload
  is present: `type` (its `principal_type`, or the `type_claim`'s value),
  `id`, `email`, `groups`, `provider`, `issuer`; a claim that is missing or
  not of its type (a string; for `groups` a list of strings) gives no
  attribute.  Otherwise the peer's SPIFFE id: a known service is
  `{"type": "service", "id": NAME, "identity": URI}`, another id is
  `{"identity": URI}`, no peer is `{}`.  Never a plain header.
* `request.auth.mfa`: the provider's `mfa_claim` holds one of `mfa_values`.
* `request.path`/`request.query`: `split_target` of the target.
* `source`: `ip` (the direct peer address), `namespace` (of the peer's id).
* `context`: only the gateway's trusted headers, typed; one with `sources`
  counts only when the peer address is in one of them.
* `resource`: the route's (edge, `mcpdsl.route`) or the destination
  service's (east-west).

What does not fit (a section of the wrong type, a value too long, a query
that is not valid percent-encoded UTF-8) is *refused*: `Refused(reason)`,
which `decide` turns into the evaluator's refusal (a deny with the reason).

`to_request`, `mapped` and `request_for` build the whole request (the
decision server logs it).  `decide` builds only what the policies read
(`door_reads`): every check still runs, in the same order, so it refuses
exactly what they refuse and decides exactly as `authorize` of the whole
request; `Decision.explain()` maps the CheckRequest in full when asked.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, partial
from typing import Any
from urllib.parse import unquote

from mcpdsl.evaluate.closures import parse_ip
from mcpdsl.evaluate.policy import Decision, PreparedPolicies, refused
from mcpdsl.evaluate.target import split_target
from mcpdsl.evaluate.values import Refused
from mcpdsl.ir.door import (
    BAD_ESCAPE_PATTERN,
    GATEWAY_KEY,
    INDEX_PATTERN,
    JWT_NAMESPACE,
    MAX_GROUPS,
    MAX_HEADERS,
    MAX_QUERY_PARAMETERS,
    MAX_TEXT,
    MESH_DOOR,
    NUMBER_PATTERN,
    REFUSALS,
    ROUTE_KEY,
    Claims,
    DoorMapping,
    Trusted,
    door_mapping,
    doors,
)
from mcpdsl.ir.reads import attrs
from mcpdsl.ir.workload import parse_spiffe

__all__ = [
    "Refused",
    "decide",
    "door_mapping",
    "doors",
    "mapped",
    "principal_reader",
    "request_for",
    "select_door",
    "to_request",
]

_NUMBER = re.compile(NUMBER_PATTERN)
_INDEX = re.compile(INDEX_PATTERN)
_BAD_ESCAPE = re.compile(BAD_ESCAPE_PATTERN)
_ABSENT: Any = object()

NOT_OBJECT = REFUSALS["not_object"]
NO_ATTRIBUTES = REFUSALS["no_attributes"]
BAD_EXTENSIONS = REFUSALS["bad_extensions"]
UNKNOWN_GATEWAY = REFUSALS["unknown_gateway"]
NO_HTTP = REFUSALS["no_http"]
BAD_METHOD = REFUSALS["bad_method"]
BAD_PATH = REFUSALS["bad_path"]
BAD_HEADERS = REFUSALS["bad_headers"]
MANY_HEADERS = REFUSALS["many_headers"]
BAD_HEADER = REFUSALS["bad_header"]
BAD_PEER = REFUSALS["bad_peer"]
BAD_IP = REFUSALS["bad_ip"]
BAD_DESTINATION = REFUSALS["bad_destination"]
TOO_LONG = REFUSALS["too_long"]
MANY_PARAMETERS = REFUSALS["many_parameters"]
BAD_QUERY = REFUSALS["bad_query"]
UNKNOWN_ROUTE = REFUSALS["unknown_route"]
BAD_METADATA = REFUSALS["bad_metadata"]
BAD_JWT = REFUSALS["bad_jwt"]
BAD_PAYLOAD = REFUSALS["bad_payload"]


def _what(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "not JSON"


def _shape(check: Any) -> tuple[dict[str, Any], Any]:
    """The CheckRequest's `attributes` and `contextExtensions` (or `_ABSENT`); raises `Refused`."""
    if type(check) is not dict:
        raise Refused(NOT_OBJECT.format(_what(check)))
    attributes = check.get("attributes")
    if type(attributes) is not dict:
        raise Refused(NO_ATTRIBUTES)
    extensions = attributes.get("contextExtensions", _ABSENT)
    if extensions is not _ABSENT and type(extensions) is not dict:
        raise Refused(BAD_EXTENSIONS)
    return attributes, extensions


def _door(table: Mapping[str, DoorMapping], extensions: Any) -> DoorMapping:
    """The door `extensions` name (`mcpdsl.gateway`), else the mesh's; raises `Refused`."""
    if extensions is _ABSENT:
        return table[MESH_DOOR]
    gateway = extensions.get(GATEWAY_KEY, _ABSENT)
    if gateway is _ABSENT:
        return table[MESH_DOOR]
    door = table.get(gateway) if type(gateway) is str and gateway != MESH_DOOR else None
    if door is None:
        raise Refused(UNKNOWN_GATEWAY)
    return door


def select_door(table: Mapping[str, DoorMapping], check: Any) -> DoorMapping:
    """The door a CheckRequest came through: its gateway's (`mcpdsl.gateway`), else the mesh's."""
    return _door(table, _shape(check)[1])


def _query(target: str) -> tuple[str, dict[str, str]]:
    """`split_target`, after refusing what not every evaluator decodes alike.

    A query without `%` decodes to itself (`unquote` leaves such a text as it
    is), so it is split here in one pass; one with escapes is checked, then
    decoded by `split_target`, the one function every door shares.
    """
    bare = target.split("#", 1)[0] if "#" in target else target
    path, _, raw = bare.partition("?")
    if not raw:
        return path, {}
    parts = raw.split("&")
    if len(parts) > MAX_QUERY_PARAMETERS:
        raise Refused(MANY_PARAMETERS)
    if "%" in raw:
        for part in parts:
            if "%" not in part:
                continue
            for piece in part.partition("="):
                if _BAD_ESCAPE.search(piece):  # a `%` without two hex digits
                    raise Refused(BAD_QUERY)
                try:
                    unquote(piece, errors="strict")
                except UnicodeDecodeError as exc:
                    raise Refused(BAD_QUERY) from exc
        return split_target(target)
    query: dict[str, str] = {}
    for part in parts:
        name, _, value = part.partition("=")
        if name and name not in query:  # the first occurrence wins, an empty name is skipped
            query[name] = value
    return path, query


@cache
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr)


def _from_source(t: Trusted, ip: str | None) -> bool:
    if not t.sources:
        return True
    address = parse_ip(ip) if ip and "%" not in ip else None
    if address is None:
        return False
    for cidr in t.sources:
        network = _network(cidr)
        if address.version == network.version and address in network:
            return True
    return False


# ------------------------------------------------------------------ a door, compiled

Principal = Callable[[dict[str, Any]], tuple[dict[str, Any], dict[str, Any]]]
Body = Callable[[dict[str, Any], Any], dict[str, Any]]
Decider = Callable[[PreparedPolicies, dict[str, Any], Any], Decision]
_MEMO_KEY = "evaluate.checkrequest"


#: The attribute paths (root first) a request's reader reads; a part of the
#: canonical request is built when a read is a prefix of it or it of a read.
Reads = frozenset[tuple[str, ...]]
_READS_KEY = "evaluate.checkrequest.reads"


@dataclass(frozen=True, slots=True)
class _Door:
    """A door compiled once for the hot path (`_compiled`).

    `body(attributes, extensions)` is the door's mapping after the shape and
    the door are known (`_body_source`): the canonical request, or `Refused`.
    `full` is the whole mapping; `body` may be the mapping for a set of
    reads (`door_reads`), which refuses exactly what `full` refuses and
    builds the same request less the parts no read reaches; `exact` says
    whether it left nothing out (then `body` is `full`).
    """

    body: Body
    full: Body
    exact: bool
    decide: Decider


def _compiled(door: DoorMapping, reads: Reads | None = None) -> _Door:
    """The door's compiled form for `reads` (None: all), made on first use and kept in its memo.

    Why compiled: the table is data (the Rego reads it too); walking its
    dataclasses for every request costs more than the rest of the mapping, so
    the door becomes one generated function (`_body_source`) with its routes,
    claim readers, header names, types and attribute paths as constants (as
    `closures.getter` does).  Why per reads: what no condition reads need
    not be built (a source, a query map, claims, context headers); the memo
    is keyed by the reads, so policies reading alike share one function.
    Two threads may both compile a door: the results are equal, either is kept.
    """
    key: Any = _MEMO_KEY if reads is None else reads
    found: _Door | None = door.memo.get(key)
    if found is None:
        namespace: dict[str, Any] = {}
        source = _body_source(door, namespace)
        full = _exec("body", source, namespace)
        exact = reads is None or _body_source(door, {}, reads) == source
        ours: dict[str, Any] = {"EXPLAINED": partial, "FULL": full}
        body = full if exact else _exec("body", _body_source(door, ours, reads), ours)
        decider = _exec("decide", _body_source(door, ours, None if exact else reads, True), ours)
        found = _Door(body=body, full=full, exact=exact, decide=decider)
        door.memo[key] = found
    return found


def door_reads(policies: PreparedPolicies) -> Reads:
    """What deciding with `policies` reads of a door's request, kept in their memo.

    Every attribute a condition, risk term or `require` reads (`ir.reads.attrs`),
    and what `authorize_mapped` reads itself: the principal's and resource's
    `type` and `id`, the action, `request.path`, and `request.auth` when an
    obligation may need its proof.  The explanation is not bound by it: it
    reads the full mapping (`authorize_mapped(explained=...)`).
    """
    found: Reads | None = policies.memo.get(_READS_KEY)
    if found is None:
        reads = {
            ("principal", "type"), ("principal", "id"), ("resource", "type"),
            ("resource", "id"), ("action",), ("request", "path"),
        }  # fmt: skip
        for pol in policies.policies:
            if pol.requires:
                reads.add(("request", "auth"))
            for e in pol.ir.conditions():
                reads.update((a.root, *a.path) for a in attrs(e))
        found = frozenset(reads)
        policies.memo[_READS_KEY] = found
    return found


def _reaches(reads: Reads | None, part: tuple[str, ...]) -> bool:
    """Whether a read is `part`, above it or below it (None: every part is read)."""
    if reads is None:
        return True
    n = len(part)
    return any(r[:n] == part or part[: len(r)] == r for r in reads)


def _exec(name: str, lines: list[str], namespace: dict[str, Any]) -> Any:
    exec(compile("\n".join(lines), f"<{name}>", "exec"), namespace)
    return namespace[name]


def _principal_reader(c: Claims) -> Principal:
    """`(principal, request.auth)` from a verified payload of `c` (module doc).

    A claim that is missing or not of its type (a string of at most MAX_TEXT;
    for `groups` a list of at most MAX_GROUPS such strings) gives no attribute.
    """
    namespace: dict[str, Any] = {}
    lines = ["def principal(payload):"]
    lines += ["    " + line for line in _principal_lines(c, "", namespace)]
    lines.append("    return principal, auth")
    fn: Principal = _exec("principal", lines, namespace)
    return fn


def _principal_lines(
    c: Claims, suffix: str, namespace: dict[str, Any], reads: Reads | None = None
) -> list[str]:
    """Statements that set `principal` and `auth` from `payload` (`_principal_reader`).

    The door's generated body inlines them (`_body_source`); `suffix` tells
    apart the constants of several providers in one `namespace`.  With
    `reads`, the claims no read reaches are not read (no claim refuses) and
    `auth` is `{}` when `request.auth` is not read.
    """

    def kept(name: str) -> bool:
        return _reaches(reads, ("principal", name))

    namespace.update({"L": MAX_TEXT, "G": MAX_GROUPS, f"MFA{suffix}": frozenset(c.mfa_values)})
    if c.type_claim is None:
        lines = [f"p = {{'type': {c.principal_type!r}}}"]
    else:
        lines = [
            "p = {}",
            f"v = payload.get({c.type_claim!r})",
            "if type(v) is str and len(v) <= L: p['type'] = v",
        ]
    lines += [
        f"v = payload.get({c.id_claim!r})",
        "if type(v) is str and len(v) <= L: p['id'] = v",
    ]
    if c.email_claim is not None and kept("email"):
        lines += [
            f"v = payload.get({c.email_claim!r})",
            "if type(v) is str and len(v) <= L: p['email'] = v",
        ]
    if c.groups_claim is not None and kept("groups"):
        lines += [
            f"v = payload.get({c.groups_claim!r})",
            "if type(v) is list and len(v) <= G:",
            "    for x in v:",  # a token carries few groups: a loop beats two C passes
            "        if type(x) is not str or len(x) > L: break",
            "    else: p['groups'] = list(v)",
        ]
    if kept("provider"):
        lines.append(f"p['provider'] = {c.provider!r}")
    if kept("issuer"):
        lines.append(f"p['issuer'] = {c.issuer!r}")
    lines.append("principal = p")
    if c.mfa_claim is None or not _reaches(reads, ("request", "auth")):
        lines.append("auth = {}")
    else:
        lines += [
            f"v = payload.get({c.mfa_claim!r})",
            f"if type(v) is str: auth = {{'mfa': v in MFA{suffix}}}",
            "elif type(v) is list:",
            "    proven = False",
            "    for x in v:",
            f"        if type(x) is str and x in MFA{suffix}:",
            "            proven = True",
            "            break",
            "    auth = {'mfa': proven}",
            "else: auth = {'mfa': False}",
        ]
    return lines


@cache
def principal_reader(c: Claims) -> Principal:
    """The reader of one provider's verified payload, shared by every door that verifies tokens.

    The CheckRequest door reads the payload Envoy verified; the MCP gateway
    (`mcpdsl serve`, `/mcp`) the payload it verified itself: one claim mapping.
    """
    return _principal_reader(c)


def _context_lines(trusted: tuple[Trusted, ...], ip: str, namespace: dict[str, Any]) -> list[str]:
    """Statements that fill `c` (`context`) from `headers`: typed, and only from their sources.

    A value that does not parse as its type gives no attribute; a `number` is
    what NUMBER_PATTERN admits, read as JSON reads it (int, or float with a `.`);
    a header with `sources` counts only when the peer address (the variable
    named `ip`) is in one of them.  `namespace` receives the constants named.
    """
    lines: list[str] = []
    namespace["N"] = _NUMBER.fullmatch
    for i, t in enumerate(trusted):
        target = "c"
        for step in t.attribute[:-1]:
            target += f".setdefault({step!r}, {{}})"
        target += f"[{t.attribute[-1]!r}]"
        test = "v is not None"
        if t.sources:
            namespace[f"S{i}"] = partial(_from_source, t)
            test += f" and S{i}({ip})"
        lines.append(f"v = headers.get({t.header!r})")
        if t.type == "string":
            lines += [f"if {test}: {target} = v"]
        elif t.type == "bool":
            lines += [
                f"if {test}:",
                f"    if v == 'true': {target} = True",
                f"    elif v == 'false': {target} = False",
            ]
        elif t.type == "number":
            lines += [f"if {test} and N(v): {target} = float(v) if '.' in v else int(v)"]
        else:
            lines += [
                f"if {test}:",
                f"    {target} = [x for y in v.split(',') if (x := y.strip(' \\t'))]",
            ]
    return lines


def to_request(door: DoorMapping, check: Any) -> dict[str, Any]:
    """The canonical request a CheckRequest stands for at `door`; raises `Refused` (module doc).

    The checks run in a fixed order (the Rego side reports the same first
    failure): the shape, the door, the HTTP section, the peer, lengths, the
    query, the route, the token metadata.
    """
    attributes, extensions = _shape(check)
    return _body(door, attributes, extensions)


def mapped(table: Mapping[str, DoorMapping], check: Any) -> tuple[DoorMapping, dict[str, Any]]:
    """The door a CheckRequest came through and its canonical request, in one pass."""
    attributes, extensions = _shape(check)
    door = _door(table, extensions)
    return door, _body(door, attributes, extensions)


def request_for(table: Mapping[str, DoorMapping], check: Any) -> dict[str, Any]:
    """`to_request(select_door(table, check), check)` in one pass (the hot path)."""
    return mapped(table, check)[1]


def _body(door: DoorMapping, attributes: dict[str, Any], extensions: Any) -> dict[str, Any]:
    """The checks and the request after the shape and the door (see `to_request`)."""
    plan: _Door = door.memo.get(_MEMO_KEY) or _compiled(door)
    return plan.body(attributes, extensions)


def _body_source(
    door: DoorMapping, namespace: dict[str, Any], reads: Reads | None = None, decider: bool = False
) -> list[str]:
    """The lines of `body(attributes, extensions)`, the whole mapping of one door.

    Why generated: a door's table is fixed when the tree is loaded, so its
    routes, providers and trusted headers can be constants, the providers
    loop unrolled and the trusted headers inlined; what remains is the checks
    themselves, in `to_request`'s order (the Rego's), each one statement.  The
    steps are those of the plain reading (tests/engine/checkrequest_reference.py),
    which tests/engine/test_checkrequest_fast.py holds this to.  `namespace`
    receives the constants the lines name.

    With `reads` (`door_reads`), every check stays (the same refusals, in the
    same order) but a part no read reaches is not built: `request.query`
    (only its checks), `request.auth`, `source`, the principal's other claims
    and `identity`, the context of a trusted header.

    With `decider`, the lines are those of `decide(policies, attributes,
    extensions)`: the same mapping, then the decision of `policies` on it
    (`PreparedPolicies.authorize_parts`, handed what the mapping has at hand),
    explained from the full mapping (`EXPLAINED(FULL, ...)`, set by `_compiled`)
    when `reads` left something out.
    """
    namespace.update(
        A=_ABSENT, R=Refused, L=MAX_TEXT, H=MAX_HEADERS, Q=_query, QMAX=MAX_QUERY_PARAMETERS,
        SPIFFE=parse_spiffe,
        IDS=door.identities,
    )  # fmt: skip
    for name in ("NO_HTTP", "BAD_METHOD", "BAD_PATH", "BAD_HEADERS", "MANY_HEADERS", "BAD_HEADER",
                 "BAD_PEER", "BAD_IP", "BAD_DESTINATION", "TOO_LONG", "UNKNOWN_ROUTE",
                 "BAD_METADATA", "BAD_JWT", "MANY_PARAMETERS"):  # fmt: skip
        namespace[name] = globals()[name]
    lines = [
        "def body(attributes, extensions):",
        "    http = attributes.get('request')",
        "    if type(http) is not dict: raise R(NO_HTTP)",
        "    http = http.get('http')",
        "    if type(http) is not dict: raise R(NO_HTTP)",
        "    method = http.get('method')",
        "    if type(method) is not str: raise R(BAD_METHOD)",
        "    target = http.get('path')",
        "    if type(target) is not str: raise R(BAD_PATH)",
        "    long = len(method) > L or len(target) > L",
        "    headers = http.get('headers', A)",
        "    if type(headers) is not dict:",
        "        if headers is not A: raise R(BAD_HEADERS)",
        "        headers = {}",
        "    elif headers:",
        "        if len(headers) > H: raise R(MANY_HEADERS)",
        # one pass: a value that is not a string is refused here, a long one
        # only after the peer's checks (`long`), as the Rego orders them
        "        for v in headers.values():",
        "            if type(v) is not str: raise R(BAD_HEADER)",
        "            if len(v) > L: long = True",
        "    source_ = attributes.get('source')",
        "    if type(source_) is dict:",
        "        peer = source_.get('principal', '')",
        "        if type(peer) is not str: raise R(BAD_PEER)",
        "        ip = source_.get('address')",  # source.address.socketAddress.address
        "        ip = ip.get('socketAddress') if type(ip) is dict else None",
        "        ip = ip.get('address', '') if type(ip) is dict else ''",
        "        if type(ip) is not str: raise R(BAD_IP)",
        "    else:",
        "        peer = ip = ''",
        "    destination = attributes.get('destination')",
        "    destination = destination.get('principal', '') if type(destination) is dict else ''",
        "    if type(destination) is not str: raise R(BAD_DESTINATION)",
        "    if long or len(peer) > L or len(ip) > L or len(destination) > L: raise R(TOO_LONG)",
    ]
    query = _reaches(reads, ("request", "query"))
    if query:
        lines += [
            "    if '#' in target or '%' in target: path, query = Q(target)",
            "    elif '?' in target:",  # `_query`'s one-pass split, inlined
            "        path, _, raw = target.partition('?')",
            "        query = {}",
            "        if raw:",
            "            parts = raw.split('&')",
            "            if len(parts) > QMAX: raise R(MANY_PARAMETERS)",
            "            for part in parts:",
            "                name, _, value = part.partition('=')",
            "                if name and name not in query: query[name] = value",
            "    else: path, query = target, {}",
        ]
    else:  # the query's checks only: `len(raw.split('&')) > QMAX`, counted
        lines += [
            "    if '#' in target or '%' in target: path = Q(target)[0]",
            "    elif '?' in target:",
            "        path, _, raw = target.partition('?')",
            "        if raw and raw.count('&') >= QMAX: raise R(MANY_PARAMETERS)",
            "    else: path = target",
        ]
    if door.gateway is not None:
        namespace["ROUTES"] = {
            str(i): r for i, r in enumerate(door.routes) if _INDEX.fullmatch(str(i))
        }
        namespace["ROUTE_KEY"] = ROUTE_KEY
        lines += [
            "    index = extensions.get(ROUTE_KEY) if type(extensions) is dict else None",
            "    named = ROUTES.get(index, A) if type(index) is str else A",
            "    if named is A: raise R(UNKNOWN_ROUTE)",
            "    resource = {} if named is None else {'type': named[0], 'id': named[1]}",
        ]
    else:
        lines += [
            "    called = IDS.get(destination) if destination else None",
            "    resource = {} if called is None else {'type': 'service', 'id': called[0]}",
        ]
    lines += ["    principal = None", "    auth = {}"]
    if door.providers:
        namespace["JWT"] = JWT_NAMESPACE
        lines += [
            "    metadata = attributes.get('metadataContext', A)",
            "    if type(metadata) is dict:",
            "        metadata = metadata.get('filterMetadata', A)",
            "        if metadata is not A:",
            "            if type(metadata) is not dict: raise R(BAD_METADATA)",
            "            tokens = metadata.get(JWT, A)",
            "            if tokens is not A:",
            "                if type(tokens) is not dict: raise R(BAD_JWT)",
        ]
        for i, c in enumerate(door.providers):
            namespace[f"P{i}"] = c.provider
            namespace[f"BAD_PAYLOAD{i}"] = BAD_PAYLOAD.format(c.provider)
            lines += [
                f"                payload = tokens.get(P{i}, A)",
                "                if payload is not A:",
                f"                    if type(payload) is not dict: raise R(BAD_PAYLOAD{i})",
            ]
            # the first provider whose payload is present gives the principal
            indent = "                    " if i == 0 else "                        "
            if i > 0:
                lines.append("                    if principal is None:")
            lines += [indent + line for line in _principal_lines(c, str(i), namespace, reads)]
    source = _reaches(reads, ("source",))
    if source:
        lines += [
            "    if peer:",
            "        known = IDS.get(peer)",
            "        if known is not None:",
            "            if principal is None:",
            "                principal = {'type': 'service', 'id': known[0], 'identity': peer}",
            "            source = {'ip': ip, 'namespace': known[1]} if ip else {'namespace': known[1]}",
            "        else:",
            "            if principal is None: principal = {'identity': peer}",
            "            source = {'ip': ip} if ip else {}",
            "            parsed = SPIFFE(peer)",
            "            if parsed is not None: source['namespace'] = parsed.namespace",
            "    else:",
            "        if principal is None: principal = {}",
            "        source = {'ip': ip} if ip else {}",
        ]
    else:  # the peer gives only the principal, when no token did
        identity = ", 'identity': peer" if _reaches(reads, ("principal", "identity")) else ""
        lines += [
            "    if principal is None:",
            "        if peer:",
            "            known = IDS.get(peer)",
            "            if known is not None:",
            f"                principal = {{'type': 'service', 'id': known[0]{identity}}}",
            f"            else: principal = {{{identity[2:]}}}",
            "        else: principal = {}",
        ]
    trusted = tuple(t for t in door.trusted if _reaches(reads, ("context", *t.attribute)))
    lines.append("    c = {}")
    lines += ["    " + line for line in _context_lines(trusted, "ip", namespace)]
    parts = ["'path': path"]
    parts += ["'query': query"] if query else []
    parts += ["'headers': headers"]
    parts += ["'auth': auth"] if _reaches(reads, ("request", "auth")) else []
    lines += [
        "    request = {'principal': principal, 'action': method, 'resource': resource,",
        f"               'request': {{{', '.join(parts)}}},",
        "               'source': source, 'context': c}"
        if source
        else "               'context': c}",
    ]
    if not decider:
        return [*lines, "    return request"]
    lines[0] = "def decide(policies, attributes, extensions):"
    explained = "None" if reads is None else "EXPLAINED(FULL, attributes, extensions)"
    return [
        *lines,
        "    return policies.authorize_parts(request, principal.get('type'), principal.get('id'),",
        "        resource.get('type'), resource.get('id'), method, path, " + explained + ")",
    ]


def decide(policies: PreparedPolicies, table: Mapping[str, DoorMapping], check: Any) -> Decision:
    """The decision for a CheckRequest: its door's canonical request, authorized.

    Never raises on hostile input: a refused CheckRequest is a deny with the
    reason (`Decision.refusal`), as the evaluator refuses a hostile request.
    """
    try:  # `mapped`, inlined; the common shape (a door named, or none) without calls
        attributes: Any = check.get("attributes") if type(check) is dict else None
        extensions = (
            attributes.get("contextExtensions", _ABSENT) if type(attributes) is dict else None
        )
        if type(extensions) is dict and type(gateway := extensions.get(GATEWAY_KEY)) is str:
            door = table.get(gateway) if gateway != MESH_DOOR else None
            if door is None:
                raise Refused(UNKNOWN_GATEWAY)
        else:
            attributes, extensions = _shape(check)
            door = _door(table, extensions)
        reads = policies.memo.get(_READS_KEY) or door_reads(policies)
        plan: _Door = door.memo.get(reads) or _compiled(door, reads)
        # the door builds the request, so `authorize`'s checks of its shape cannot
        # fire; what it leaves out no condition reads (the explanation maps it in full)
        return plan.decide(policies, attributes, extensions)
    except Refused as exc:
        return refused(str(exc))
    except RecursionError:  # pragma: no cover - the JSON decoder bounds nesting first
        return refused("the CheckRequest is nested too deeply")
