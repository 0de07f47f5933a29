"""The decision log's hash chain: writing, rotating, recovering, and finding each tampering."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcpdsl.engine import decision_log as dl
from mcpdsl.engine.decision_log import DecisionLog, DecisionLogError
from mcpdsl.engine.log_chain import GENESIS, find_tail
from mcpdsl.engine.log_verify import Verification, rotated_set, verify
from mcpdsl.evaluate.policy import Decision

ALLOW = Decision(True, (), Decimal(0), ("p/allow-1",), False, True)
SECRET = "Bearer s3cr3t-t0ken"


def req(i: int) -> dict[str, Any]:
    return {
        "principal": {"type": "user", "id": f"u{i}"},
        "request": {"method": "GET", "path": f"/v1/{i}", "headers": {"authorization": SECRET}},
    }


def write(path: Path, n: int, start: int = 0, **kw: Any) -> DecisionLog:
    log = DecisionLog(path, **kw)
    for i in range(start, start + n):
        log.record(req(i), ALLOW, 1.0)
    log.close()
    return log


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def put(path: Path, content: list[bytes]) -> None:
    path.write_bytes(b"".join(content))


def found(result: Verification) -> list[tuple[str, int]]:
    """(code, line) of every finding."""
    return [(d.code, d.span.line if d.span else 0) for d in result.diagnostics]


def check(path: Path, **kw: Any) -> Verification:
    return verify([str(path)], **kw)


@pytest.fixture
def log10(tmp_path: Path) -> Path:
    path = tmp_path / "d.jsonl"
    write(path, 10)
    return path


# ------------------------------------------------------------ the format


def test_records_carry_seq_and_prev_chained_by_line_bytes(log10: Path) -> None:
    raw = [x.rstrip(b"\n") for x in lines(log10)]
    records = [json.loads(x) for x in raw]
    assert [r["seq"] for r in records] == list(range(10))
    assert records[0]["prev"] == GENESIS
    for before, record in zip(raw, records[1:], strict=False):
        assert record["prev"] == hashlib.sha256(before).hexdigest()
    assert all(x.startswith(b'{"seq":') for x in raw)
    result = check(log10)
    assert result.diagnostics == () and result.records == 10
    assert (result.first_seq, result.last_seq) == (0, 9)
    assert result.head == hashlib.sha256(raw[-1]).hexdigest()


def test_record_returns_its_chain_fields_and_extra_cannot_override_them(tmp_path: Path) -> None:
    out: list[str] = []
    log = DecisionLog(out.append)
    first = log.record(req(0), ALLOW, 1.0, {"seq": 99, "prev": "x", "decision_id": "d1"})
    second = log.record(req(1), ALLOW, 1.0)
    assert (first["seq"], first["prev"], first["decision_id"]) == (0, GENESIS, "d1")
    assert second["prev"] == hashlib.sha256(out[0].encode()).hexdigest()
    assert json.loads(out[0])["seq"] == 0


def test_a_huge_request_is_logged_as_a_note(tmp_path: Path) -> None:
    out: list[str] = []
    big = req(0)
    big["context"] = {"blob": "x" * (2 * dl.MAX_RECORD)}
    DecisionLog(out.append).record(big, ALLOW, 1.0)
    record = json.loads(out[0])
    assert "too large to log" in record["input"]["not_logged"]
    assert len(out[0]) < 4096


# ------------------------------------------------------------ tampering, each kind


def test_edited_entry_is_reported_at_its_line(log10: Path) -> None:
    content = lines(log10)
    content[3] = content[3].replace(b'"u3"', b'"u9"')
    put(log10, content)
    assert found(check(log10)) == [("L0102", 4)]


def test_edited_first_entry(log10: Path) -> None:
    content = lines(log10)
    content[0] = content[0].replace(b'"u0"', b'"ux"')
    put(log10, content)
    assert found(check(log10)) == [("L0102", 1)]


def test_edited_prev_field_is_reported_at_that_line(log10: Path) -> None:
    content = lines(log10)
    record = json.loads(content[5])
    content[5] = content[5].replace(record["prev"].encode(), b"f" * 64)
    put(log10, content)
    assert found(check(log10)) == [("L0102", 6)]


def test_edited_seq_field_is_reported_at_that_line(log10: Path) -> None:
    content = lines(log10)
    content[4] = content[4].replace(b'{"seq":4,', b'{"seq":7,')
    put(log10, content)
    assert found(check(log10)) == [("L0102", 5)]


def test_removed_entry_is_reported_before_the_next_line(log10: Path) -> None:
    content = lines(log10)
    del content[4]
    put(log10, content)
    result = check(log10)
    assert found(result) == [("L0103", 5)]
    assert "seq 4" in result.diagnostics[0].notes[0]


def test_removed_run_of_entries(log10: Path) -> None:
    content = lines(log10)
    del content[2:6]
    put(log10, content)
    result = check(log10)
    assert found(result) == [("L0103", 3)]
    assert result.diagnostics[0].message.startswith("4 entries missing")


def test_moved_entry_is_reported_where_it_now_is(log10: Path) -> None:
    content = lines(log10)
    moved = content.pop(2)  # seq 2 ...
    content.insert(6, moved)  # ... now on line 7
    put(log10, content)
    result = check(log10)
    assert found(result) == [("L0104", 7)]
    assert "belongs after line 2" in result.diagnostics[0].notes[0]


def test_swapped_neighbours(log10: Path) -> None:
    content = lines(log10)
    content[4], content[5] = content[5], content[4]
    put(log10, content)
    [(code, line)] = found(check(log10))
    assert code == "L0104" and line in (5, 6)


def test_forged_entry_with_a_taken_seq_is_inserted(log10: Path) -> None:
    content = lines(log10)
    forged = content[4].replace(b'"u4"', b'"admin"')  # same seq and prev as line 5
    content.insert(5, forged)
    put(log10, content)
    assert found(check(log10)) == [("L0105", 6)]


def test_well_forged_entry_is_still_inserted(log10: Path) -> None:
    """A line with the right `seq` and `prev` for its place: the next line betrays it."""
    content = lines(log10)
    previous = content[4].rstrip(b"\n")
    forged = json.loads(previous)
    forged.update(seq=5, prev=hashlib.sha256(previous).hexdigest())
    content.insert(5, json.dumps(forged, separators=(",", ":")).encode() + b"\n")
    put(log10, content)
    assert found(check(log10)) == [("L0105", 6)]


def test_entry_with_a_seq_that_fits_nowhere(log10: Path) -> None:
    content = lines(log10)
    content.insert(3, b'{"seq":424242,"prev":"' + b"a" * 64 + b'"}\n')
    put(log10, content)
    assert found(check(log10)) == [("L0105", 4)]


def test_duplicated_entry(log10: Path) -> None:
    content = lines(log10)
    content.insert(4, content[3])
    content.append(content[1])
    put(log10, content)
    result = check(log10)
    assert found(result) == [("L0106", 5), ("L0106", 12)]
    assert "line 4" in result.diagnostics[0].message


def test_overwritten_line_is_not_a_record(log10: Path) -> None:
    content = lines(log10)
    content[6] = b"\xff\xfe garbage \x00\n"
    put(log10, content)
    result = check(log10)
    assert found(result) == [("L0101", 7)]  # the seq gap it leaves is explained by it
    assert "UTF-8" in result.diagnostics[0].notes[0]


def test_truncated_last_line_is_a_warning_of_its_own(log10: Path) -> None:
    data = log10.read_bytes()
    log10.write_bytes(data[:-40])
    result = check(log10)
    assert found(result) == [("L0107", 10)]
    assert result.errors == 0 and result.records == 9


def test_edit_of_the_newest_entry_needs_an_anchor(log10: Path) -> None:
    head = check(log10)
    content = lines(log10)
    content[-1] = content[-1].replace(b'"u9"', b'"u0"')
    put(log10, content)
    assert check(log10).diagnostics == ()  # the documented limit of a chain
    assert head.last_seq is not None and head.head is not None
    assert found(check(log10, anchors=[(head.last_seq, head.head)])) == [("L0110", 10)]


def test_removal_of_the_newest_entries_needs_an_anchor(log10: Path) -> None:
    head = check(log10)
    put(log10, lines(log10)[:7])
    assert check(log10).diagnostics == ()
    assert head.last_seq is not None and head.head is not None
    result = check(log10, anchors=[(head.last_seq, head.head)])
    assert found(result) == [("L0110", 7)]
    assert "newest entries were removed" in result.diagnostics[0].notes[0]


# ------------------------------------------------------------ appending and recovery


def test_reopening_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    write(path, 5)
    write(path, 5, start=5)
    result = check(path)
    assert result.diagnostics == () and (result.first_seq, result.last_seq) == (0, 9)


def test_a_torn_tail_is_kept_and_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    write(path, 5)
    torn = path.read_bytes()[:-30]
    path.write_bytes(torn)
    write(path, 3, start=5)
    assert path.read_bytes().startswith(torn + b"\n")  # nothing on disk lost
    result = check(path)
    assert found(result) == [("L0108", 5)]
    assert result.errors == 0 and (result.first_seq, result.last_seq, result.records) == (0, 6, 7)


def test_junk_lines_at_the_end_are_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    write(path, 4)
    with path.open("ab") as f:
        f.write(b"\x00\x00\x00\nnot json\n")
    write(path, 2, start=4)
    result = check(path)
    assert found(result) == [("L0108", 5)] and result.errors == 0


@pytest.mark.parametrize("content", [b"hello\n", b"\x00" * 1000, b"[1,2]\n{}\n"])
def test_a_file_that_is_no_log_is_never_appended_to(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(DecisionLogError, match="not a decision log"):
        DecisionLog(path)
    assert path.read_bytes() == content


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DecisionLogError, match="cannot"):
        DecisionLog(tmp_path)


# ------------------------------------------------------------ rotation


def test_rotation_keeps_n_files_and_the_chain_crosses_them(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    write(path, 60, max_bytes=3000, keep=3)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["d.jsonl", "d.jsonl.1", "d.jsonl.2", "d.jsonl.3"]
    for p in tmp_path.iterdir():
        assert 0 < p.stat().st_size <= 3000
    newest_first = json.loads(lines(path)[0])
    assert (
        newest_first["prev"] == hashlib.sha256(lines(tmp_path / "d.jsonl.1")[-1][:-1]).hexdigest()
    )
    result = verify(rotated_set(str(path)), ordered=True)
    assert result.diagnostics == ()
    assert result.last_seq == 59 and result.first_seq is not None and result.first_seq > 0
    shuffled = [str(tmp_path / n) for n in ("d.jsonl.1", "d.jsonl", "d.jsonl.3", "d.jsonl.2")]
    assert verify(shuffled).records == result.records  # any order: sorted by first seq


def test_rotation_keeps_everything_when_keep_is_large(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    write(path, 40, max_bytes=2000, keep=100)
    result = verify(rotated_set(str(path)), ordered=True)
    assert result.diagnostics == () and (result.first_seq, result.records) == (0, 40)
    total = sum(len(lines(Path(p))) for p in rotated_set(str(path)))
    assert total == 40


def test_a_missing_rotated_file_is_a_gap(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    write(path, 40, max_bytes=2000, keep=100)
    files = rotated_set(str(path))
    k = len(files) // 2
    missing = files.pop(k)
    result = verify(files, ordered=True)
    [(code, line)] = found(result)
    assert code == "L0103" and line == 1
    assert result.diagnostics[0].span is not None
    assert result.diagnostics[0].span.file == files[k]
    assert missing not in result.files


def test_reopening_after_a_crash_mid_rotation_continues_from_file_1(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    write(path, 10, max_bytes=100_000)
    os.replace(path, f"{path}.1")  # renamed, new file not yet created
    write(path, 3, start=10, max_bytes=100_000)
    result = verify(rotated_set(str(path)), ordered=True)
    assert result.diagnostics == () and (result.first_seq, result.last_seq) == (0, 12)


# ------------------------------------------------------------ robustness


def test_write_errors_are_counted_as_drops_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "d.jsonl"
    log = DecisionLog(path)
    log.record(req(0), ALLOW, 1.0)
    real = os.write

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dl.os, "write", full)
    for i in range(3):
        record = log.record(req(i), ALLOW, 1.0)  # never raises
        assert "seq" not in record
    monkeypatch.setattr(dl.os, "write", real)
    log.record(req(9), ALLOW, 1.0)
    log.close()
    assert log.dropped == 3
    result = check(path)
    assert found(result) == [("L0109", 2)] and result.errors == 0
    assert json.loads(lines(path)[1])["dropped"] == 3


def test_a_half_written_line_is_acknowledged_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "d.jsonl"
    log = DecisionLog(path)
    log.record(req(0), ALLOW, 1.0)
    real = os.write
    calls = {"n": 0}

    def half(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dl.os, "write", half)
    log.record(req(1), ALLOW, 1.0)
    monkeypatch.setattr(dl.os, "write", real)
    log.record(req(2), ALLOW, 1.0)
    log.close()
    assert log.dropped == 1
    result = check(path)
    assert found(result) == [("L0108", 2), ("L0109", 3)] and result.errors == 0
    assert (result.first_seq, result.last_seq) == (0, 1)


def test_drops_before_the_first_record_are_reported(tmp_path: Path) -> None:
    failing = {"on": True}
    out: list[str] = []

    def sink(line: str) -> None:
        if failing["on"]:
            raise OSError(errno.EIO, "sink down")
        out.append(line)

    log = DecisionLog(sink)
    log.record(req(0), ALLOW, 1.0)
    failing["on"] = False
    log.record(req(1), ALLOW, 1.0)
    path = tmp_path / "d.jsonl"
    path.write_text(out[0] + "\n")
    assert found(check(path)) == [("L0109", 1)]


def test_a_raising_callable_sink_never_breaks_the_caller() -> None:
    def sink(line: str) -> None:
        raise OSError(errno.EIO, "broken pipe")

    log = DecisionLog(sink)
    for i in range(5):
        log.record(req(i), ALLOW, 1.0)
    assert log.dropped == 5


def test_record_after_close_is_a_drop(tmp_path: Path) -> None:
    log = write(tmp_path / "d.jsonl", 1)
    log.record(req(1), ALLOW, 1.0)
    assert log.dropped == 1


def test_concurrent_writers_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    log = DecisionLog(path, mask=())
    threads, per = 8, 12_500
    tiny: dict[str, Any] = {"principal": {"type": "user", "id": "u"}}

    def work(t: int) -> None:
        for i in range(per):
            log.record({**tiny, "n": t * per + i}, ALLOW, 1.0)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    log.close()
    raw = lines(path)
    assert len(raw) == threads * per
    assert sorted(json.loads(x)["input"]["n"] for x in raw) == list(range(threads * per))
    result = check(path)
    assert result.diagnostics == () and result.records == threads * per


def test_concurrent_writers_across_rotations(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    log = DecisionLog(path, mask=(), max_bytes=64 * 1024, keep=1000)

    def work(t: int) -> None:
        for i in range(2500):
            log.record({"n": t * 2500 + i}, ALLOW, 1.0)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    log.close()
    files = rotated_set(str(path))
    assert len(files) > 2
    result = verify(files, ordered=True)
    assert result.diagnostics == () and result.records == 10_000


def test_the_event_loop_and_threads_share_one_log(tmp_path: Path) -> None:
    """The server records from its event loop while other threads (an engine) record too."""
    import asyncio

    path = tmp_path / "d.jsonl"
    log = DecisionLog(path, mask=())

    async def task(t: int) -> None:
        for i in range(500):
            log.record({"n": f"loop-{t}-{i}"}, ALLOW, 1.0)
            await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*(task(t) for t in range(4)))

    worker = threading.Thread(
        target=lambda: [log.record({"n": f"thread-{i}"}, ALLOW, 1.0) for i in range(2000)]
    )
    worker.start()
    asyncio.run(main())
    worker.join()
    log.close()
    assert len(lines(path)) == 4000
    assert check(path).diagnostics == ()


def test_find_tail_of_an_absent_or_empty_file(tmp_path: Path) -> None:
    assert find_tail(str(tmp_path / "none")) is None
    (tmp_path / "empty").write_bytes(b"")
    assert find_tail(str(tmp_path / "empty")) is None


# ------------------------------------------------------------ masking never leaks

_token = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=24) | st.sampled_from(
    ["a*", "*a", "**x", "x***", "***a*", "\\", '"', "\n"]
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(
    secret=_token,
    other=_json,
    where=st.sampled_from(["value", "key", "nested", "refusal", "extra"]),
    case=st.sampled_from(["authorization", "Authorization", "AUTHORIZATION"]),
)
def test_a_masked_secret_never_reaches_the_log(
    secret: str, other: Any, where: str, case: str
) -> None:
    out: list[str] = []
    log = DecisionLog(out.append, mask=("request.headers.authorization", "context.api_key"))
    request: dict[str, Any] = {
        "request": {"headers": {case: "Bearer " + secret}},
        "context": {"api_key": {"k": [secret]}, "other": other},
    }
    decision = ALLOW
    extra: dict[str, Any] = {}
    if where == "value":
        request["context"]["copy"] = f"x{secret}y"
    elif where == "key":
        request["context"][f"k-{secret}"] = 1
    elif where == "nested":
        request["context"]["deep"] = [{"a": [secret + secret]}]
    elif where == "refusal":
        decision = Decision(False, (), Decimal(0), (), True, False, refusal=f"bad {secret}")
    else:
        extra = {"note": secret, secret: "v"}
    log.record(request, decision, 1.0, extra)
    record = json.loads(out[0])
    hidden = {secret, "Bearer " + secret}

    def strings(node: Any) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, dict):
            return [s for k, v in node.items() for s in (*strings(k), *strings(v))]
        if isinstance(node, list):
            return [s for v in node for s in strings(v)]
        return []

    carried = strings(record["input"]) + strings(record["decision"].get("refusal"))
    own = ("decision", "input", "seq", "prev", "digest", "time", "latency_us", "rules")
    carried += strings({k: v for k, v in record.items() if k not in own})
    if secret not in dl.MASK:
        assert not [s for s in carried for h in hidden if h in s]
    assert list(record["input"]["request"]["headers"].values()) == ["***"]


@given(st.text(min_size=12, max_size=40, alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_."))
def test_a_token_shaped_secret_is_nowhere_in_the_line(token: str) -> None:
    out: list[str] = []
    log = DecisionLog(out.append)
    secret = "tok_" + token
    log.record(
        {"request": {"headers": {"Authorization": secret, "x-copy": f"({secret})"}},
         "context": {secret: [secret]}},
        ALLOW, 1.0, {"decision_id": secret},
    )  # fmt: skip
    assert secret not in out[0]


# ------------------------------------------------------------ users of the log


def test_an_engine_takes_a_configured_log(tmp_path: Path) -> None:
    from engine_support import engine_for, request

    path = tmp_path / "d.jsonl"
    log = DecisionLog(path, mask=("context.ssn",), max_bytes=10_000, keep=2)
    engine = engine_for(tmp_path, "policy p {\n  allow any -> any\n}\n", decision_log=log)
    r = request()
    r["context"] = {"ssn": "123-45-6789"}
    engine.authorize(r)
    engine.close()
    assert "123-45-6789" not in path.read_text()
    assert check(path).records == 1


def test_the_server_exports_drops_as_a_metric(tmp_path: Path) -> None:
    import asyncio

    from engine_support import engine_for, request

    from mcpdsl.serve.state import ServerState

    def full(line: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    engine = engine_for(tmp_path, "policy p {\n  allow any -> any\n}\n")
    state = ServerState(engine, log=DecisionLog(full))
    for _ in range(3):
        assert asyncio.run(state.authorize(request())).allowed  # the decision stands
    assert b"mcpdsl_decision_log_drops_total 3.0" in state.metrics.exposition()


# ------------------------------------------------------------ any single tampering, anywhere


def _chain_lines(n: int) -> list[bytes]:
    out: list[str] = []
    log = DecisionLog(out.append)
    for i in range(n):
        log.record(req(i), ALLOW, 1.0)
    return [x.encode() + b"\n" for x in out]


@given(
    n=st.integers(4, 14),
    kind=st.sampled_from(["edit", "remove", "move", "duplicate", "insert"]),
    data=st.data(),
)
def test_any_single_tampering_is_found_at_its_line(
    tmp_path_factory: pytest.TempPathFactory, n: int, kind: str, data: st.DataObject
) -> None:
    content = _chain_lines(n)
    if kind == "edit":  # any line but the newest (no successor: needs an anchor)
        k = data.draw(st.integers(0, n - 2))
        content[k] = content[k].replace(f'"u{k}"'.encode(), b'"someone-else"')
        expected = ("L0102", k + 1)
    elif kind == "remove":  # neither the oldest nor the newest (those need anchors)
        k = data.draw(st.integers(1, n - 2))
        del content[k]
        expected = ("L0103", k + 1)
    elif kind == "move":
        i = data.draw(st.integers(0, n - 1))
        j = data.draw(st.integers(0, n - 1).filter(lambda j: abs(j - i) >= 2))
        content.insert(j, content.pop(i))
        expected = ("L0104", j + 1)
    elif kind == "duplicate":
        i = data.draw(st.integers(0, n - 1))
        j = data.draw(st.integers(i + 1, n))
        content.insert(j, content[i])
        expected = ("L0106", j + 1)
    else:
        i = data.draw(st.integers(0, n - 1))
        content.insert(i + 1, content[i].replace(f'"u{i}"'.encode(), b'"forged"'))
        expected = ("L0105", i + 2)
    path = tmp_path_factory.mktemp("t") / "d.jsonl"
    put(path, content)
    assert found(check(path)) == [expected]


def test_a_device_is_written_to_but_never_rotated() -> None:
    log = DecisionLog(os.devnull, max_bytes=10, keep=2)
    for i in range(5):
        log.record(req(i), ALLOW, 1.0)
    log.close()
    assert log.dropped == 0
    assert not os.path.exists(f"{os.devnull}.1")
    assert os.path.exists(os.devnull)
