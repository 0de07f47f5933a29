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


class _Window:
    """Events of the last `span` seconds at one-second resolution, with a running total.

    Appending and pruning are amortised O(1), so a principal making thousands of
    calls a minute costs the same per call as one making a few.
    """

    __slots__ = ("buckets", "span", "total")

    def __init__(self, span: int) -> None:
        self.span = span
        self.buckets: deque[list[int]] = deque()  # [second, count], oldest first
        self.total = 0

    def add(self, second: int) -> None:
        if self.buckets and self.buckets[-1][0] == second:
            self.buckets[-1][1] += 1
        else:
            self.buckets.append([second, 1])
        self.total += 1

    def prune(self, second: int) -> int:
        """Drop what is older than the window ending at `second`; the count left."""
        horizon = second - self.span
        while self.buckets and self.buckets[0][0] <= horizon:
            self.total -= self.buckets.popleft()[1]
        return self.total


class _Windows:
    """One principal's windows: calls and denials per minute and hour, resources last seen."""

    __slots__ = ("calls", "denials", "seen")

    def __init__(self) -> None:
        self.calls = {name: _Window(span) for name, span in WINDOWS.items()}
        self.denials = {name: _Window(span) for name, span in WINDOWS.items()}
        self.seen: dict[str, int] = {}  # resource -> the last second it was called

    def last(self) -> int:
        hour = self.calls["1h"].buckets
        return hour[-1][0] if hour else -(2**62)


#: Distinct resources remembered per principal; beyond it the counts saturate.
MAX_RESOURCES = 10_000


class MemoryStore:
    """A `Store` in this process (one replica): windows at one-second resolution, token buckets.

    Its methods never await, so on one event loop each runs atomically.
    """

    def __init__(self, max_principals: int = 100_000) -> None:
        self._windows: dict[str, _Windows] = {}
        self._limiter = Limiter()
        self._max = max_principals

    async def observe(self, principal: str, resource: str, now: float) -> Stats:
        second = int(now)
        w = self._windows.get(principal)
        if w is None:
            if len(self._windows) >= self._max:
                self._evict(second)
            w = self._windows[principal] = _Windows()
        for window in w.calls.values():
            window.add(second)
        seen = w.seen
        if resource and (resource in seen or len(seen) < MAX_RESOURCES):
            seen.pop(resource, None)
            seen[resource] = second  # insertion order = last-seen order
        hour = second - WINDOWS["1h"]
        while seen:
            oldest = next(iter(seen))
            if seen[oldest] > hour:
                break
            del seen[oldest]
        return Stats(
            calls_1m=w.calls["1m"].prune(second),
            calls_1h=w.calls["1h"].prune(second),
            denials_1m=w.denials["1m"].prune(second),
            denials_1h=w.denials["1h"].prune(second),
            resources_1m=_recent(seen, second - WINDOWS["1m"]),
            resources_1h=len(seen),
        )

    async def outcome(self, principal: str, denied: bool, now: float) -> None:
        if denied:
            w = self._windows.get(principal)
            if w is not None:
                for window in w.denials.values():
                    window.add(int(now))

    async def take(self, key: str, spec: BucketSpec, now: float) -> bool:
        return self._limiter.admit({key: spec}, key, now)

    def _evict(self, second: int) -> None:
        """Drop principals idle for an hour; then the oldest, so memory stays bounded."""
        horizon = second - WINDOWS["1h"]
        for p in [p for p, w in self._windows.items() if w.last() <= horizon]:
            del self._windows[p]
        while len(self._windows) >= self._max:
            del self._windows[next(iter(self._windows))]

    async def close(self) -> None:
        self._windows.clear()


def _recent(seen: dict[str, int], since: int) -> int:
    """How many resources were last seen after `since` (the newest are at the end of `seen`)."""
    n = 0
    for second in reversed(seen.values()):
        if second <= since:
            break
        n += 1
    return n
