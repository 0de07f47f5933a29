"""The decision log's hash chain: the line format, reading lines back, finding a chain's head.

Every line of a decision log is one JSON object that starts with
`{"seq":N,"prev":"<64 hex>"`: `seq` is the record's position in its chain
(0 for the first record) and `prev` is the sha256 of the exact bytes of the
previous record's line (without its newline), or `GENESIS` for the first record.
So removing, inserting, reordering, duplicating or editing a line breaks a link
that `mcpdsl logs verify` (`mcpdsl.engine.log_verify`) can point at.

Two optional writer fields follow `prev` when the writer had trouble:
`dropped` (records lost to write errors since the previous line) and
`skipped` (`{"lines": n, "bytes": b}`: the n lines, b bytes with their
newlines, directly before this line are not records: a torn tail found when
the log was opened after a crash, or the fragment of a write that failed).

This module is shared by the writer (`decision_log.py`) and the verifier and
reads files in bounded chunks: a hostile file (binary, a gigabyte without a
newline) costs time, never unbounded memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

#: `prev` of the first record of a chain.
GENESIS = "0" * 64

#: Lines longer than this are never parsed (the writer never writes one).
MAX_LINE = 4 * 1024 * 1024

#: How far back from its end a log is searched for its last record when it is opened.
MAX_TAIL_SCAN = 64 * 1024 * 1024

_CHUNK = 1 << 20
_HEX = frozenset("0123456789abcdef")


class DecisionLogError(Exception):
    """A decision-log file that cannot be appended to (the message says why)."""


def line_hash(line: bytes) -> str:
    """The hash a successor's `prev` carries: sha256 of the line's bytes without newline."""
    return hashlib.sha256(line).hexdigest()


@dataclass(frozen=True, slots=True)
class Head:
    """What the next record of a chain continues from."""

    seq: int  # the next record's seq
    prev: str  # the next record's prev


@dataclass(frozen=True, slots=True)
class Link:
    """The chain fields of one parsed line."""

    seq: int
    prev: str
    dropped: int = 0
    skipped_lines: int = 0
    skipped_bytes: int = 0


def parse_link(line: bytes) -> Link | str:
    """The chain fields of a line, or why the line is not a decision record."""
    if len(line) > MAX_LINE:
        return f"the line is longer than {MAX_LINE // (1024 * 1024)} MiB"
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"the line is not UTF-8 text (byte {exc.start + 1})"
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return "the line is not JSON"
    if not isinstance(data, dict):
        return "the line is not a JSON object"
    seq, prev = data.get("seq"), data.get("prev")
    if type(seq) is not int or seq < 0:
        return "the line has no `seq` (a non-negative integer)"
    if not isinstance(prev, str) or len(prev) != 64 or not set(prev) <= _HEX:
        return "the line has no `prev` (64 lowercase hex digits)"
    dropped = data.get("dropped", 0)
    skipped = data.get("skipped", {})
    lines = skipped.get("lines", 0) if isinstance(skipped, dict) else None
    size = skipped.get("bytes", 0) if isinstance(skipped, dict) else None
    if type(dropped) is not int or dropped < 0 or type(lines) is not int or type(size) is not int:
        return "the line's `dropped` or `skipped` is not a count"
    return Link(seq, prev, dropped, max(lines, 0), max(size, 0))


@dataclass(frozen=True, slots=True)
class RawLine:
    """One line of a file as read: where it is and what it hashes to."""

    number: int  # 1-based
    offset: int  # byte offset of its first byte
    size: int  # bytes, its newline included when it has one
    terminated: bool  # ends with a newline
    digest: str  # sha256 of the line without its newline
    content: bytes | None  # the bytes, None when longer than MAX_LINE


def read_lines(stream: BinaryIO) -> Iterator[RawLine]:
    """Every line of a binary stream, hashed while read; long lines are not kept."""
    number, offset = 0, 0
    hasher = hashlib.sha256()
    held: list[bytes] = []
    held_size = 0
    overflow = False
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            break
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            hasher.update(piece)
            held_size += len(piece)
            if not overflow:
                if held_size > MAX_LINE:
                    overflow, held = True, []
                else:
                    held.append(piece)
            if end < 0:
                break
            number += 1
            yield RawLine(
                number, offset, held_size + 1, True, hasher.hexdigest(),
                None if overflow else b"".join(held),
            )  # fmt: skip
            offset += held_size + 1
            hasher, held, held_size, overflow = hashlib.sha256(), [], 0, False
            start = end + 1
    if held_size:
        number += 1
        content = None if overflow else b"".join(held)
        yield RawLine(number, offset, held_size, False, hasher.hexdigest(), content)


@dataclass(frozen=True, slots=True)
class Tail:
    """An existing log's end: the chain head and the junk after its last record."""

    head: Head
    junk_lines: int  # lines after the last record (a torn line counts as one)
    junk_bytes: int
    torn: bool  # the file does not end with a newline


def find_tail(path: str) -> Tail | None:
    """The end of an existing log, None if it is absent or empty.

    The junk is what follows the last record: a torn line left by a crash (or
    lines that are not records).  The writer never removes it: the next record
    terminates it with a newline and acknowledges it in its `skipped` field.  A
    non-empty file without any record near its end is refused, so a wrong path
    (a config file, a binary) is never appended to.  Raises `DecisionLogError`
    (also for a directory or an unreadable file).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the open
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DecisionLogError(f"cannot read `{path}`: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "rb") as f:
            status = os.fstat(f.fileno())
            if stat.S_ISDIR(status.st_mode):
                raise DecisionLogError(f"cannot use `{path}`: it is a directory")
            if not stat.S_ISREG(status.st_mode) or status.st_size == 0:
                return None  # empty, or a pipe or device: nothing to continue from
            size = status.st_size
            return _scan_tail(f, size, path)
    except OSError as exc:
        raise DecisionLogError(f"cannot read `{path}`: {exc.strerror}") from None


def _scan_tail(f: BinaryIO, size: int, path: str) -> Tail:
    """Walk lines backwards from the end until one parses as a record."""
    torn = _read_at(f, size - 1, 1) != b"\n"
    stop = size if torn else size - 1  # the current line is [start, stop), newline excluded
    junk_lines = 0
    while True:
        newline = _rfind_newline(f, stop, size, path)
        start = newline + 1
        terminated = not (torn and stop == size)
        if terminated and stop - start <= MAX_LINE:
            line = _read_at(f, start, stop - start)
            link = parse_link(line)
            if isinstance(link, Link):
                after = stop + 1
                return Tail(Head(link.seq + 1, line_hash(line)), junk_lines, size - after, torn)
        junk_lines += 1
        if newline < 0:
            raise DecisionLogError(
                f"`{path}` is not a decision log (none of its lines is a record); "
                "refusing to append to it"
            )
        stop = newline


def _rfind_newline(f: BinaryIO, before: int, size: int, path: str) -> int:
    """The offset of the last newline before `before`, -1 if none (bounded look-back)."""
    pos = before
    while pos > 0:
        if size - pos > MAX_TAIL_SCAN:
            raise DecisionLogError(
                f"`{path}` has no decision record in its last "
                f"{MAX_TAIL_SCAN // (1024 * 1024)} MiB; refusing to append to it"
            )
        step = min(_CHUNK, pos)
        pos -= step
        found = _read_at(f, pos, step).rfind(b"\n")
        if found >= 0:
            return pos + found
    return -1


def _read_at(f: BinaryIO, offset: int, size: int) -> bytes:
    f.seek(offset)
    return f.read(size)


def chain_prefix(seq: int, prev: str, dropped: int, skipped: tuple[int, int] | None) -> str:
    """The start of a line: `{"seq":N,"prev":"..."` and the writer's trouble fields, if any."""
    out = f'{{"seq":{seq},"prev":"{prev}"'
    if dropped:
        out += f',"dropped":{dropped}'
    if skipped is not None:
        out += f',"skipped":{{"bytes":{skipped[1]},"lines":{skipped[0]}}}'
    return out
