"""`Upstreams.call` against real upstream servers on loopback (tests/serve/raw_upstream.py).

Every hostile behaviour is a real socket doing it: a hang, a reset, a 5xx storm,
a body that never ends, a redirect to another host.  Clocks and the backoff
sleep are injected where a test counts time, so nothing here asserts a duration.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from raw_upstream import Hang, RawUpstream, Reply, Reset, Seen, Stream

from mcpdsl._version import __version__
from mcpdsl.ir import model as m
from mcpdsl.serve.upstream import DEFAULT_TIMEOUT, UpstreamError, Upstreams

pytestmark = pytest.mark.asyncio(loop_scope="function")

OURS = {"host", "accept", "accept-encoding", "connection", "user-agent"}


@pytest.fixture
def upstream() -> Iterator[RawUpstream]:
    server = RawUpstream().start()
    yield server
    server.stop()


def integration(url: str, method: str = "GET", **kw: Any) -> m.Integration:
    return m.Integration(package="t", name="crm", method=method, url=url, **kw)


def retry(n: int, *on: str, per_try: str | None = None) -> m.Retry:
    return m.Retry(
        attempts=n,
        on=on,
        backoff_min=Decimal("0.01"),
        backoff_max=Decimal("0.1"),
        per_try_timeout=Decimal(per_try) if per_try else None,
    )


class FakeTime:
    """A clock that moves only when told to, and a sleep that records and advances it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.pauses: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


def upstreams(fake: FakeTime | None = None, **kw: Any) -> Upstreams:
    if fake is not None:
        kw.setdefault("clock", fake.clock)
        kw.setdefault("sleep", fake.sleep)
    kw.setdefault("rng", random.Random(7))
    kw.setdefault("env", {})
    return Upstreams(**kw)


def closed_port() -> int:
    """A loopback port with nobody listening (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------- success


async def test_get_answers_the_map_ready_payload(upstream: RawUpstream) -> None:
    upstream.script = lambda _s: Reply(body=b'{"id": "42", "first_name": "Ada", "n": 1.5}')
    async with upstreams() as ups:
        result = await ups.call(
            integration(upstream.base + "/api/customers/{id}"),
            {"id": "42", "fields": ["a", "b"], "verbose": True, "skip": None},
        )
    assert (result.status, result.attempts) == (200, 1)
    assert result.payload == {"id": "42", "first_name": "Ada", "n": 1.5}
    (seen,) = upstream.requests
    assert seen.method == "GET"
    assert seen.target == b"/api/customers/42?fields=a&fields=b&verbose=true"
    assert seen.body == b""
    assert seen.names == OURS
    assert seen.header("user-agent") == f"mcpdsl/{__version__}"
    assert seen.header("accept") == "application/json"


async def test_post_sends_unused_arguments_as_json_body(upstream: RawUpstream) -> None:
    async with upstreams() as ups:
        await ups.call(
            integration(upstream.base + "/tickets/{queue}", "POST"),
            {"queue": "ops", "title": "disk full", "tags": {"b": 1, "a": [1, 2]}},
        )
    (seen,) = upstream.requests
    assert seen.target == b"/tickets/ops"
    assert json.loads(seen.body) == {"title": "disk full", "tags": {"a": [1, 2], "b": 1}}
    assert seen.header("content-type") == "application/json"
    assert seen.names == OURS | {"content-type", "content-length"}


async def test_204_is_a_null_payload_and_content_type_is_lenient(upstream: RawUpstream) -> None:
    replies = iter(
        [Reply(204, b"", ()), Reply(body=b"[1, 2]", headers=(("content-type", "text/plain"),))]
    )
    upstream.script = lambda _s: next(replies)
    async with upstreams() as ups:
        first = await ups.call(integration(upstream.base + "/x/{id}", "DELETE"), {"id": "1"})
        second = await ups.call(integration(upstream.base + "/x"), {})
    assert (first.status, first.payload) == (204, None)
    assert second.payload == [1, 2]


async def test_head_has_no_body_and_template_query_is_kept(upstream: RawUpstream) -> None:
    upstream.script = lambda s: Reply(body=b"" if s.method == "HEAD" else b"{}")
    async with upstreams() as ups:
        head = await ups.call(integration(upstream.base + "/x?v=1", "HEAD"), {"q": "a b&c"})
        await ups.call(integration(upstream.base + "/x?v={v}"), {"v": "&w=2", "q": 1})
    assert (head.status, head.payload) == (200, None)
    assert [s.target for s in upstream.requests] == [b"/x?v=1&q=a%20b%26c", b"/x?v=%26w%3D2&q=1"]


# ------------------------------------------------------- SSRF and injection

HOSTILE = [
    "../admin",
    "../../etc/passwd",
    "..%2Fadmin",
    "%2F",
    "@evil.com",
    "user@evil.com:80",
    "#frag",
    "?x=1",
    "a/b?c#d",
    "a\r\nX-Injected: 1",
    "\\..\\admin",
    "http://evil.com/",
    "//evil.com",
    "é 漢 🙂",
    "%00",
    ";jsessionid=1",
    "...",
    "a" * 2000,
]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
async def test_path_parameter_fills_exactly_one_segment(upstream: RawUpstream, value: str) -> None:
    async with upstreams() as ups:
        await ups.call(integration(upstream.base + "/api/customers/{id}/profile"), {"id": value})
    (seen,) = upstream.requests
    assert seen.target == f"/api/customers/{quote(value, safe='')}/profile".encode()
    assert seen.target.count(b"/") == 4 and b"?" not in seen.target
    assert seen.header("host") == f"127.0.0.1:{upstream.port}"
    assert "x-injected" not in seen.names


@pytest.mark.parametrize("value", ["", ".", "..", None, {"a": 1}, ["x"], "a" * 9000])
async def test_refused_path_parameters_never_reach_the_network(
    upstream: RawUpstream, value: object
) -> None:
    async with upstreams() as ups:
        with pytest.raises(UpstreamError) as info:
            await ups.call(integration(upstream.base + "/api/customers/{id}"), {"id": value})
    assert info.value.kind == "bad-argument"
    assert upstream.requests == []


# --------------------------------------------------------------- headers


async def test_upstream_sees_only_our_headers_and_no_proxy_from_env(
    upstream: RawUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, dead)
    auth = m.UpstreamAuth(scheme="bearer", secret=m.SecretRef(source="env", name="CRM_TOKEN"))
    async with Upstreams(env={"CRM_TOKEN": "s3cret-token"}) as ups:
        await ups.call(integration(upstream.base + "/c/{id}", auth=auth), {"id": "1"})
    (seen,) = upstream.requests
    assert seen.names == OURS | {"authorization"}
    assert seen.header("authorization") == "Bearer s3cret-token"
    assert seen.target == b"/c/1"  # origin-form: sent directly, not through a proxy


# --------------------------------------------------------------- secrets


async def test_secret_from_file_is_read_at_call_time(upstream: RawUpstream, tmp_path: Path) -> None:
    secret = tmp_path / "api-key"
    secret.write_text("first-key\n")
    auth = m.UpstreamAuth(
        scheme="header", header="x-api-key", secret=m.SecretRef(source="file", name=str(secret))
    )
    it = integration(upstream.base + "/c", auth=auth)
    async with upstreams() as ups:
        await ups.call(it, {})
        secret.write_text("rotated-key\r\n")
        await ups.call(it, {})
    assert [s.header("x-api-key") for s in upstream.requests] == ["first-key", "rotated-key"]
    assert all(s.names == OURS | {"x-api-key"} for s in upstream.requests)


@pytest.mark.parametrize(
    ("source", "content"),
    [
        ("env", None),  # not set
        ("env", ""),  # empty
        ("env", "tok\r\nx-evil: 1"),  # header injection
        ("file", None),  # missing file
        ("file", "x" * 70_000),  # too large
        ("file", "\n"),  # only a newline
    ],
)
async def test_unavailable_secret_fails_before_the_network(
    upstream: RawUpstream, tmp_path: Path, source: str, content: str | None
) -> None:
    path = tmp_path / "key"
    env: dict[str, str] = {}
    if source == "env" and content is not None:
        env["KEY"] = content
    if source == "file" and content is not None:
        path.write_text(content)
    ref = m.SecretRef(source=source, name="KEY" if source == "env" else str(path))  # type: ignore[arg-type]
    auth = m.UpstreamAuth(scheme="bearer", secret=ref)
    async with upstreams(env=env) as ups:
        with pytest.raises(UpstreamError) as info:
            await ups.call(integration(upstream.base + "/c", auth=auth), {})
    err = info.value
    assert err.kind == "secret-unavailable"
    assert err.reason == "the upstream credential is not available"
    assert (content or "\x00") not in f"{err.reason} {err.detail} {err!r}"
    assert upstream.requests == []


# ------------------------------------------------------- timeouts, retries


async def test_hang_times_out_per_try_and_retries_idempotent_calls(
    upstream: RawUpstream, fake: FakeTime
) -> None:
    upstream.script = lambda _s: Hang()
    it = integration(
        upstream.base + "/slow", timeout=Decimal(5), retry=retry(2, "5xx", per_try="0.2")
    )
    async with upstreams(fake) as ups:
        with pytest.raises(UpstreamError) as info:
            await ups.call(it, {})
    assert (info.value.kind, info.value.attempts) == ("timeout", 3)
    assert info.value.reason == "upstream did not answer within 200ms"
    assert len(upstream.requests) == 3
    assert len(fake.pauses) == 2


async def test_hang_without_retry_uses_the_timeout(upstream: RawUpstream) -> None:
    upstream.script = lambda _s: Hang()
    async with upstreams() as ups:
        with pytest.raises(UpstreamError) as info:
            await ups.call(integration(upstream.base + "/slow", timeout=Decimal("0.2")), {})
    assert (info.value.kind, info.value.attempts) == ("timeout", 1)
    assert DEFAULT_TIMEOUT == 10.0


async def test_deadline_bounds_the_retries(upstream: RawUpstream) -> None:
    """The injected clock passes 1s per backoff pause: a 2.5s deadline allows 3 attempts."""
    upstream.script = lambda _s: Reply(503, b"busy")
    fake = FakeTime()

    async def slow_sleep(seconds: float) -> None:
        fake.now += 1.0

    it = integration(upstream.base + "/x", timeout=Decimal("2.5"), retry=retry(10, "5xx"))
    async with upstreams(clock=fake.clock, sleep=slow_sleep) as ups:
        with pytest.raises(UpstreamError) as info:
            await ups.call(it, {})
    assert info.value.attempts == 3 and len(upstream.requests) == 3


async def test_5xx_storm_retried_then_status_error_without_body(
    upstream: RawUpstream, fake: FakeTime
) -> None:
    upstream.script = lambda _s: Reply(503, b'{"secret": "UPSTREAM-BODY"}')
    async with upstreams(fake) as ups:
        with pytest.raises(UpstreamError) as info:
            await ups.call(integration(upstream.base + "/x", retry=retry(3, "5xx")), {})
    err = info.value
    assert (err.kind, err.status, err.attempts) == ("status", 503, 4)
    assert err.reason == "upstream answered 503"
    assert "UPSTREAM-BODY" not in f"{err} {err.detail}"
    assert len(upstream.requests) == 4


async def test_backoff_is_jittered_bounded_and_deterministic(upstream: RawUpstream) -> None:
    upstream.script = lambda _s: Reply(502, b"")
    pauses = []
    for _ in range(2):
        fake = FakeTime()
        it = integration(upstream.base + "/x", retry=retry(5, "gateway-error"))
        async with upstreams(fake, rng=random.Random(11)) as ups:
            with pytest.raises(UpstreamError):
                await ups.call(it, {})
        pauses.append(fake.pauses)
    assert pauses[0] == pauses[1] and len(pauses[0]) == 5
    ceilings = [min(0.1, 0.01 * 2**i) for i in range(5)]
    assert all(0 <= p < c for p, c in zip(pauses[0], ceilings, strict=True))


@pytest.mark.parametrize(
    ("status", "on", "attempts"),
    [
        (500, "gateway-error", 1),
        (502, "gateway-error", 3),
        (409, "retriable-4xx", 3),
        (409, "5xx", 1),
        (404, "5xx", 1),
    ],
)
async def test_only_declared_conditions_retry(
    upstream: RawUpstream, fake: FakeTime, status: int, on: str, attempts: int
) -> None:
    upstream.script = lambda _s: Reply(status, b"{}")
    async with upstreams(fake) as ups:
        with pytest.raises(UpstreamError) as info:
            await ups.call(integration(upstream.base + "/x", retry=retry(2, on)), {})
    assert (info.value.status, info.value.attempts) == (status, attempts)
    assert len(upstream.requests) == attempts


@pytest.mark.parametrize(("idempotent", "expected"), [(None, 1), (False, 1), (True, 4)])
async def test_post_is_retried_on_5xx_only_when_declared_idempotent(
    upstream: RawUpstream, fake: FakeTime, idempotent: bool | None, expected: int
) -> None:
    upstream.script = lambda _s: Reply(503, b"{}")
    it = integration(upstream.base + "/x", "POST", retry=retry(3, "5xx"), idempotent=idempotent)
    async with upstreams(fake) as ups:
        with pytest.raises(UpstreamError):
            await ups.call(it, {"a": 1})
    assert len(upstream.requests) == expected


async def test_reset_is_retried_for_get_not_for_post(upstream: RawUpstream, fake: FakeTime) -> None:
    upstream.script = lambda _s: Reset()
    async with upstreams(fake) as ups:
        for method, expected in (("GET", 3), ("POST", 1)):
            upstream.requests.clear()
            with pytest.raises(UpstreamError) as info:
                await ups.call(
                    integration(upstream.base + "/x", method, retry=retry(2, "reset")), {}
                )
            assert info.value.kind == "connect"
            assert info.value.reason == "the upstream connection was reset"
            assert len(upstream.requests) == expected


async def test_reset_then_success(upstream: RawUpstream, fake: FakeTime) -> None:
    replies = iter([Reset(), Reply(body=b'{"n": 2}')])
    upstream.script = lambda _s: next(replies)
    async with upstreams(fake) as ups:
        result = await ups.call(integration(upstream.base + "/x", retry=retry(2, "reset")), {})
    assert (result.payload, result.attempts) == ({"n": 2}, 2)


@pytest.mark.parametrize(
    ("on", "attempts"),
    [("connect-failure", 3), ("refused-stream", 3), ("5xx", 3), ("retriable-4xx", 1)],
)
async def test_refused_connection_is_retried_even_for_post(
    fake: FakeTime, on: str, attempts: int
) -> None:
    it = integration(f"http://127.0.0.1:{closed_port()}/x", "POST", retry=retry(2, on))
    async with upstreams(fake) as ups:
        with pytest.raises(UpstreamError) as info:
            await ups.call(it, {})
    assert (info.value.kind, info.value.attempts) == ("connect", attempts)
    assert info.value.reason == "the upstream refused the connection"


# ------------------------------------------------------------- answers


@pytest.mark.parametrize(
    "body",
    [
        b"<html>oops</html>",
        b"",
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": 1, "a": 2}',
        b"\xff\xfe{}",
        b"[" * 100_000 + b"]" * 100_000,
        b"1" * 5000,
        b'{"a": 1} trailing',
    ],
    ids=["html", "empty", "nan", "inf", "dup", "bad-utf8", "deep", "huge-int", "trailing"],
)
async def test_not_json(upstream: RawUpstream, body: bytes) -> None:
    upstream.script = lambda _s: Reply(body=body, headers=(("content-type", "text/html"),))
    async with upstreams() as ups:
        with pytest.raises(UpstreamError) as info:
            await ups.call(integration(upstream.base + "/x"), {})
    assert (info.value.kind, info.value.status) == ("not-json", 200)
    assert info.value.reason == "upstream answered 200 with a body that is not JSON"


async def test_huge_body_is_bounded_and_not_read_fully(upstream: RawUpstream) -> None:
    upstream.script = lambda _s: Stream(total=256 << 20)
    async with upstreams(max_body_bytes=64 << 10) as ups:
        with pytest.raises(UpstreamError) as info:
            await ups.call(integration(upstream.base + "/big"), {})
        assert info.value.kind == "body-too-large"
        assert info.value.reason == "upstream answer is larger than 65536 bytes"
        upstream.script = lambda _s: Reply()
        await ups.call(integration(upstream.base + "/small"), {})
    for _ in range(100):  # the server notices the closed connection on its next write
        if upstream.streamed:
            break
        await asyncio.sleep(0.05)
    (sent,) = upstream.streamed
    assert sent < 64 << 20  # the client stopped reading: far less than the 256 MiB offered
    assert upstream.requests[1].connection == 2  # the big answer's connection was not reused


async def test_declared_huge_length_is_refused_before_reading(upstream: RawUpstream) -> None:
    upstream.script = lambda _s: Stream(total=512 << 20, declare_length=True)
    async with upstreams(max_body_bytes=1024) as ups:
        with pytest.raises(UpstreamError) as info:
            await ups.call(integration(upstream.base + "/big"), {})
    assert info.value.kind == "body-too-large"


async def test_redirect_is_not_followed(upstream: RawUpstream) -> None:
    target = f"http://127.0.0.1:{closed_port()}/steal"
    upstream.script = lambda _s: Reply(302, b"", (("location", target),))
    async with upstreams() as ups:
        with pytest.raises(UpstreamError) as info:
            await ups.call(integration(upstream.base + "/x"), {})
    assert (info.value.kind, info.value.status) == ("redirect", 302)
    assert target not in info.value.reason
    assert len(upstream.requests) == 1


# ------------------------------------------------------------ the breaker


async def test_breaker_opens_fails_fast_probes_and_closes(
    upstream: RawUpstream, fake: FakeTime
) -> None:
    healthy = False
    upstream.script = lambda _s: Reply() if healthy else Reply(500, b"{}")
    it = integration(
        upstream.base + "/x",
        retry=retry(1, "5xx"),
        breaker=m.Breaker(failures=2, open_for=Decimal(30)),
    )
    outcomes: list[tuple[str, str]] = []
    async with upstreams(fake, on_result=lambda n, o, _e: outcomes.append((n, o))) as ups:
        for _ in range(2):
            with pytest.raises(UpstreamError):
                await ups.call(it, {})
        assert ups.breaker_state("t.crm") == "open" == ups.breaker_state("crm")
        assert len(upstream.requests) == 4  # 2 calls x 2 attempts

        with pytest.raises(UpstreamError) as info:
            await ups.call(it, {})
        assert info.value.kind == "breaker-open"
        assert len(upstream.requests) == 4  # no network while open

        fake.now += 30
        assert ups.breaker_state("t.crm") == "half-open"
        with pytest.raises(UpstreamError):  # the probe fails: open again
            await ups.call(it, {})
        assert ups.breaker_state("t.crm") == "open"

        fake.now += 30
        healthy = True
        result = await ups.call(it, {})  # the probe succeeds: closed
        assert result.status == 200
        assert ups.breaker_state("t.crm") == "closed"
    assert [o for _n, o in outcomes] == ["status", "status", "breaker-open", "status", "ok"]
    assert ups.counts() == {
        ("t.crm", "breaker-open"): 1,
        ("t.crm", "ok"): 1,
        ("t.crm", "status"): 3,
    }


async def test_half_open_lets_exactly_one_probe_through(
    upstream: RawUpstream, fake: FakeTime
) -> None:
    loop = asyncio.get_running_loop()
    arrived = asyncio.Event()
    mode = {"fail": True}

    def script(_s: Seen) -> Reply | Hang:
        if mode["fail"]:
            return Reply(503, b"{}")
        loop.call_soon_threadsafe(arrived.set)
        return Hang()

    upstream.script = script
    it = integration(
        upstream.base + "/x", timeout=Decimal(2), breaker=m.Breaker(failures=1, open_for=Decimal(5))
    )
    async with upstreams(fake) as ups:
        with pytest.raises(UpstreamError):
            await ups.call(it, {})
        assert ups.breaker_state("t.crm") == "open"
        fake.now += 5
        mode["fail"] = False
        probe = asyncio.create_task(ups.call(it, {}))
        await arrived.wait()  # the probe is in flight at the upstream
        for _ in range(5):
            with pytest.raises(UpstreamError) as info:
                await ups.call(it, {})
            assert info.value.kind == "breaker-open"
        with pytest.raises(UpstreamError) as probe_info:
            await probe  # the hung probe times out (2s): a failure, so open again
        assert probe_info.value.kind == "timeout"
        assert ups.breaker_state("t.crm") == "open"
    assert len(upstream.requests) == 2


async def test_cancelled_probe_gives_its_slot_back(upstream: RawUpstream, fake: FakeTime) -> None:
    loop = asyncio.get_running_loop()
    arrived = asyncio.Event()
    mode = {"fail": True}

    def script(_s: Seen) -> Reply | Hang:
        if mode["fail"]:
            return Reply(500, b"{}")
        loop.call_soon_threadsafe(arrived.set)
        return Hang()

    upstream.script = script
    it = integration(upstream.base + "/x", breaker=m.Breaker(failures=1, open_for=Decimal(5)))
    async with upstreams(fake) as ups:
        with pytest.raises(UpstreamError):
            await ups.call(it, {})
        fake.now += 5
        mode["fail"] = False
        probe = asyncio.create_task(ups.call(it, {}))
        await arrived.wait()
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        assert ups.breaker_state("t.crm") == "half-open"
        upstream.script = lambda _s: Reply()
        assert (await ups.call(it, {})).status == 200
        assert ups.breaker_state("t.crm") == "closed"


async def test_4xx_and_bad_json_do_not_count_against_the_breaker(
    upstream: RawUpstream, fake: FakeTime
) -> None:
    replies = iter([Reply(404, b"{}"), Reply(body=b"nope"), Reply(404, b"{}")])
    upstream.script = lambda _s: next(replies)
    it = integration(upstream.base + "/x", breaker=m.Breaker(failures=1, open_for=Decimal(5)))
    async with upstreams(fake) as ups:
        for _ in range(3):
            with pytest.raises(UpstreamError):
                await ups.call(it, {})
        assert ups.breaker_state("t.crm") == "closed"


async def test_without_breaker_state_is_closed(upstream: RawUpstream, fake: FakeTime) -> None:
    upstream.script = lambda _s: Reply(500, b"{}")
    async with upstreams(fake) as ups:
        for _ in range(5):
            with pytest.raises(UpstreamError):
                await ups.call(integration(upstream.base + "/x"), {})
        assert ups.breaker_state("t.crm") == "closed"
    assert len(upstream.requests) == 5


async def test_one_shared_client_within_its_connection_limit(upstream: RawUpstream) -> None:
    async with upstreams(max_connections=2) as ups:
        results = await asyncio.gather(
            *(ups.call(integration(upstream.base + "/c/{id}"), {"id": str(i)}) for i in range(20))
        )
    assert all(r.status == 200 for r in results)
    assert len(upstream.requests) == 20
    assert {s.connection for s in upstream.requests} <= {1, 2}


async def test_injected_client_is_used_and_left_open(upstream: RawUpstream) -> None:
    async with httpx.AsyncClient(trust_env=False) as client:
        async with upstreams(client=client) as ups:
            assert (await ups.call(integration(upstream.base + "/x"), {})).status == 200
        assert not client.is_closed
