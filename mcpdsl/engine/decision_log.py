"""Decision logs: one hash-chained JSON line per decision, with masking.

A record (docs/decision-log.md) is `{"seq", "prev", "time", "digest", "input",
"decision", "rules", "latency_us"}` plus a server's extra fields: `seq` and
`prev` chain it to the previous line (`mcpdsl.engine.log_chain`), `input` is
the request with every masked attribute path replaced by `"***"` (keys compared
case-insensitively, so `Authorization` is masked too), and `digest` is the
sha256 of the canonical JSON (sorted keys, no spaces) of that masked request.
A masked string value is also cut out of every other string of the record that
can carry request data (the input's keys and values, a refusal, the extra
fields), so a secret copied into another attribute never reaches the log.  The
sink is a callable (called with the JSON text of one line) or a file path
(appended to, rotated by size, one line per record, thread-safe).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from mcpdsl.engine.log_chain import (
    GENESIS,
    DecisionLogError,
    Head,
    chain_prefix,
    find_tail,
    line_hash,
)

if TYPE_CHECKING:
    from mcpdsl.evaluate.policy import Decision

__all__ = ["DEFAULT_MASK", "MASK", "DecisionLog", "DecisionLogError", "Sink", "canonical"]

MASK = "***"
DEFAULT_MASK = ("request.headers.authorization",)

#: A record longer than this is written with its input replaced by a note.
MAX_RECORD = 1024 * 1024

#: Fields the writer owns: `extra` cannot override them.
CHAIN_FIELDS = frozenset({"seq", "prev", "dropped", "skipped"})

_log = logging.getLogger("mcpdsl.decision_log")

#: Where records go: a callable taking one line, or a file path.  `Engine` also
#: takes a `DecisionLog` already configured (rotation, masks).
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
    """Every string inside the masked values, longest first.

    Substrings of the mask itself (`*`, `**`) are left out: they cannot be hidden
    behind a mask made of them, and they say nothing about the value.
    """
    out: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, str):
            if v and v not in MASK:
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


def _cut(text: str, secrets: list[str]) -> str:
    """`text` with every (possibly overlapping) occurrence of a secret replaced by `***`.

    Occurrences are found in the original text and merged before replacing, so
    one secret's replacement cannot uncover another; a secret that the masks
    themselves would spell again (one containing `*`) masks the whole string.
    """
    spans: list[tuple[int, int]] = []
    for secret in secrets:
        at = text.find(secret)
        while at >= 0:
            spans.append((at, at + len(secret)))
            at = text.find(secret, at + 1)
    if not spans:
        return text
    spans.sort()
    parts: list[str] = []
    done = 0
    start, end = spans[0]
    for s, e in spans[1:]:
        if s <= end:
            end = max(end, e)
            continue
        parts += [text[done:start], MASK]
        done, start, end = end, s, e
    parts += [text[done:start], MASK, text[end:]]
    out = "".join(parts)
    return MASK if any(secret in out for secret in secrets) else out


def _occurs(secrets: list[str], text: str) -> bool:
    """Whether a secret occurs in a string of the JSON `text` (a cheap test before `_scrub`).

    JSON escapes character by character, so a string containing a secret
    serialises to text containing the secret's own escaped form.
    """
    return any(json.dumps(s, ensure_ascii=False)[1:-1] in text for s in secrets)


def _scrub(node: Any, secrets: list[str]) -> Any:
    if isinstance(node, str):
        return _cut(node, secrets)
    if isinstance(node, dict):
        return {_scrub(k, secrets): _scrub(v, secrets) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_scrub(v, secrets) for v in node]
    return node


class DecisionLog:
    """Writes hash-chained decision records to a callable or a file (docs/decision-log.md).

    Thread-safe: a record is built (masked, serialised) outside the lock; only
    numbering, hashing and the single write of its line happen under it, so
    concurrent callers never interleave, lose or duplicate lines.  The write is
    one `os.write` of the whole line to a file opened for appending (no Python
    buffer that could hold half a line after an error), so `close()` has
    nothing left to flush.  A write that fails (disk full, a sink that raises)
    never raises to the caller: the record is counted in `dropped`, and the
    next line written says how many were lost (`dropped`) and which bytes
    before it are a fragment (`skipped`).

    With `max_bytes`, a file that would grow beyond it is rotated first:
    FILE.(keep-1) -> FILE.keep, ..., FILE -> FILE.1 (each an atomic rename, the
    oldest beyond `keep` is replaced), and the chain continues in the new FILE.
    Opening an existing log continues its chain from its last record (or from
    FILE.1's when FILE is absent or empty after a crash mid-rotation).
    """

    def __init__(
        self,
        sink: Sink,
        mask: Iterable[str] = DEFAULT_MASK,
        *,
        max_bytes: int | None = None,
        keep: int = 5,
    ) -> None:
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        if keep < 0:
            raise ValueError("keep must not be negative")
        self.paths = tuple(tuple(p.lower().split(".")) for p in mask)
        self.max_bytes = max_bytes
        self.keep = keep
        self._lock = threading.Lock()
        self._dropped = 0  # since this log was opened
        self._pending_drops = 0  # since the last line written
        self._junk: tuple[int, int, bool] | None = None  # lines, bytes, needs a newline
        self._fd: int | None = None
        self._closed = False
        self._regular = True
        self._size = 0
        self._head = Head(0, GENESIS)
        self._call: Callable[[str], object] | None = None
        self.path: str | None = None
        if callable(sink):
            self._call = sink
        else:
            self.path = os.fspath(sink)
            self._open()

    # ------------------------------------------------------------ files

    def _open(self) -> None:
        """Open (or create) the file and continue the chain found at its end."""
        assert self.path is not None
        tail = find_tail(self.path)
        if tail is None:  # maybe a crash between a rotation and the first write
            try:
                older = find_tail(f"{self.path}.1")
            except DecisionLogError as exc:  # not ours: a new chain starts
                _log.warning("decision log: not continuing from %s.1: %s", self.path, exc)
                older = None
            if older is not None:
                self._head = older.head
        if tail is not None:
            self._head = tail.head
            if tail.junk_lines:
                self._junk = (tail.junk_lines, tail.junk_bytes, tail.torn)
                _log.warning(
                    "decision log %s ends with %d line(s) that are not records (a crash?); "
                    "they are kept and acknowledged by the next record",
                    self.path,
                    tail.junk_lines,
                )
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as exc:
            raise DecisionLogError(f"cannot open `{self.path}`: {exc.strerror}") from None
        self._fd = fd
        status = os.fstat(fd)
        self._size = status.st_size
        self._regular = stat.S_ISREG(status.st_mode)  # a pipe or device is never rotated

    def _rotate(self) -> None:
        """FILE -> FILE.1 -> ... -> FILE.keep, then a new FILE (called under the lock).

        If a rename fails, writing goes on in whatever FILE is then (the log grows
        beyond `max_bytes` rather than losing records); the error is logged.
        """
        assert self.path is not None and self._fd is not None
        os.close(self._fd)
        self._fd = None
        try:
            for n in range(self.keep - 1, 0, -1):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{self.path}.{n}", f"{self.path}.{n + 1}")
            os.replace(self.path, f"{self.path}.1")
            if self.keep == 0:
                os.remove(f"{self.path}.1")
        except OSError as exc:
            _log.error("decision log: cannot rotate %s: %s", self.path, exc)
        finally:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            self._size = os.fstat(self._fd).st_size

    # ------------------------------------------------------------ records

    @property
    def dropped(self) -> int:
        """Records lost to write errors since this log was opened (a metric for the server)."""
        return self._dropped

    def record(
        self,
        request: Any,
        decision: Decision,
        latency_us: float,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write one record; `extra` (e.g. a server's `decision_id`, `transport`) is merged in.

        Returns the record as written, its `seq` and `prev` included (absent when
        the record was dropped).  Never raises for a write error.
        """
        record = self._build(request, decision, latency_us, extra)
        body = canonical(record)
        if len(body) > MAX_RECORD:
            record["input"] = {"not_logged": f"the request is too large to log ({len(body)} bytes)"}
            record["digest"] = hashlib.sha256(canonical(record["input"]).encode()).hexdigest()
            body = canonical(record)
        with self._lock:
            head = self._head
            skipped = None
            prefix = b""
            if self._junk is not None:
                lines, size, torn = self._junk
                prefix = b"\n" if torn else b""
                skipped = (lines, size + len(prefix))
            line = (
                chain_prefix(head.seq, head.prev, self._pending_drops, skipped) + "," + body[1:]
            ).encode("utf-8", "replace")  # a lone surrogate in `extra`
            if self._write(prefix, line):
                self._head = Head(head.seq + 1, line_hash(line))
                self._pending_drops = 0
                self._junk = None
                record = {"seq": head.seq, "prev": head.prev, **record}
        return record

    def _write(self, prefix: bytes, line: bytes) -> bool:
        """Write one line (under the lock); False when it was dropped."""
        try:
            if self._call is not None:
                self._call(line.decode())
                return True
            if self._closed:
                raise OSError(errno.EBADF, "the decision log is closed")
            if self._fd is None:  # a rotation could not open the new file: try again
                self._fd = os.open(self.path or "", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                self._size = os.fstat(self._fd).st_size
            data = prefix + line + b"\n"
            if (self.max_bytes is not None and self._regular and self._junk is None
                    and self._size > 0 and self._size + len(data) > self.max_bytes):  # fmt: skip
                self._rotate()
            written = 0
            try:
                while written < len(data):
                    written += os.write(self._fd, data[written:])
            finally:
                self._size += written
                if 0 < written < len(data):
                    self._torn(data[:written])
            return True
        except Exception as exc:  # a log never breaks the decision it records
            self._dropped += 1
            self._pending_drops += 1
            if self._dropped == 1 or self._dropped % 10_000 == 0:
                _log.error("decision log: record dropped (%d so far): %s", self._dropped, exc)
            return False

    def _torn(self, fragment: bytes) -> None:
        """Remember the part of a failed write that reached the file (junk after the head)."""
        lines, size, torn = self._junk if self._junk is not None else (0, 0, False)
        ends = fragment.endswith(b"\n")
        lines = lines - torn + fragment.count(b"\n") + (0 if ends else 1)
        self._junk = (lines, size + len(fragment), not ends)

    def _build(
        self,
        request: Any,
        decision: Decision,
        latency_us: float,
        extra: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        """The record without its chain fields: masked, with every secret cut out."""
        from mcpdsl.evaluate.values import Refused, plain_request

        try:
            request = plain_request(request)  # NaN, huge numbers, cycles cannot be logged
        except Refused as exc:
            request = {"not_logged": f"the request is not plain JSON data: {exc}"}
        masked, hidden = mask_request(request, self.paths)
        secrets = _secrets(hidden)
        text = canonical(masked)
        if secrets and _occurs(secrets, text):
            masked = _scrub(masked, secrets)
            text = canonical(masked)
        outcome: dict[str, Any] = {
            "allowed": decision.allowed,
            "enforced": decision.enforced,
            "obligations": list(decision.obligations),
            "risk": _default(decision.risk),
            "default_applied": decision.default_applied,
        }
        if decision.refusal is not None:
            outcome["refusal"] = _scrub(decision.refusal, secrets) if secrets else decision.refusal
        record: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "digest": hashlib.sha256(text.encode()).hexdigest(),
            "input": masked,
            "decision": outcome,
            "rules": list(decision.rules),
            "latency_us": round(latency_us, 3),
        }
        if extra:
            if secrets and _occurs(secrets, canonical(extra)):
                extra = _scrub(dict(extra), secrets)
            for key, value in extra.items():
                if key not in CHAIN_FIELDS:
                    record[key] = value
        return record

    def close(self) -> None:
        """Close the file: every record is already written (nothing is buffered); sync it."""
        with self._lock:
            self._closed = True
            if self._fd is not None:
                with contextlib.suppress(OSError):  # a pipe or device cannot be synced
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None
