"""`RedisStore` against a real redis-server: the Lua scripts agree with `MemoryStore`,
processes sharing one Redis share one count, and every failure is `StoreUnavailable`."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import random
import signal
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis_support import REPO, GarbageServer, RedisServer, free_port, redis_binary, redis_server

from mcpdsl.evaluate.limits import BucketSpec
from mcpdsl.serve.redis_store import RedisStore, check_url, digest, redacted
from mcpdsl.serve.store import MemoryStore, Stats, StoreUnavailable

__all__ = ["redis_server"]  # the fixture, imported for pytest

T = TypeVar("T")
#: A failing call must give up well within this (a hang fails the test instead).
BOUND = 20.0


def run(make: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(make(), BOUND)

    return asyncio.run(bounded())


def store(server: RedisServer, **kw: Any) -> RedisStore:
    kw.setdefault("prefix", f"t{os.getpid()}")
    return RedisStore(server.url, **kw)


# -- the scripts against MemoryStore (differential) --------------------------------------


def scripted(seed: int) -> list[tuple[str, str, float, bool]]:
    """(principal, resource, now, denied) steps: bursts, pauses past 1 min and past 1 h."""
    rnd = random.Random(seed)
    now, steps = 1_700_000_000.0, []
    for _ in range(400):
        now += rnd.choice([0.0, 0.001, 0.5, 3.0, 17.25, 59.999, 60.0, 61.0, 900.0, 3600.0, 4000.0])
        principal = rnd.choice(["user:a", "user:b", "service:c:{d}", "x" * 300])
        resource = rnd.choice(["", "tool:a", "tool:b", "path:/x", "path:/y", "r:\x00:{z}"])
        steps.append((principal, resource, now, rnd.random() < 0.3))
    return steps


@pytest.mark.parametrize("seed", range(4))
def test_windows_match_memory_store(redis_server: RedisServer, seed: int) -> None:
    async def go() -> None:
        caps = {"max_events": 25, "max_resources": 3}  # small: saturation is exercised too
        r = store(redis_server, clock="caller", prefix=f"diff{seed}", **caps)
        m = MemoryStore(**caps)
        try:
            for principal, resource, now, denied in scripted(seed):
                got = await r.observe(principal, resource, now)
                want = await m.observe(principal, resource, now)
                assert got == want, (principal, resource, now)
                await r.outcome(principal, denied, now)
                await m.outcome(principal, denied, now)
        finally:
            await r.close()

    run(go)


@pytest.mark.parametrize(
    "spec", [BucketSpec(20.0, 10.0, "a"), BucketSpec(6.0, 0.1, "b"), BucketSpec(3.0, 3.0, "c")]
)
def test_bucket_matches_token_bucket(redis_server: RedisServer, spec: BucketSpec) -> None:
    async def go() -> None:
        r = store(redis_server, clock="caller")
        m = MemoryStore()
        rnd = random.Random(spec.source)
        now, admitted = 5_000.0, 0
        try:
            for _ in range(600):
                # in units of one token's refill time: on average ~0.7 tokens a step
                step = rnd.choice([0.0] * 20 + [0.01, 0.1, 0.3, 0.5, 1.0, 2.0, 15.0, -0.02])
                now += step / spec.per_second
                key = rnd.choice(["gateway:g", "service:api:10.0.0.1"])
                got, want = await r.take(key, spec, now), await m.take(key, spec, now)
                assert got == want, (key, now)
                admitted += got
        finally:
            await r.close()
        assert 0 < admitted < 600  # both outcomes were exercised

    run(go)


def test_a_changed_spec_is_a_fresh_bucket(redis_server: RedisServer) -> None:
    async def go() -> None:
        r, m = store(redis_server, clock="caller"), MemoryStore()
        old, new = BucketSpec(2.0, 1e-6, "old"), BucketSpec(3.0, 1e-6, "new")
        try:
            for s in (r, m):
                assert [await s.take("k", old, 1.0) for _ in range(3)] == [True, True, False]
                assert [await s.take("k", new, 1.0) for _ in range(4)] == [True] * 3 + [False]
        finally:
            await r.close()

    run(go)


# -- keys: namespaced, digested, expiring --------------------------------------------------


def keys(server: RedisServer) -> list[str]:
    reply = server.command("KEYS", "*").decode("utf-8", "replace")
    return [line for line in reply.split("\r\n") if line and line[0] not in "*$"]


def test_hostile_principals_get_bounded_distinct_keys(redis_server: RedisServer) -> None:
    hostile = ["a:b", "a", "{a}", "}{", "x" * 100_000, "\ud800\udfff\x00", "mcpdsl:p2:{x}:calls"]

    async def go() -> list[Stats]:
        r = store(redis_server, prefix="p1")
        try:
            return [await r.observe(p, "", 0.0) for p in hostile]
        finally:
            await r.close()

    assert all(s.calls_1m == 1 for s in run(go))  # distinct principals: no sharing
    names = keys(redis_server)
    assert len(names) == len(hostile)
    assert all(n.startswith("mcpdsl:p1:{") and n.endswith("}:calls") and len(n) < 64 for n in names)
    ttl = int(redis_server.command("PTTL", names[0]).strip(b":\r\n"))
    assert 3_590_000 < ttl <= 3_601_000  # an idle principal's keys vanish after the hour


def test_prefixes_separate_policies(redis_server: RedisServer) -> None:
    async def go() -> tuple[Stats, Stats, bool]:
        a, b = store(redis_server, prefix="a"), store(redis_server, prefix="b")
        spec = BucketSpec(1.0, 1e-6, "x")
        try:
            await a.observe("p", "r", 0.0)
            took = await a.take("k", spec, 0.0)
            assert took
            return (
                await a.observe("p", "r", 0.0),
                await b.observe("p", "r", 0.0),
                await b.take("k", spec, 0.0),
            )
        finally:
            await a.close()
            await b.close()

    sa, sb, b_took = run(go)
    assert (sa.calls_1m, sb.calls_1m, b_took) == (2, 1, True)


def test_a_full_bucket_expires(redis_server: RedisServer) -> None:
    async def go() -> None:
        r = store(redis_server, prefix="ttl")
        try:
            await r.take("k", BucketSpec(10.0, 1000.0, "fast"), 0.0)
        finally:
            await r.close()

    run(go)
    (name,) = keys(redis_server)
    assert name.startswith("mcpdsl:ttl:bucket:{")
    ttl = int(redis_server.command("PTTL", name).strip(b":\r\n"))
    assert 0 < ttl <= 1_001  # one token short refills in 1 ms (+1 s of slack): then absent == full


def test_the_server_clock_decides(redis_server: RedisServer) -> None:
    """With the default clock, the `now` each replica passes is ignored: skew changes nothing."""

    async def go() -> Stats:
        a, b = store(redis_server), store(redis_server)
        try:
            await a.observe("p", "r1", 0.0)  # a replica whose clock is 1970
            await b.observe("p", "r2", 4e9)  # and one in 2096
            return await a.observe("p", "r3", -1e9)
        finally:
            await a.close()
            await b.close()

    assert run(go) == Stats(3, 3, 0, 0, 3, 3)


# -- several processes, one count -----------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from mcpdsl.evaluate.limits import BucketSpec
    from mcpdsl.serve.redis_store import RedisStore

    async def main(url, mode, n):
        store = RedisStore(url, prefix="multi", timeout=5)
        spec = BucketSpec(100.0, 1e-9, "gateway `g`")
        if mode == "take":
            sem = asyncio.Semaphore(16)
            async def one():
                async with sem:
                    return await store.take("gateway:g", spec, 0.0)
            got = await asyncio.gather(*(one() for _ in range(n)))
            print(sum(got), flush=True)
        else:
            for i in range(n):
                await store.observe("user:shared", f"r{i % 7}", 0.0)
                print(i + 1, flush=True)
        await store.close()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


def child(url: str, mode: str, n: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, url, mode, str(n)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_two_processes_share_one_bucket_exactly(redis_server: RedisServer) -> None:
    procs = [child(redis_server.url, "take", 150) for _ in range(2)]
    admitted = [int(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(admitted) == 100  # the bucket's capacity, across both, under concurrency
    assert all(a > 0 for a in admitted) or sum(admitted) == 100


def test_a_killed_process_loses_no_count(redis_server: RedisServer) -> None:
    survivor = child(redis_server.url, "observe", 300)
    victim = child(redis_server.url, "observe", 100_000)
    assert victim.stdout is not None
    done = 0
    while done < 200:  # mid-load
        done = int(victim.stdout.readline())
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    done = max([done, *(int(line) for line in victim.stdout.read().split())])
    victim.stdout.close()
    survivor.communicate(timeout=120)
    assert survivor.returncode == 0

    async def view() -> Stats:
        r = RedisStore(redis_server.url, prefix="multi")
        try:
            return await r.observe("user:shared", "r0", 0.0)
        finally:
            await r.close()

    stats = run(view)
    # every completed call is counted; the one in flight at the kill is wholly in or out
    assert done + 300 + 1 <= stats.calls_1m <= done + 300 + 2
    assert stats.calls_1m == stats.calls_1h
    assert stats.resources_1m == 7


# -- failures ---------------------------------------------------------------------------------


def unavailable(r: RedisStore) -> str:
    async def go() -> str:
        try:
            with pytest.raises(StoreUnavailable) as observe:
                await r.observe("p", "r", 0.0)
            with pytest.raises(StoreUnavailable):
                await r.take("k", BucketSpec(1.0, 1.0, "x"), 0.0)
            with pytest.raises(StoreUnavailable):
                await r.outcome("p", True, 0.0)
            return str(observe.value)
        finally:
            await r.close()

    return run(go)


def test_connection_refused() -> None:
    port = free_port()
    assert f"127.0.0.1:{port}" in unavailable(RedisStore(f"redis://127.0.0.1:{port}"))


def test_a_silent_peer_times_out() -> None:
    silent = GarbageServer(b"")  # accepts, reads, never answers
    try:
        message = unavailable(RedisStore(f"redis://127.0.0.1:{silent.port}", timeout=0.2))
    finally:
        silent.close()
    assert "Timeout" in message


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 400 Bad Request\r\n\r\n",
        b"*3\r\n:1\r\n",
        b"$-7\r\n",
        b":notanumber\r\n",
        b"*6\r\n:1\r\n:2\r\n:3\r\n:4\r\n:5\r\n$2\r\nab\r\n",
        bytes(range(256)) * 4,
        b"-ERR no\r\n",
    ],
)
def test_a_peer_that_is_not_redis(reply: bytes) -> None:
    fake = GarbageServer(reply)
    try:
        unavailable(RedisStore(f"redis://127.0.0.1:{fake.port}", timeout=0.3))
    finally:
        fake.close()


def test_recovers_when_redis_comes_back(redis_server: RedisServer) -> None:
    async def go() -> Stats:
        r = store(redis_server, timeout=0.5)
        try:
            assert (await r.observe("p", "r", 0.0)).calls_1m == 1
            assert await r.take("k", BucketSpec(5.0, 1e-6, "x"), 0.0)
            redis_server.stop()
            with pytest.raises(StoreUnavailable):
                await r.observe("p", "r", 0.0)
            with pytest.raises(StoreUnavailable):
                await r.take("k", BucketSpec(5.0, 1e-6, "x"), 0.0)
            redis_server.start()  # empty, without the scripts: NOSCRIPT -> loaded again
            assert await r.take("k", BucketSpec(5.0, 1e-6, "x"), 0.0)
            return await r.observe("p", "r", 0.0)
        finally:
            await r.close()

    assert run(go).calls_1m == 1  # a fresh Redis: the counts restarted


def test_urls() -> None:
    for good in ("redis://h:6379/0", "rediss://u:pw@h", "unix:///run/redis.sock"):
        check_url(good)
    for bad in ("http://h:6379", "h:6379", "", "memcached://h"):
        with pytest.raises(ValueError, match="not a Redis URL"):
            check_url(bad)
    for bad in ("redis://[::1", "redis://h:99999", "redis://h/?db=x", "redis://:s3cret@h/?bogus=1"):
        with pytest.raises(ValueError, match=r"(not a URL|invalid Redis URL)") as exc:
            RedisStore(bad)
        assert "s3cret" not in str(exc.value)
    assert redacted("redis://user:s3cret@h:1/0") == "redis://user:***@h:1/0"
    assert "s3cret" not in repr(RedisStore("redis://:s3cret@127.0.0.1:1"))
    with pytest.raises(ValueError, match="invalid Redis key prefix"):
        RedisStore("redis://h", prefix="a:b")
    assert digest("a") != digest("a\x00") and len(digest("x" * 10**6)) == 32


def tls_files(root: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 that it signed: (ca, cert, key) PEM files."""
    now = datetime.datetime.now(datetime.UTC)

    def make(subject: str, issuer_key: Any, issuer: x509.Name | None, ca: bool) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
            builder = builder.add_extension(san, critical=False)
        return key, builder.sign(issuer_key or key, hashes.SHA256())

    ca_key, ca_cert = make("test ca", None, None, True)
    key, cert = make("127.0.0.1", ca_key, ca_cert.subject, False)
    paths = root / "ca.pem", root / "cert.pem", root / "key.pem"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def test_tls(tmp_path: Path) -> None:
    ca, cert, key = tls_files(tmp_path)
    tls_port = free_port()
    server = RedisServer(redis_binary(), tmp_path, "--tls-port", str(tls_port),
                         "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                         "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no")  # fmt: skip
    server.start()
    try:
        url = f"rediss://127.0.0.1:{tls_port}"
        trusted = RedisStore(f"{url}/?ssl_ca_certs={ca}")

        async def go() -> Stats:
            try:
                return await trusted.observe("p", "r", 0.0)
            finally:
                await trusted.close()

        assert run(go).calls_1m == 1
        # a server certificate no configured CA signed is refused: fail closed
        # (the same server and port answer with the CA: only the verification differs)
        unavailable(RedisStore(url))
    finally:
        server.stop()


def test_an_acl_user_limited_to_its_prefix(redis_server: RedisServer) -> None:
    """The ACL of docs/serve-redis.md is enough for every script, and confines to the prefix."""
    acl = ("ACL SETUSER mcpdsl on >pw ~mcpdsl:prod:* +evalsha +eval +script|load +ping +time "
           "+zadd +zremrangebyscore +zremrangebyrank +zcard +zcount +pexpire +hmget +hset")  # fmt: skip
    assert redis_server.command(*acl.split()).startswith(b"+OK")
    docs = (REPO / "docs" / "serve-redis.md").read_text(encoding="utf-8")
    assert " ".join(docs.split()).count(acl.replace(">pw", ">PASSWORD")) == 1
    url = redis_server.url.replace("redis://", "redis://mcpdsl:pw@")
    spec = BucketSpec(1.0, 1.0, "x")

    async def go(prefix: str) -> tuple[Stats, bool]:
        r = RedisStore(url, prefix=prefix)
        try:
            await r.outcome("a", True, 0.0)
            return await r.observe("a", "b", 0.0), await r.take("k", spec, 0.0)
        finally:
            await r.close()

    assert run(lambda: go("prod")) == (Stats(1, 1, 1, 1, 1, 1), True)
    with pytest.raises(StoreUnavailable, match="NoPermission"):
        run(lambda: go("other"))


def test_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "redis.sock"
    server = RedisServer(redis_binary(), tmp_path, "--unixsocket", str(path),
                         "--unixsocketperm", "700")  # fmt: skip
    server.start()
    try:
        r = RedisStore(f"unix://{path}", prefix="unix")

        async def go() -> tuple[Stats, bool]:
            try:
                return await r.observe("p", "r", 0.0), await r.take(
                    "k", BucketSpec(1.0, 1.0, "x"), 0.0
                )
            finally:
                await r.close()

        assert run(go) == (Stats(1, 1, 0, 0, 1, 1), True)
        assert keys(server)  # the same server, seen over TCP
    finally:
        server.stop()
