"""Verifying decision logs: which line of which file breaks the hash chain, and how.

The files given are read once, in bounded chunks (`log_chain.read_lines`), and
kept as one small entry per line (its place, sha256 and chain fields; about
900 bytes with the indexes below); the line bytes are not kept.

Findings are coded diagnostics (L01xx, `mcpdsl/diagnostics/codes_log.py`) in
the order of the lines they point at.  Each kind of tampering is explained once,
at the line that was tampered with, not at every link it breaks:

1. lines the writer acknowledged as junk (`skipped`) are set aside (L0108);
2. lines that are not records are reported (L0101; a torn last line: L0107);
3. exact copies of an earlier line are duplicates (L0106);
4. an entry that links by hash to the line before it but carries another `seq`
   had its `seq` edited (L0102);
5. among entries claiming the same `seq`, the one its successor links to is
   genuine, the others were inserted (L0105);
6. entries outside the longest run of increasing `seq` were moved (L0104) if
   they link to the chain by hash, inserted (L0105) if not;
7. the rest, in `seq` order, is walked link by link: a `seq` gap is a removal
   (L0103), a hash mismatch an edit (L0102) of the line the next link clears.

What a chain cannot show (docs/decision-log.md): an edit of the newest entry
and removal of the newest entries leave no broken link; `--anchor` compares
with a head recorded elsewhere.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from mcpdsl.diagnostics import Diagnostic, Severity
from mcpdsl.diagnostics.codes import CODES
from mcpdsl.engine.log_chain import (
    GENESIS,
    MAX_LINE,
    DecisionLogError,
    Link,
    parse_link,
    read_lines,
)
from mcpdsl.source import Span

TOO_LONG = f"the line is longer than {MAX_LINE // (1024 * 1024)} MiB"

#: A file with more lines that are not records than this is refused as a whole.
MAX_BAD_LINES = 10_000


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of one file, as the verifier keeps it."""

    file: int  # index into the files, oldest first
    number: int  # line number, 1-based
    size: int  # bytes, newline included
    terminated: bool
    digest: str
    link: Link | None
    why: str = ""  # why the line is not a record


@dataclass(frozen=True)
class Verification:
    """What `verify` found: diagnostics, and the chain it could follow."""

    files: tuple[str, ...]  # as read, oldest first
    diagnostics: tuple[Diagnostic, ...]
    lines: int
    records: int  # entries of the chain (moved ones included)
    first_seq: int | None
    last_seq: int | None
    head: str | None  # sha256 of the newest chain entry's line: an anchor to keep

    @property
    def errors(self) -> int:
        return sum(1 for d in self.diagnostics if d.severity is Severity.ERROR)

    @property
    def warnings(self) -> int:
        return sum(1 for d in self.diagnostics if d.severity is Severity.WARNING)


def rotated_set(path: str) -> list[str]:
    """FILE.N, ..., FILE.1, FILE: the files a rotated log consists of, oldest first."""
    older: list[str] = []
    n = 1
    while os.path.lexists(f"{path}.{n}"):
        older.append(f"{path}.{n}")
        n += 1
    return [*reversed(older), path]


def read_file(path: str, index: int) -> list[Entry]:
    """Every line of one file; raises `DecisionLogError` when it cannot be read or is no log."""
    entries: list[Entry] = []
    bad = 0
    try:
        with open(path, "rb") as f:
            for line in read_lines(f):  # one line in memory at a time
                parsed = parse_link(line.content) if line.content is not None else TOO_LONG
                link = parsed if isinstance(parsed, Link) else None
                why = parsed if isinstance(parsed, str) else ""
                bad += link is None
                if bad > MAX_BAD_LINES:  # millions of empty lines must not exhaust memory
                    raise DecisionLogError(
                        f"`{path}` is not a decision log: more than {MAX_BAD_LINES} of its "
                        f"lines are not records (line {line.number}: {why})"
                    )
                entries.append(
                    Entry(index, line.number, line.size, line.terminated, line.digest, link, why)
                )
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if isinstance(exc, IsADirectoryError):
            reason = "it is a directory"
        raise DecisionLogError(f"cannot read `{path}`: {reason}") from None
    if entries and all(e.link is None for e in entries):
        raise DecisionLogError(
            f"`{path}` is not a decision log: none of its {len(entries)} lines is a record "
            f"(line 1: {entries[0].why})"
        )
    return entries


def verify(
    paths: Sequence[str], anchors: Sequence[tuple[int, str]] = (), *, ordered: bool = False
) -> Verification:
    """Verify one chain spread over `paths`; raises `DecisionLogError` for an unreadable file.

    Files are put in chain order by the `seq` of their first record (an empty
    file last) unless `ordered` (then they are taken as given, oldest first).
    """
    per_file = [read_file(p, i) for i, p in enumerate(paths)]
    order = list(range(len(paths)))
    if not ordered:
        order.sort(key=lambda i: _first_seq(per_file[i]))
    files = tuple(paths[i] for i in order)
    entries: list[Entry] = []
    for new, old in enumerate(order):
        entries += [_renumber(e, new) for e in per_file[old]]
    return _Verifier(files, entries).run(anchors)


def _first_seq(entries: list[Entry]) -> float:
    return next((e.link.seq for e in entries if e.link is not None), float("inf"))


def _renumber(e: Entry, file: int) -> Entry:
    return Entry(file, e.number, e.size, e.terminated, e.digest, e.link, e.why)


@dataclass
class _Verifier:
    files: tuple[str, ...]
    entries: list[Entry]
    found: list[tuple[int, Diagnostic]] = field(default_factory=list)
    out: set[int] = field(default_factory=set)  # indices set aside (not chain candidates)
    malformed: set[int] = field(default_factory=set)
    edited: set[int] = field(default_factory=set)  # links FROM these are not checked
    seq: dict[int, int] = field(default_factory=dict)  # effective seq by index

    # ------------------------------------------------------------ reporting

    def where(self, i: int) -> str:
        e = self.entries[i]
        return f"{self.files[e.file]}:{e.number}"

    def line_ref(self, i: int, of: int) -> str:
        """`line N` when `i` is in the same file as `of`, else `FILE:N`."""
        e = self.entries[i]
        if e.file == self.entries[of].file:
            return f"line {e.number}"
        return f"`{self.where(i)}`"

    def report(
        self, i: int, code: str, message: str, note: str = "", help: str | None = None
    ) -> None:
        e = self.entries[i]
        self.found.append(
            (
                i,
                Diagnostic(
                    code=code,
                    severity=CODES[code].severity,
                    message=message,
                    span=Span.point(self.files[e.file], e.number, 1),
                    notes=(note,) if note else (),
                    help=help,
                ),
            )
        )

    # ------------------------------------------------------------ passes

    def run(self, anchors: Sequence[tuple[int, str]]) -> Verification:
        self.acknowledged()
        self.not_records()
        self.duplicates()
        self.seq_edits()
        self.collisions()
        chain = self.order()
        self.walk(chain)
        self.check_anchors(chain, anchors)
        self.found.sort(key=lambda item: item[0])
        last = chain[-1] if chain else None
        return Verification(
            files=self.files,
            diagnostics=tuple(d for _, d in self.found),
            lines=len(self.entries),
            records=len(chain),
            first_seq=self.seq[chain[0]] if chain else None,
            last_seq=self.seq[last] if last is not None else None,
            head=self.entries[last].digest if last is not None else None,
        )

    def acknowledged(self) -> None:
        """Lines a record's `skipped` counts exactly are the writer's own junk (L0108)."""
        for i, e in enumerate(self.entries):
            if e.link is None or not e.link.skipped_lines:
                continue
            n = e.link.skipped_lines
            span = range(i - n, i)
            if i - n < 0 or any(self.entries[j].file != e.file for j in span):
                continue
            if sum(self.entries[j].size for j in span) != e.link.skipped_bytes:
                continue
            self.out.update(span)
            self.report(
                i - n, "L0108",
                f"{n} line{'s' if n != 1 else ''} skipped by the writer",
                f"line {e.number} acknowledges them ({e.link.skipped_bytes} bytes): a torn "
                "line left by a crash or a failed write, kept on disk",
            )  # fmt: skip

    def not_records(self) -> None:
        last = len(self.entries) - 1
        for i, e in enumerate(self.entries):
            if e.link is not None or i in self.out:
                continue
            self.out.add(i)
            self.malformed.add(i)
            if i == last and not e.terminated and e.file == len(self.files) - 1:
                self.report(
                    i, "L0107", "the last entry is truncated",
                    "the file ends in the middle of this line (the writer stopped: a crash "
                    "or a full disk); the entries before it are intact",
                    "the writer acknowledges this line when it opens the log again",
                )  # fmt: skip
            else:
                self.report(i, "L0101", "line is not a decision record", e.why)

    def duplicates(self) -> None:
        seen: dict[str, int] = {}
        for i, e in enumerate(self.entries):
            if i in self.out:
                continue
            first = seen.setdefault(e.digest, i)
            if first != i:
                self.out.add(i)
                self.report(i, "L0106", f"entry duplicates {self.line_ref(first, i)}",
                            f"both lines carry seq {e.link.seq if e.link else '?'}")  # fmt: skip

    def candidates(self) -> list[int]:
        return [i for i in range(len(self.entries)) if i not in self.out]

    def link(self, i: int) -> Link:
        link = self.entries[i].link
        assert link is not None
        return link

    def seq_edits(self) -> None:
        """An entry linking by hash to its physical predecessor must carry the next seq."""
        previous: int | None = None
        for i in self.candidates():
            self.seq[i] = self.link(i).seq
            if previous is not None and self.link(i).prev == self.entries[previous].digest:
                expected = self.seq[previous] + 1
                if self.seq[i] != expected:
                    self.report(
                        i, "L0102", "entry changed after it was written",
                        f"its `seq` is {self.seq[i]}, but it links by hash to "
                        f"{self.line_ref(previous, i)} (seq {self.seq[previous]}): "
                        f"it was written as seq {expected}",
                    )  # fmt: skip
                    self.seq[i] = expected
                    self.edited.add(i)
            previous = i

    def collisions(self) -> None:
        """Of several entries with one seq, keep the one the chain links to."""
        first: dict[int, int] = {}
        by_seq: dict[int, list[int]] = {}  # only the seqs carried by more than one entry
        for i in self.candidates():
            j = first.setdefault(self.seq[i], i)
            if j != i:
                by_seq.setdefault(self.seq[i], [j]).append(i)
        for s, group in list(by_seq.items()):
            after = {self.link(j).prev for j in _carrying(s + 1, first, by_seq)}
            before = {self.entries[j].digest for j in _carrying(s - 1, first, by_seq)}
            linked = [i for i in group if self.entries[i].digest in after]
            linked = linked or [i for i in group if self.link(i).prev in before]
            genuine = (linked or group)[0]
            for i in group:
                if i != genuine:
                    self.out.add(i)
                    self.report(
                        i, "L0105", "entry not part of the chain",
                        f"{self.line_ref(genuine, i)} carries seq {s} and the chain links "
                        "through it: this line was inserted",
                    )  # fmt: skip

    def order(self) -> list[int]:
        """Entries outside the longest increasing run of seq were moved or inserted."""
        cands = self.candidates()
        keep = set(_longest_increasing([self.seq[i] for i in cands]))
        kept = [cands[k] for k in sorted(keep)]
        chain = list(kept)
        if len(kept) == len(cands):
            return chain  # already in order (the common case: no index needed)
        digests = {self.entries[i].digest: i for i in kept}
        prevs = {self.link(i).prev: i for i in kept}
        for k, i in enumerate(cands):
            if k in keep:
                continue
            e, s = self.entries[i], self.seq[i]
            pred = digests.get(self.link(i).prev)
            succ = prevs.get(e.digest)
            if (pred is not None and self.seq[pred] == s - 1) or (
                succ is not None and self.seq[succ] == s + 1
            ):
                seqs = [self.seq[j] for j in kept]
                at = bisect.bisect_left(seqs, s)
                place = (
                    f"after {self.line_ref(kept[at - 1], i)} (seq {seqs[at - 1]})" if at > 0
                    else f"before {self.line_ref(kept[0], i)} (seq {seqs[0]})"
                )  # fmt: skip
                self.report(i, "L0104", "entry out of order",
                            f"its seq {s} belongs {place}")  # fmt: skip
                chain.append(i)
            else:
                self.out.add(i)
                self.report(i, "L0105", "entry not part of the chain",
                            f"its seq {s} does not fit where it is and no entry links to it "
                            "or from it: this line was inserted")  # fmt: skip
        chain.sort(key=lambda i: self.seq[i])
        return chain

    def walk(self, chain: list[int]) -> None:
        if not chain:
            return
        first = chain[0]
        if self.seq[first] == 0 and self.link(first).prev != GENESIS and first not in self.edited:
            self.report(first, "L0102", "entry changed after it was written",
                        "the first entry of a chain (seq 0) carries the genesis `prev` "
                        f"({GENESIS[:8]}...)")  # fmt: skip
        for i in chain:
            lost = self.link(i).dropped
            if lost:
                self.report(i, "L0109", f"{lost} record{'s' if lost != 1 else ''} "
                            "dropped by the writer before this line",
                            "the writer could not write them (a write error)")  # fmt: skip
        explained: set[int] = set()  # b whose link from its predecessor is already explained
        for k in range(1, len(chain)):
            a, b = chain[k - 1], chain[k]
            link = self.link(b)
            gap = self.seq[b] - self.seq[a] - 1
            if gap > 0:
                between = sum(1 for j in self.malformed if a < j < b)
                if between != gap:
                    lo, hi = self.seq[a] + 1, self.seq[b] - 1
                    seqs = f"seq {lo}" if lo == hi else f"seq {lo} to {hi}"
                    self.report(b, "L0103",
                                f"{gap} entr{'ies' if gap != 1 else 'y'} missing before this line",
                                f"{seqs} (between {self.line_ref(a, b)} and this line)")  # fmt: skip
                continue
            if link.prev == self.entries[a].digest or a in self.edited or b in explained:
                continue
            c = chain[k + 1] if k + 1 < len(chain) else None
            if c is not None and self.seq[c] != self.seq[b] + 1:
                c = None
            if c is not None and self.link(c).prev == self.entries[b].digest:
                self.report(a, "L0102", "entry changed after it was written",
                            f"{self.line_ref(b, a)} does not carry the sha256 of this line "
                            "in its `prev`")  # fmt: skip
            elif c is not None:
                self.report(b, "L0102", "entry changed after it was written",
                            f"its `prev` is not the sha256 of {self.line_ref(a, b)}, and "
                            f"{self.line_ref(c, b)} does not carry this line's sha256 "
                            "either: this line's `prev` was changed")  # fmt: skip
                explained.add(c)
            else:
                self.report(a, "L0102", "entry changed after it was written",
                            f"{self.line_ref(b, a)} (the newest entry) does not carry the "
                            "sha256 of this line in its `prev` (or its own `prev` was "
                            "changed)")  # fmt: skip

    def check_anchors(self, chain: list[int], anchors: Sequence[tuple[int, str]]) -> None:
        by_seq = {self.seq[i]: i for i in chain}
        for seq, digest in anchors:
            i = by_seq.get(seq)
            if i is not None:
                if self.entries[i].digest != digest.lower():
                    self.report(i, "L0110", f"entry seq {seq} does not match its anchor",
                                f"its sha256 is {self.entries[i].digest}, the anchor says "
                                f"{digest.lower()}: the log was rewritten up to here")  # fmt: skip
                continue
            last = chain[-1] if chain else len(self.entries) - 1
            if last < 0:
                self.found.append((-1, _unplaced(f"anchor seq {seq} is not in an empty log")))
                continue
            end = self.seq.get(last, -1)
            note = (
                f"the chain ends at seq {end}: its newest entries were removed"
                if seq > end
                else f"seq {seq} is not among the entries of the files given"
            )
            self.report(last, "L0110", f"anchor seq {seq} is not in the log", note)


def _carrying(seq: int, first: dict[int, int], more: dict[int, list[int]]) -> list[int]:
    """The entries carrying `seq`."""
    if seq in more:
        return more[seq]
    return [first[seq]] if seq in first else []


def _unplaced(message: str) -> Diagnostic:
    return Diagnostic(code="L0110", severity=Severity.ERROR, message=message)


def _longest_increasing(values: list[int]) -> list[int]:
    """Indices of one longest strictly increasing subsequence (patience sorting, O(n log n))."""
    tails: list[int] = []  # values
    tail_at: list[int] = []  # index of each tail
    parent: list[int] = [-1] * len(values)
    for i, v in enumerate(values):
        k = bisect.bisect_left(tails, v)
        if k == len(tails):
            tails.append(v)
            tail_at.append(i)
        else:
            tails[k] = v
            tail_at[k] = i
        parent[i] = tail_at[k - 1] if k > 0 else -1
    out: list[int] = []
    i = tail_at[-1] if tail_at else -1
    while i >= 0:
        out.append(i)
        i = parent[i]
    return out[::-1]
