"""`RedisStore`: the server's counters and buckets in Redis, shared by every replica.

Each `Store` operation is ONE Lua script run by Redis (EVALSHA of a script
registered once; the client loads it again when Redis answers NOSCRIPT, e.g.
after a restart), so an operation is atomic however many replicas call at
once, and a replica killed between two calls loses nothing: every call it
made is either wholly in Redis or not at all.  Layout, per `prefix` (so that
two policies can share one Redis) — `<p>` is a digest of the principal, `<b>`
of the bucket key and its spec, never the raw (caller-chosen) text:

* `mcpdsl:<prefix>:{<p>}:calls`   sorted set, one member per call, scored by its time;
* `mcpdsl:<prefix>:{<p>}:denials` the same for the calls that were denied;
* `mcpdsl:<prefix>:{<p>}:res`     sorted set of resource digests scored by last use;
* `mcpdsl:<prefix>:bucket:{<b>}`  hash `t` (tokens), `l` (last refill time).

A script trims what left the hour (ZREMRANGEBYSCORE), caps what a window keeps
(`MAX_EVENTS`, `MAX_RESOURCES`: the counts saturate, exactly as `MemoryStore`),
and sets a TTL so an idle principal's keys vanish after an hour and a bucket's
once it would be full again (an absent bucket IS a full one).  The `{…}` hash
tags keep one principal's keys in one Redis Cluster slot.

Time is Redis's own clock (`TIME` inside the script) by default, so replicas
whose clocks disagree still share one window and one refill; the `now` the
server passes is then ignored.  `clock="caller"` uses `now` instead (tests that
script time; a deployment whose replicas share a trusted clock).

Any failure to get a well-formed answer in time — connection refused, a
timeout, an error reply, a peer that is not Redis — raises `StoreUnavailable`
(the server then fails closed unless told otherwise).  Nothing is kept
between calls but the connection pool, which reconnects on the next call.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from mcpdsl.evaluate.limits import _EPSILON, MAX_CLOCK_SKEW, BucketSpec
from mcpdsl.serve.store import (
    MAX_EVENTS,
    MAX_RESOURCES,
    WINDOWS,
    Stats,
    StoreUnavailable,
    fingerprint,
)

Clock = Literal["server", "caller"]

SCHEMES = ("redis", "rediss", "unix")
_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: Keys of a principal outlive its last call by the longest window (+1 s of slack).
_IDLE_TTL_MS = (WINDOWS["1h"] + 1) * 1000
#: A bucket whose refill rate is zero never becomes full: it is kept a day.
_MAX_BUCKET_TTL_MS = 86_400_000

# `clock(ARGV[1])`: the caller's time when given, else Redis's.  Numbers go into
# commands as `%.17g` strings: Lua's own tostring keeps 14 digits only.
_CLOCK = """
local function clock(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function num(x) return string.format('%.17g', x) end
local function trim(key, horizon, cap)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', num(horizon))
  if redis.call('ZCARD', key) > cap then
    redis.call('ZREMRANGEBYRANK', key, 0, -(cap + 1))
  end
end
"""

# KEYS: calls, denials, res.  ARGV: now|'', call id, resource digest|'', caps, TTL.
_OBSERVE = (
    _CLOCK
    + f"""
local now = clock(ARGV[1])
local minute, hour = now - {WINDOWS["1m"]}, now - {WINDOWS["1h"]}
local events, resources, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
redis.call('ZADD', KEYS[1], num(now), ARGV[2])
trim(KEYS[1], hour, events)
redis.call('PEXPIRE', KEYS[1], ttl)
trim(KEYS[2], hour, events)
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[3], num(now), ARGV[3])
  redis.call('PEXPIRE', KEYS[3], ttl)
end
trim(KEYS[3], hour, resources)
local since = '(' .. num(minute)
return {{
  redis.call('ZCOUNT', KEYS[1], since, '+inf'), redis.call('ZCARD', KEYS[1]),
  redis.call('ZCOUNT', KEYS[2], since, '+inf'), redis.call('ZCARD', KEYS[2]),
  redis.call('ZCOUNT', KEYS[3], since, '+inf'), redis.call('ZCARD', KEYS[3]),
}}
"""
)

# KEYS: denials.  ARGV: now|'', call id, cap, TTL.
_OUTCOME = (
    _CLOCK
    + f"""
local now = clock(ARGV[1])
redis.call('ZADD', KEYS[1], num(now), ARGV[2])
trim(KEYS[1], now - {WINDOWS["1h"]}, tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
return 1
"""
)

# KEYS: bucket.  ARGV: now|'', capacity, per second.  The arithmetic of
# `mcpdsl.evaluate.limits.TokenBucket.take`, step by step, in doubles.
_TAKE = (
    _CLOCK
    + f"""
local now = clock(ARGV[1])
local capacity, rate = tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 't', 'l')
local tokens, last = tonumber(state[1]), tonumber(state[2])
if tokens == nil or last == nil then tokens, last = capacity, now end
local elapsed = now - last
if elapsed > 0 then
  tokens = math.min(capacity, tokens + elapsed * rate)
  last = now
elseif elapsed < -{MAX_CLOCK_SKEW!r} then
  last = now
end
local ok = 0
if tokens >= 1 - {_EPSILON!r} then
  tokens = tokens - 1
  ok = 1
end
redis.call('HSET', KEYS[1], 't', num(tokens), 'l', num(last))
local ttl = {_MAX_BUCKET_TTL_MS}
if rate > 0 then ttl = math.min(ttl, math.ceil((capacity - tokens) / rate * 1000) + 1000) end
redis.call('PEXPIRE', KEYS[1], ttl)
return ok
"""
)


def digest(text: str) -> str:
    """A fixed-size name for caller-chosen text (any length, any code points, `:`, `{}`)."""
    return fingerprint(text).hex()


def check_url(url: str) -> None:
    """ValueError unless `url` names a Redis server (redis://, rediss:// or unix://)."""
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as exc:
        raise ValueError(f"`{redacted(url)}` is not a URL: {exc}") from None
    if scheme not in SCHEMES:
        raise ValueError(
            f"`{redacted(url)}` is not a Redis URL (expected redis://HOST:PORT, "
            "rediss://HOST:PORT or unix:///PATH)"
        )


def check_prefix(prefix: str) -> None:
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(
            f"invalid Redis key prefix {prefix!r}: 1 to 64 of letters, digits, `_`, `.`, `-`"
        )


def redacted(url: str) -> str:
    """`url` with any password replaced by `***`, fit for messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port is not None else ""
        netloc = f"{user}:***@{host}{port}"
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparsable URL>"


class RedisStore:
    """A `Store` in Redis: several `mcpdsl serve` replicas share counters and buckets.

    Nothing connects until the first call; at most `max_connections` are open
    (more concurrent calls wait for one); every call is bounded in time
    (`timeout` per socket operation, one reconnect-and-retry after a dropped
    connection, an overall deadline) and either answers or raises
    `StoreUnavailable`.  A call retried after a dropped connection is idempotent
    for the counters (its members are unique per call); a retried `take` may at
    worst spend one extra token (fewer admitted, never more).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "default",
        password: str | None = None,
        timeout: float = 0.5,
        connect_timeout: float | None = None,
        clock: Clock = "server",
        max_events: int = MAX_EVENTS,
        max_resources: int = MAX_RESOURCES,
        max_connections: int = 64,
    ) -> None:
        check_url(url)
        check_prefix(prefix)
        from redis.asyncio import BlockingConnectionPool, Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import RedisError

        connect = timeout if connect_timeout is None else connect_timeout
        self.where = redacted(url)
        self._base = f"mcpdsl:{prefix}"
        self._clock: Clock = clock
        self._max_events = max_events
        self._max_resources = max_resources
        self._deadline = 2 * (connect + timeout) + timeout
        try:
            # a bounded pool: a burst of concurrent decisions waits for a connection
            # (within the deadline) instead of opening one connection per request
            self._pool: Any = BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=self._deadline,
                password=password,
                socket_timeout=timeout,
                socket_connect_timeout=connect,
                retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            )
            self._client: Any = Redis(connection_pool=self._pool)
            # a connection object, not connected: options in the URL's query that the
            # client does not know, or cannot parse, fail now rather than on every call
            self._pool.make_connection()
        except (ValueError, TypeError, RedisError) as exc:
            raise ValueError(f"invalid Redis URL `{self.where}`: {exc}") from None
        self._observe = self._client.register_script(_OBSERVE)
        self._outcome = self._client.register_script(_OUTCOME)
        self._take = self._client.register_script(_TAKE)

    def __repr__(self) -> str:
        return f"RedisStore({self.where!r}, prefix={self._base.split(':', 1)[1]!r})"

    def keys_of(self, principal: str) -> list[str]:
        """The keys of `principal`'s windows: calls, denials, resources."""
        tag = f"{self._base}:{{{digest(principal)}}}"
        return [f"{tag}:calls", f"{tag}:denials", f"{tag}:res"]

    def bucket_key(self, key: str, spec: BucketSpec) -> str:
        """One bucket per key AND spec: replicas on an old and a new policy never reset
        each other's bucket during a rolling update; the old one expires once full."""
        named = f"{key}\0{spec.capacity!r}\0{spec.per_second!r}"
        return f"{self._base}:bucket:{{{digest(named)}}}"

    def _now(self, now: float) -> str:
        return repr(float(now)) if self._clock == "caller" else ""

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            async with asyncio.timeout(self._deadline):
                return await script(keys=keys, args=args)
        except Exception as exc:  # whatever went wrong, this store cannot answer now
            await self._drop_idle_connections()
            raise StoreUnavailable(
                f"redis at {self.where}: {type(exc).__name__}: {exc}".rstrip(": ")
            ) from exc

    async def _drop_idle_connections(self) -> None:
        """A connection that timed out or read garbage may hold half a reply: never reuse it."""
        # closing a broken socket may fail too; it is gone either way
        with contextlib.suppress(Exception):
            await self._pool.disconnect(inuse_connections=False)

    async def observe(self, principal: str, resource: str, now: float) -> Stats:
        reply = await self._run(
            self._observe,
            self.keys_of(principal),
            [
                self._now(now),
                os.urandom(12),
                fingerprint(resource) if resource else b"",
                self._max_events,
                self._max_resources,
                _IDLE_TTL_MS,
            ],
        )
        if (
            not isinstance(reply, list)
            or len(reply) != 6
            or not all(isinstance(n, int) and n >= 0 for n in reply)
        ):
            raise StoreUnavailable(f"redis at {self.where}: unexpected reply to observe")
        return Stats(*reply)

    async def outcome(self, principal: str, denied: bool, now: float) -> None:
        if denied:
            args = [self._now(now), os.urandom(12), self._max_events, _IDLE_TTL_MS]
            await self._run(self._outcome, self.keys_of(principal)[1:2], args)

    async def take(self, key: str, spec: BucketSpec, now: float) -> bool:
        args = [self._now(now), repr(spec.capacity), repr(spec.per_second)]
        reply = await self._run(self._take, [self.bucket_key(key, spec)], args)
        if reply not in (0, 1) or isinstance(reply, bool):
            raise StoreUnavailable(f"redis at {self.where}: unexpected reply to take")
        return reply == 1

    async def ping(self) -> None:
        """Raise `StoreUnavailable` unless Redis answers now (for readiness checks)."""
        try:
            async with asyncio.timeout(self._deadline):
                await self._client.ping()
        except Exception as exc:
            await self._drop_idle_connections()
            raise StoreUnavailable(f"redis at {self.where}: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        close = getattr(self._client, "aclose", None) or self._client.close
        with contextlib.suppress(Exception):  # Redis went away: nothing left to release
            await close()
        with contextlib.suppress(Exception):  # the pool is ours: the client leaves it open
            await self._pool.disconnect()
