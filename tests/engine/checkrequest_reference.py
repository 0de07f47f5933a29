"""The CheckRequest mapping as first written: the oracle of the compiled fast path.

`mcpdsl.evaluate.checkrequest` compiles each door (its providers' claims and
its trusted headers become generated functions) and inlines every step; this
is the plain reading of the same rules (docs/runtime.md), one helper per
step, walking the door table for every request.  tests/engine/
test_checkrequest_fast.py holds the two to the same requests, refusals and
key order.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from functools import cache
from typing import Any
from urllib.parse import unquote

from mcpdsl.evaluate.closures import parse_ip
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
from mcpdsl.ir.workload import parse_spiffe

__all__ = ["Refused", "door_mapping", "doors", "request_for", "select_door", "to_request"]

_NUMBER = re.compile(NUMBER_PATTERN)
_INDEX = re.compile(INDEX_PATTERN)
_BAD_ESCAPE = re.compile(BAD_ESCAPE_PATTERN)
_ABSENT: Any = object()
_STR = {str}

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


def _at(obj: Any, *steps: str) -> Any:
    """The value at `steps`, or `_ABSENT` when a step is missing or not an object."""
    for step in steps:
        if type(obj) is not dict:
            return _ABSENT
        obj = obj.get(step, _ABSENT)
        if obj is _ABSENT:
            return obj
    return obj


def select_door(table: Mapping[str, DoorMapping], check: Any) -> DoorMapping:
    """The door a CheckRequest came through: its gateway's (`mcpdsl.gateway`), else the mesh's."""
    if type(check) is not dict:
        raise Refused(NOT_OBJECT.format(_what(check)))
    attributes = check.get("attributes")
    if type(attributes) is not dict:
        raise Refused(NO_ATTRIBUTES)
    extensions = attributes.get("contextExtensions", _ABSENT)
    if extensions is _ABSENT:
        return table[MESH_DOOR]
    if type(extensions) is not dict:
        raise Refused(BAD_EXTENSIONS)
    gateway = extensions.get(GATEWAY_KEY, _ABSENT)
    if gateway is _ABSENT:
        return table[MESH_DOOR]
    door = table.get(gateway) if type(gateway) is str and gateway != MESH_DOOR else None
    if door is None:
        raise Refused(UNKNOWN_GATEWAY)
    return door


def _query(target: str) -> tuple[str, dict[str, str]]:
    """`split_target`, after refusing what not every evaluator decodes alike."""
    path, query = split_target(target)
    raw = target.split("#", 1)[0].partition("?")[2]
    if not raw:
        return path, query
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
    return path, query


def _text(value: Any) -> bool:
    return type(value) is str and len(value) <= MAX_TEXT


def _texts(items: list[Any]) -> bool:
    return not items or (set(map(type, items)) == _STR and max(map(len, items)) <= MAX_TEXT)


def _principal(c: Claims, payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The principal and `request.auth` a verified payload vouches for."""
    principal: dict[str, Any] = {}
    if c.type_claim is None:
        principal["type"] = c.principal_type
    else:
        kind = payload.get(c.type_claim)
        if type(kind) is str and len(kind) <= MAX_TEXT:
            principal["type"] = kind
    ident = payload.get(c.id_claim)
    if type(ident) is str and len(ident) <= MAX_TEXT:
        principal["id"] = ident
    if c.email_claim is not None:
        email = payload.get(c.email_claim)
        if type(email) is str and len(email) <= MAX_TEXT:
            principal["email"] = email
    if c.groups_claim is not None:
        groups = payload.get(c.groups_claim)
        # every item a string of at most MAX_TEXT (two C passes, no per-item call)
        if type(groups) is list and len(groups) <= MAX_GROUPS and _texts(groups):
            principal["groups"] = list(groups)
    principal["provider"] = c.provider
    principal["issuer"] = c.issuer
    auth: dict[str, Any] = {}
    if c.mfa_claim is not None:
        held = payload.get(c.mfa_claim)
        values = c.mfa_values
        if type(held) is str:
            auth["mfa"] = held in values
        elif type(held) is list:
            auth["mfa"] = any(type(x) is str and x in values for x in held)
        else:
            auth["mfa"] = False
    return principal, auth


def _typed(t: Trusted, value: str) -> Any:
    """A trusted header's value as its declared type; `_ABSENT` when it does not parse."""
    kind = t.type
    if kind == "string":
        return value
    if kind == "bool":
        return True if value == "true" else False if value == "false" else _ABSENT
    if kind == "number":  # the pattern admits exactly what int()/float() read as JSON does
        if not _NUMBER.fullmatch(value):
            return _ABSENT
        return float(value) if "." in value else int(value)
    return [item for x in value.split(",") if (item := x.strip(" \t"))]


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


def _context(door: DoorMapping, headers: dict[str, Any], ip: str | None) -> dict[str, Any]:
    context: dict[str, Any] = {}
    for t in door.trusted:
        raw = headers.get(t.header)
        if raw is None or (t.sources and not _from_source(t, ip)):
            continue
        value = raw if t.type == "string" else _typed(t, raw)
        if value is _ABSENT:
            continue
        attribute = t.attribute
        if len(attribute) == 1:
            context[attribute[0]] = value
            continue
        node = context
        for step in attribute[:-1]:
            node = node.setdefault(step, {})
        node[attribute[-1]] = value
    return context


def to_request(door: DoorMapping, check: Any) -> dict[str, Any]:
    """The canonical request a CheckRequest stands for at `door`; raises `Refused` (module doc).

    The checks run in a fixed order (the Rego side reports the same first
    failure): the shape, the door, the HTTP section, the peer, lengths, the
    query, the route, the token metadata.
    """
    if type(check) is not dict:
        raise Refused(NOT_OBJECT.format(_what(check)))
    attributes = check.get("attributes")
    if type(attributes) is not dict:
        raise Refused(NO_ATTRIBUTES)
    extensions = attributes.get("contextExtensions", _ABSENT)
    if extensions is not _ABSENT and type(extensions) is not dict:
        raise Refused(BAD_EXTENSIONS)
    return _body(door, attributes, extensions)


def request_for(table: Mapping[str, DoorMapping], check: Any) -> dict[str, Any]:
    """`to_request(select_door(table, check), check)` in one pass (the hot path)."""
    if type(check) is not dict:
        raise Refused(NOT_OBJECT.format(_what(check)))
    attributes = check.get("attributes")
    if type(attributes) is not dict:
        raise Refused(NO_ATTRIBUTES)
    extensions = attributes.get("contextExtensions", _ABSENT)
    if extensions is _ABSENT:
        return _body(table[MESH_DOOR], attributes, extensions)
    if type(extensions) is not dict:
        raise Refused(BAD_EXTENSIONS)
    gateway = extensions.get(GATEWAY_KEY, _ABSENT)
    if gateway is _ABSENT:
        return _body(table[MESH_DOOR], attributes, extensions)
    door = table.get(gateway) if type(gateway) is str and gateway != MESH_DOOR else None
    if door is None:
        raise Refused(UNKNOWN_GATEWAY)
    return _body(door, attributes, extensions)


def _body(door: DoorMapping, attributes: dict[str, Any], extensions: Any) -> dict[str, Any]:
    """The checks and the request after the shape and the door (see `to_request`)."""
    http = attributes.get("request")
    http = http.get("http") if type(http) is dict else None
    if type(http) is not dict:
        raise Refused(NO_HTTP)
    method = http.get("method")
    if type(method) is not str:
        raise Refused(BAD_METHOD)
    target = http.get("path")
    if type(target) is not str:
        raise Refused(BAD_PATH)
    headers = http.get("headers", _ABSENT)
    if headers is _ABSENT:
        headers = {}
    elif type(headers) is not dict:
        raise Refused(BAD_HEADERS)
    if len(headers) > MAX_HEADERS:
        raise Refused(MANY_HEADERS)
    long = len(method) > MAX_TEXT or len(target) > MAX_TEXT
    if headers:
        values = headers.values()
        if set(map(type, values)) != _STR:  # one C pass over the values
            raise Refused(BAD_HEADER)
        long = long or max(map(len, values)) > MAX_TEXT
    source_ = attributes.get("source")
    if type(source_) is dict:
        peer = source_.get("principal", "")
        if type(peer) is not str:
            raise Refused(BAD_PEER)
        ip = _at(source_, "address", "socketAddress", "address")
        if ip is _ABSENT:
            ip = ""
        elif type(ip) is not str:
            raise Refused(BAD_IP)
    else:
        peer = ip = ""
    destination = _at(attributes, "destination", "principal")
    if destination is _ABSENT:
        destination = ""
    elif type(destination) is not str:
        raise Refused(BAD_DESTINATION)
    if long or len(peer) > MAX_TEXT or len(ip) > MAX_TEXT or len(destination) > MAX_TEXT:
        raise Refused(TOO_LONG)
    path, query = _query(target) if "?" in target or "#" in target else (target, {})

    resource: dict[str, Any] = {}
    if door.gateway is not None:
        index = extensions.get(ROUTE_KEY) if type(extensions) is dict else None
        if type(index) is not str or not _INDEX.fullmatch(index) or int(index) >= len(door.routes):
            raise Refused(UNKNOWN_ROUTE)
        named = door.routes[int(index)]
        if named is not None:
            resource = {"type": named[0], "id": named[1]}
    elif destination in door.identities:
        resource = {"type": "service", "id": door.identities[destination][0]}

    principal: dict[str, Any] | None = None
    auth: dict[str, Any] = {}
    if door.providers:
        metadata = _at(attributes, "metadataContext", "filterMetadata")
        if metadata is not _ABSENT:
            if type(metadata) is not dict:
                raise Refused(BAD_METADATA)
            tokens = metadata.get(JWT_NAMESPACE, _ABSENT)
            if tokens is not _ABSENT:
                if type(tokens) is not dict:
                    raise Refused(BAD_JWT)
                for c in door.providers:
                    payload = tokens.get(c.provider, _ABSENT)
                    if payload is _ABSENT:
                        continue
                    if type(payload) is not dict:
                        raise Refused(BAD_PAYLOAD.format(c.provider))
                    if principal is None:
                        principal, auth = _principal(c, payload)

    known = door.identities.get(peer) if peer else None
    if principal is None:
        if known is not None:
            principal = {"type": "service", "id": known[0], "identity": peer}
        else:
            principal = {"identity": peer} if peer else {}
    source: dict[str, Any] = {}
    if ip:
        source["ip"] = ip
    if known is not None:
        source["namespace"] = known[1]
    elif peer:
        parsed = parse_spiffe(peer)
        if parsed is not None:
            source["namespace"] = parsed.namespace
    return {
        "principal": principal,
        "action": method,
        "resource": resource,
        "request": {"path": path, "query": query, "headers": headers, "auth": auth},
        "source": source,
        "context": _context(door, headers, ip) if door.trusted else {},
    }
