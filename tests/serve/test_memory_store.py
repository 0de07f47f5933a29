"""`MemoryStore`: exact sliding windows (against a by-definition model), caps, bounded memory."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from mcpdsl.evaluate.limits import BucketSpec
from mcpdsl.serve.store import MemoryStore, Stats

EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.sampled_from(["", "r1", "r2", "r3", "r4"]),
        st.sampled_from([0.0, 0.5, 1.0, 30.0, 59.5, 60.0, 60.5, 600.0, 3599.0, 3600.0, -5.0]),
        st.booleans(),
    ),
    max_size=80,
)


def model(history: list[tuple[float, str, bool]], now: float, cap: int, rcap: int) -> Stats:
    """The counters by their definition: events in (now - window, now], saturating at the caps."""

    def within(span: int) -> tuple[int, int, int]:
        events = [e for e in history if e[0] > now - span]
        calls = len(events)
        denials = sum(1 for e in events[:-1] if e[2])  # the current call's outcome is not known
        resources = len({e[1] for e in events if e[1]})
        return min(calls, cap), min(denials, cap), min(resources, rcap)

    (c1, d1, r1), (ch, dh, rh) = within(60), within(3600)
    return Stats(c1, ch, d1, dh, r1, rh)


@given(EVENTS)
def test_windows_are_exact(events: list[tuple[str, str, float, bool]]) -> None:
    async def go() -> None:
        store = MemoryStore(max_events=6, max_resources=2)
        histories: dict[str, list[tuple[float, str, bool]]] = {}
        clocks: dict[str, float] = {}
        now = 1000.0
        for principal, resource, step, denied in events:
            now += step  # may step back: a principal's clock then stands still
            t = clocks[principal] = max(clocks.get(principal, now), now)
            history = histories.setdefault(principal, [])
            history.append((t, resource, False))
            got = await store.observe(principal, resource, now)
            assert got == model(history, t, 6, 2)
            await store.outcome(principal, denied, now)
            history[-1] = (t, resource, denied)

    asyncio.run(go())


def test_window_boundaries() -> None:
    async def go() -> list[Stats]:
        s = MemoryStore()
        await s.observe("p", "r", 0.0)
        await s.outcome("p", True, 0.0)
        return [await s.observe("p", "q", t) for t in (59.999, 60.0, 3600.0)]

    near, minute, hour = asyncio.run(go())
    assert near == Stats(2, 2, 1, 1, 2, 2)
    assert minute == Stats(2, 3, 0, 1, 1, 2)  # the first call (t=0) left the minute at t=60
    assert hour == Stats(1, 3, 0, 0, 1, 1)  # (0, 3600] holds the calls at 59.999, 60 and 3600


def test_principals_are_bounded() -> None:
    async def go() -> list[int]:
        s = MemoryStore(max_principals=2)
        for p in ("a", "b", "a", "c"):  # c evicts b, the least recently active
            await s.observe(p, "", 0.0)
        return [(await s.observe(p, "", 1.0)).calls_1h for p in ("a", "b")]

    assert asyncio.run(go()) == [3, 1]  # a kept its two calls, b started over


def test_idle_principals_are_forgotten() -> None:
    async def go() -> int:
        s = MemoryStore()
        for i in range(50):
            await s.observe(f"p{i}", "r", 0.0)
        await s.observe("late", "r", 3600.0)
        return len(s._windows)

    assert asyncio.run(go()) == 1


def test_buckets_are_bounded_and_full_ones_go_first() -> None:
    spec = BucketSpec(1.0, 1e-6, "x")

    async def go() -> list[bool]:
        s = MemoryStore(max_buckets=2)
        assert await s.take("a", spec, 0.0)
        assert await s.take("b", spec, 0.0)
        assert await s.take("c", spec, 0.0)  # evicts a (least recently used)
        return [await s.take(k, spec, 0.0) for k in ("b", "a")]

    assert asyncio.run(go()) == [False, True]  # a restarted full: memory is bounded
