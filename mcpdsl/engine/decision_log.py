"""Decision logs: one JSON line per `authorize` call, with masking.

A record is `{"time", "digest", "input", "decision", "rules", "latency_us"}`:
`input` is the request with every masked attribute path replaced by `"***"`
(keys compared case-insensitively, so `Authorization` is masked too), and
`digest` is the sha256 of the canonical JSON (sorted keys, no spaces) of that
masked request.  A masked string value is also cut out of every other string
of the record, so a secret copied into another attribute never reaches the
log either (only the logged input carries request data).  The sink is a callable (called with the JSON text of one line)
or a file path (appended to, one line per record, thread-safe).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcpdsl.evaluate.policy import Decision

MASK = "***"
DEFAULT_MASK = ("request.headers.authorization",)

Sink = Callable[[str], object] | str | os.PathLike[str]


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def canonical(value: Any) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default
    )


def mask_request(request: Any, paths: Iterable[tuple[str, ...]]) -> tuple[Any, list[Any]]:
    """The request with masked paths replaced by `***` (copy on write), and the masked values."""
    hidden: list[Any] = []
    out = request
    for path in paths:
        out = _mask(out, path, hidden)
    return out, hidden


def _mask(node: Any, path: tuple[str, ...], hidden: list[Any]) -> Any:
    if not isinstance(node, dict) or not path:
        return node
    head, rest = path[0], path[1:]
    changed: dict[str, Any] | None = None
    for key, value in node.items():
        if not isinstance(key, str) or key.lower() != head:
            continue
        if rest:
            new = _mask(value, rest, hidden)
            if new is value:
                continue
        else:
            hidden.append(value)
            new = MASK
        if changed is None:
            changed = dict(node)
        changed[key] = new
    return node if changed is None else changed


def _secrets(values: list[Any]) -> list[str]:
    """Every string inside the masked values, longest first."""
    out: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, str):
            if v and v != MASK:
                out.add(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)

    for value in values:
        walk(value)
    return sorted(out, key=len, reverse=True)


def _scrub(node: Any, secrets: list[str]) -> Any:
    if isinstance(node, str):
        for s in secrets:
            if s in node:
                node = node.replace(s, MASK)
        return node
    if isinstance(node, dict):
        return {_scrub(k, secrets): _scrub(v, secrets) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_scrub(v, secrets) for v in node]
    return node


class DecisionLog:
    """Writes decision records to a callable or a file."""

    def __init__(self, sink: Sink, mask: Iterable[str] = DEFAULT_MASK) -> None:
        self.paths = tuple(tuple(p.lower().split(".")) for p in mask)
        self._lock = threading.Lock()
        self._file: Any = None
        if callable(sink):
            self._write: Callable[[str], object] = sink
        else:
            self._file = open(os.fspath(sink), "a", encoding="utf-8")  # noqa: SIM115 - kept open
            self._write = self._append

    def _append(self, line: str) -> None:
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def record(
        self,
        request: Any,
        decision: Decision,
        latency_us: float,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write one record; `extra` (e.g. a server's `decision_id`, `transport`) is merged in."""
        from mcpdsl.evaluate.values import Refused, plain_request

        try:
            request = plain_request(request)  # NaN, huge numbers, cycles cannot be logged
        except Refused as exc:
            request = {"not_logged": f"the request is not plain JSON data: {exc}"}
        masked, hidden = mask_request(request, self.paths)
        secrets = _secrets(hidden)
        if secrets:
            masked = _scrub(masked, secrets)
        record = {
            "time": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "digest": hashlib.sha256(canonical(masked).encode()).hexdigest(),
            "input": masked,
            "decision": {
                "allowed": decision.allowed,
                "enforced": decision.enforced,
                "obligations": list(decision.obligations),
                "risk": _default(decision.risk),
                "default_applied": decision.default_applied,
                **({"refusal": decision.refusal} if decision.refusal is not None else {}),
            },
            "rules": list(decision.rules),
            "latency_us": round(latency_us, 3),
        }
        if extra:
            record.update(_scrub(dict(extra), secrets) if secrets else extra)
        self._write(canonical(record))
        return record

    def close(self) -> None:
        if self._file is not None:
            with self._lock:
                self._file.close()
                self._file = None
