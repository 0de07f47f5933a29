"""`Engine.admit`: thread-safe token buckets for the `limit` clauses.

Keys (one bucket per key):

* `gateway:<name>` - a gateway's `limit`;
* `integration:<name>` - an integration's `limit`;
* `service:<name>` or `service:<name>:<client>` - a `balance` block's `limit`
  (`per client-ip` gives every client, e.g. `service:api:10.1.2.3`, its own bucket).

A bucket holds `burst` tokens (the rate's amount when there is no burst),
starts full and refills continuously at amount/period per second; `admit`
takes one token or says no.  Idle buckets of per-client keys are dropped
when there are more than `MAX_BUCKETS` of them (a full bucket carries no state).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from mcpdsl.ir import model as m

MAX_BUCKETS = 100_000
#: A `now` this many seconds before a bucket's last one re-anchors the bucket.
MAX_CLOCK_SKEW = 3600.0
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class BucketSpec:
    capacity: float
    per_second: float
    source: str


class TokenBucket:
    __slots__ = ("_lock", "capacity", "last", "per_second", "tokens")

    def __init__(self, spec: BucketSpec, now: float) -> None:
        self.capacity = spec.capacity
        self.per_second = spec.per_second
        self.tokens = spec.capacity
        self.last = now
        self._lock = threading.Lock()

    def take(self, now: float) -> bool:
        with self._lock:
            elapsed = now - self.last
            if elapsed > 0:
                self.tokens = min(self.capacity, self.tokens + elapsed * self.per_second)
                self.last = now
            elif elapsed < -MAX_CLOCK_SKEW:
                # the clock went back by more than an hour (an earlier `now` was
                # bogus, far ahead): count from here, else the bucket would not
                # refill until the clock caught up (a frozen bucket).  Smaller
                # steps back (threads with interleaved clocks) are ignored, so
                # they never refill an interval twice.
                self.last = now
            if self.tokens >= 1 - _EPSILON:
                self.tokens -= 1
                return True
            return False

    def full_at(self, now: float) -> bool:
        return self.tokens + max(0.0, now - self.last) * self.per_second >= self.capacity


def spec_of(limit: m.Limit, source: str) -> BucketSpec:
    capacity = float(limit.burst) if limit.burst is not None else float(limit.rate.amount)
    return BucketSpec(capacity, float(limit.rate.amount / limit.rate.per), source)


def limit_specs(project: m.Project) -> dict[str, BucketSpec]:
    """Bucket specs by key prefix (`gateway:public`, `service:api`, ...)."""
    specs: dict[str, BucketSpec] = {}
    for g in project.gateways:
        if g.limit is not None:
            specs[f"gateway:{g.name}"] = spec_of(g.limit, f"gateway `{g.name}`")
    for i in project.integrations:
        if i.limit is not None:
            specs[f"integration:{i.name}"] = spec_of(i.limit, f"integration `{i.name}`")
    for b in project.balances:
        if b.limit is not None:
            specs[f"service:{b.service.name}"] = spec_of(b.limit, f"balance `{b.name}`")
    return specs


def _seconds(now: object) -> float:
    """`now` as float seconds; ValueError for anything else, an int too large for a float too."""
    if isinstance(now, (int, float)) and not isinstance(now, bool):
        try:
            value = float(now)
        except OverflowError:
            value = math.inf
        if math.isfinite(value):
            return value
    shown = repr(now) if not isinstance(now, int) or abs(now) < 10**30 else "a huge integer"
    raise ValueError(f"`now` must be a finite number of seconds, found {shown}")


class Limiter:
    """Every bucket of one engine; safe to call from many threads."""

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}
        self._prune_lock = threading.Lock()

    def admit(self, specs: Mapping[str, BucketSpec], key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else _seconds(now)
        if not isinstance(key, str):
            raise KeyError(f"a limit key is a string, found {key!r}")
        bucket = self._buckets.get(key)
        if bucket is None:
            spec = specs.get(key)
            if spec is None and key.startswith("service:"):
                spec = specs.get(":".join(key.split(":", 2)[:2]))
            if spec is None:
                known = ", ".join(sorted(specs)) or "none"
                raise KeyError(f"no `limit` for key `{key}` (limits: {known})")
            if len(self._buckets) >= MAX_BUCKETS:
                self._prune(now)
            bucket = self._buckets.setdefault(key, TokenBucket(spec, now))
        return bucket.take(now)

    def _prune(self, now: float) -> None:
        with self._prune_lock:
            if len(self._buckets) < MAX_BUCKETS:
                return
            for key, bucket in list(self._buckets.items()):
                if bucket.full_at(now):
                    self._buckets.pop(key, None)

    def retune(self, specs: Mapping[str, BucketSpec]) -> None:
        """After a reload: drop the buckets whose `limit` changed or went away.

        A dropped bucket restarts full under its new spec on its next `admit`;
        buckets whose limit is unchanged keep their tokens.
        """
        for key, bucket in list(self._buckets.items()):
            spec = specs.get(key)
            if spec is None and key.startswith("service:"):
                spec = specs.get(":".join(key.split(":", 2)[:2]))
            if spec is None or (spec.capacity, spec.per_second) != (
                bucket.capacity,
                bucket.per_second,
            ):
                self._buckets.pop(key, None)

    def reset(self) -> None:
        self._buckets.clear()
