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

from collections import deque
from dataclasses import dataclass
from typing import Protocol

from mcpdsl.evaluate.limits import BucketSpec, Limiter

#: The sliding windows, in seconds, by the suffix of their attribute names.
WINDOWS: dict[str, int] = {"1m": 60, "1h": 3600}
#: The counters the server maintains per principal (`stats.principal.<name>_<window>`).
COUNTERS: tuple[str, ...] = ("calls", "denials", "resources")


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


class _Windows:
    """Exact sliding windows for one principal: event times (and resources) of the last hour."""

    __slots__ = ("calls", "denials", "seen")

    def __init__(self) -> None:
        self.calls: deque[float] = deque()
        self.denials: deque[float] = deque()
        self.seen: dict[str, float] = {}

    def prune(self, now: float) -> None:
        horizon = now - WINDOWS["1h"]
        for q in (self.calls, self.denials):
            while q and q[0] <= horizon:
                q.popleft()
        if len(self.seen) > 64 and min(self.seen.values()) <= horizon:
            self.seen = {r: t for r, t in self.seen.items() if t > horizon}

    @staticmethod
    def count(q: deque[float], since: float) -> int:
        n = 0
        for t in reversed(q):
            if t <= since:
                break
            n += 1
        return n


class MemoryStore:
    """A `Store` in this process (one replica): exact windows, the engine's token buckets.

    Its methods never await, so on one event loop each runs atomically.
    """

    def __init__(self, max_principals: int = 100_000) -> None:
        self._windows: dict[str, _Windows] = {}
        self._limiter = Limiter()
        self._max = max_principals

    async def observe(self, principal: str, resource: str, now: float) -> Stats:
        w = self._windows.get(principal)
        if w is None:
            if len(self._windows) >= self._max:
                self._evict(now)
            w = self._windows[principal] = _Windows()
        w.prune(now)
        w.calls.append(now)
        if resource:
            w.seen[resource] = now
        m1, h1 = now - WINDOWS["1m"], now - WINDOWS["1h"]
        return Stats(
            calls_1m=_Windows.count(w.calls, m1),
            calls_1h=_Windows.count(w.calls, h1),
            denials_1m=_Windows.count(w.denials, m1),
            denials_1h=_Windows.count(w.denials, h1),
            resources_1m=sum(1 for t in w.seen.values() if t > m1),
            resources_1h=sum(1 for t in w.seen.values() if t > h1),
        )

    async def outcome(self, principal: str, denied: bool, now: float) -> None:
        if denied:
            w = self._windows.get(principal)
            if w is not None:
                w.denials.append(now)

    async def take(self, key: str, spec: BucketSpec, now: float) -> bool:
        return self._limiter.admit({key: spec}, key, now)

    def _evict(self, now: float) -> None:
        """Drop principals idle for an hour; then the oldest, so memory stays bounded."""
        horizon = now - WINDOWS["1h"]
        idle = [p for p, w in self._windows.items() if not w.calls or w.calls[-1] <= horizon]
        for p in idle:
            del self._windows[p]
        while len(self._windows) >= self._max:
            del self._windows[next(iter(self._windows))]

    async def close(self) -> None:
        self._windows.clear()
