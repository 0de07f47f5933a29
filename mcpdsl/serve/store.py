"""Server-side state shared by every decision: behaviour signals and rate-limit buckets.

A `Store` keeps, per principal, sliding-window counters (calls, denials,
distinct resources over the last minute and hour) that the server adds to the
request as `stats.principal.*`, and the token buckets of the policy's `limit`
clauses.  `MemoryStore` keeps them in this process; `redis_store.RedisStore`
keeps them in Redis so that several replicas share one count.  A store that
cannot answer raises `StoreUnavailable`; the server then decides as the
`on_unavailable` setting says (deny by default: fail closed).
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Protocol

from mcpdsl.evaluate.limits import BucketSpec, TokenBucket

#: The sliding windows, in seconds, by the suffix of their attribute names.
WINDOWS: dict[str, int] = {"1m": 60, "1h": 3600}
#: The counters the server maintains per principal (`stats.principal.<name>_<window>`).
COUNTERS: tuple[str, ...] = ("calls", "denials", "resources")
#: Per principal and window, at most this many calls (and denials) are remembered:
#: a counter is exact up to it and then saturates (it never reports fewer than the
#: cap, so a rule `calls_1h > N` with N below the cap still fires).
MAX_EVENTS = 100_000
#: Per principal and window, at most this many distinct resources are remembered
#: (the most recently used ones); `resources_*` saturates at it like the counters.
MAX_RESOURCES = 10_000
#: Token buckets kept by `MemoryStore` (per-client limits make one per client).
MAX_BUCKETS = 100_000


def fingerprint(text: str) -> bytes:
    """A 16-byte digest of caller-chosen text (a principal, a resource): what the stores keep.

    Principals and resources come from requests and may be huge; keeping their
    digests bounds a store's memory per entry whatever they are (any code
    points, lone surrogates included).
    """
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class StoreUnavailable(Exception):
    """The store could not answer (e.g. Redis is unreachable); the server fails closed."""


@dataclass(frozen=True, slots=True)
class Stats:
    """One principal's counters as the rules see them (`stats.principal`)."""

    calls_1m: int = 0
    calls_1h: int = 0
    denials_1m: int = 0
    denials_1h: int = 0
    resources_1m: int = 0
    resources_1h: int = 0

    def as_data(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class Store(Protocol):
    """What the server needs from its shared state; every method may raise `StoreUnavailable`."""

    async def observe(self, principal: str, resource: str, now: float) -> Stats:
        """Count this call (and its resource) for `principal`; the counters including it."""
        ...

    async def outcome(self, principal: str, denied: bool, now: float) -> None:
        """Record the decision of the call just observed (denials count from the next call)."""
        ...

    async def take(self, key: str, spec: BucketSpec, now: float) -> bool:
        """Take one token from the bucket `key` (created full from `spec`); False = limited."""
        ...

    async def close(self) -> None: ...


def _slide(times: deque[float], horizon: float) -> None:
    """Forget the events at or before `horizon` (the deque is in time order)."""
    while times and times[0] <= horizon:
        times.popleft()


def _slide_seen(seen: OrderedDict[bytes, float], horizon: float) -> None:
    """Forget the resources last used at or before `horizon` (ordered by last use)."""
    while seen:
        first = next(iter(seen.values()))
        if first > horizon:
            return
        seen.popitem(last=False)


def _see(seen: OrderedDict[bytes, float], resource: bytes, now: float, cap: int) -> None:
    seen[resource] = now
    seen.move_to_end(resource)
    while len(seen) > cap:
        seen.popitem(last=False)


class _Windows:
    """Exact sliding windows of one principal, one structure per window.

    Every window keeps only what it counts, in time order, so an observation
    costs amortised O(1) whatever the rate (no scan of an hour of events per
    call) and a count is a `len`.  Times are taken as non-decreasing: a clock
    that steps back is treated as standing still (`latest`).
    """

    __slots__ = ("calls", "denials", "latest", "seen")

    def __init__(self, max_events: int) -> None:
        self.calls = (deque[float](maxlen=max_events), deque[float](maxlen=max_events))
        self.denials = (deque[float](maxlen=max_events), deque[float](maxlen=max_events))
        self.seen: tuple[OrderedDict[bytes, float], OrderedDict[bytes, float]] = (
            OrderedDict(),
            OrderedDict(),
        )
        self.latest = -math.inf

    def clamp(self, now: float) -> float:
        self.latest = max(self.latest, now)
        return self.latest

    def slide(self, now: float) -> None:
        for i, span in enumerate((WINDOWS["1m"], WINDOWS["1h"])):
            horizon = now - span
            _slide(self.calls[i], horizon)
            _slide(self.denials[i], horizon)
            _slide_seen(self.seen[i], horizon)


class MemoryStore:
    """A `Store` in this process (one replica): exact windows, the engine's token buckets.

    Its methods never await, so on one event loop each runs atomically.  Memory
    is bounded: at most `max_principals` principals (the least recently active
    one is forgotten first, and any idle for an hour as soon as it is seen),
    `max_events` times per counter and window, `max_resources` resources per
    window, `max_buckets` buckets (full buckets, which carry no state, go first);
    principals and resources are kept as 16-byte `fingerprint`s, whatever their size.
    """

    def __init__(
        self,
        max_principals: int = 100_000,
        *,
        max_events: int = MAX_EVENTS,
        max_resources: int = MAX_RESOURCES,
        max_buckets: int = MAX_BUCKETS,
    ) -> None:
        self._windows: OrderedDict[bytes, _Windows] = OrderedDict()
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._max = max_principals
        self._max_events = max_events
        self._max_resources = max_resources
        self._max_buckets = max_buckets

    async def observe(self, principal: str, resource: str, now: float) -> Stats:
        self._forget_idle(now)
        who = fingerprint(principal)
        w = self._windows.get(who)
        if w is None:
            while len(self._windows) >= self._max:
                self._windows.popitem(last=False)
            w = self._windows[who] = _Windows(self._max_events)
        else:
            self._windows.move_to_end(who)
        now = w.clamp(now)
        w.slide(now)
        for q in w.calls:
            q.append(now)
        if resource:
            what = fingerprint(resource)
            for seen in w.seen:
                _see(seen, what, now, self._max_resources)
        return Stats(
            calls_1m=len(w.calls[0]),
            calls_1h=len(w.calls[1]),
            denials_1m=len(w.denials[0]),
            denials_1h=len(w.denials[1]),
            resources_1m=len(w.seen[0]),
            resources_1h=len(w.seen[1]),
        )

    async def outcome(self, principal: str, denied: bool, now: float) -> None:
        if denied:
            w = self._windows.get(fingerprint(principal))
            if w is not None:
                now = w.clamp(now)
                for q in w.denials:
                    q.append(now)

    async def take(self, key: str, spec: BucketSpec, now: float) -> bool:
        """One token from `key`'s bucket; a bucket whose spec changed (a reload) restarts full."""
        bucket = self._buckets.get(key)
        if bucket is None or (bucket.capacity, bucket.per_second) != (
            spec.capacity,
            spec.per_second,
        ):
            self._buckets.pop(key, None)
            while self._buckets and (
                len(self._buckets) >= self._max_buckets
                or next(iter(self._buckets.values())).full_at(now)
            ):
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = TokenBucket(spec, now)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now)

    def _forget_idle(self, now: float) -> None:
        """Drop the least recently active principals while they have been idle for an hour."""
        horizon = now - WINDOWS["1h"]
        while self._windows:
            first = next(iter(self._windows.values()))
            if first.latest > horizon:
                return
            self._windows.popitem(last=False)

    async def close(self) -> None:
        self._windows.clear()
        self._buckets.clear()
