"""Codes of `mcpdsl logs verify` (L01xx): what a decision log's hash chain shows.

Kept apart from the front-end table like the build codes: they describe a
decision-log file (docs/decision-log.md), not a policy tree.
"""

from __future__ import annotations

from mcpdsl.diagnostics.model import Code, Severity

_E = Severity.ERROR
_W = Severity.WARNING

LOG_TABLE: tuple[Code, ...] = (
    Code(
        "L0101",
        _E,
        "line is not a decision record",
        "A line of the log is not a decision record: not UTF-8, not JSON, not an object,\n"
        "longer than 4 MiB, or without `seq` and `prev`. The writer never writes such a\n"
        "line except as a torn fragment it acknowledges (L0108), so this line was written\n"
        "by something else or a record was overwritten.\n",
    ),
    Code(
        "L0102",
        _E,
        "entry changed after it was written",
        "The next entry's `prev` is not the sha256 of this line, although the entries'\n"
        "`seq` numbers follow each other: the bytes of this line changed after its\n"
        "successor was written (or, when said, the successor's own `prev` or `seq`).\n"
        "An edit of the newest entry has no successor to betray it: compare the head\n"
        "with an anchor you kept (`--anchor SEQ:SHA256`).\n",
    ),
    Code(
        "L0103",
        _E,
        "entries missing",
        "`seq` jumps over one or more numbers before this line: entries were removed\n"
        "(or a whole rotated file is missing from the files given). The note names the\n"
        "missing sequence numbers.\n",
    ),
    Code(
        "L0104",
        _E,
        "entry out of order",
        "This entry chains correctly to its neighbours by hash, but it is not where its\n"
        "`seq` puts it: lines were moved. The note says where it belongs.\n",
    ),
    Code(
        "L0105",
        _E,
        "entry not part of the chain",
        "No entry of the chain links to this one and it does not link to the chain:\n"
        "it was inserted (another line already carries its `seq`, or its `seq` fits\n"
        "nowhere).\n",
    ),
    Code(
        "L0106",
        _E,
        "entry duplicated",
        "This line is byte for byte an earlier line: the writer never writes the same\n"
        "line twice (every line carries a new `seq`), so it was copied.\n",
    ),
    Code(
        "L0107",
        _W,
        "last entry is truncated",
        "The newest file ends in the middle of a line: the writer stopped while writing\n"
        "(a crash, a full disk). The entries before it are intact; that record is lost.\n"
        "When the writer opens the log again it keeps these bytes, ends them with a\n"
        "newline and acknowledges them in its next record (L0108).\n",
    ),
    Code(
        "L0108",
        _W,
        "lines skipped by the writer",
        "Lines that are not records sit before an entry whose `skipped` field counts\n"
        "them exactly (lines and bytes): the writer found them at the end of the log\n"
        "when it opened it (a crash left a torn line) or a write of its own failed half\n"
        "way. They are kept on disk, never removed; the chain goes around them.\n",
    ),
    Code(
        "L0109",
        _W,
        "records dropped by the writer",
        "The writer could not write some records (disk full, a failing sink) and says so\n"
        "in the `dropped` field of the next line it could write. The decisions were\n"
        "made; their records are lost. A server exports the count as\n"
        "`mcpdsl_decision_log_drops_total`.\n",
    ),
    Code(
        "L0110",
        _E,
        "anchor does not match",
        "An anchor given with `--anchor SEQ:SHA256` (a head you recorded earlier, e.g.\n"
        "from a previous `mcpdsl logs verify`) is not in the chain: the entry with that\n"
        "`seq` has another hash (the log was rewritten up to there), or the log ends\n"
        "before that `seq` (its newest entries were removed).\n",
    ),
)
