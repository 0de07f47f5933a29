"""`Engine.admit`: token buckets with an injected clock, and under many threads."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from engine_support import engine_for

from mcpdsl.engine import Engine

SOURCE = """
integration crm {
  call GET "https://crm.internal/x"
  limit 10/s burst 20
}

integration slow {
  call GET "https://slow.internal/x"
  limit 6/m
}

gateway edge {
  listen 8443
  limit 100/s burst 150
  route "/**" -> service api
}

balance api {
  limit 2/s burst 4 per client-ip
}
"""


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return engine_for(tmp_path, SOURCE)


def test_burst_then_refill(engine: Engine) -> None:
    assert all(engine.admit("integration:crm", now=0.0) for _ in range(20))
    assert not engine.admit("integration:crm", now=0.0)
    assert not engine.admit("integration:crm", now=0.05)  # half a token
    assert engine.admit("integration:crm", now=0.1)  # 10/s: one token per 0.1s
    assert not engine.admit("integration:crm", now=0.1)
    assert sum(engine.admit("integration:crm", now=100.0) for _ in range(30)) == 20  # capped


def test_capacity_defaults_to_the_rate_amount(engine: Engine) -> None:
    assert sum(engine.admit("integration:slow", now=0.0) for _ in range(10)) == 6
    assert not engine.admit("integration:slow", now=5.0)  # 6/m: a token every 10s
    assert engine.admit("integration:slow", now=10.0)


def test_per_client_buckets(engine: Engine) -> None:
    assert sum(engine.admit("service:api:10.0.0.1", now=0.0) for _ in range(10)) == 4
    assert sum(engine.admit("service:api:10.0.0.2", now=0.0) for _ in range(10)) == 4
    assert engine.admit("service:api:10.0.0.1", now=0.5)  # 2/s


def test_clock_going_backwards_does_not_refill(engine: Engine) -> None:
    assert sum(engine.admit("integration:crm", now=10.0) for _ in range(25)) == 20
    assert not engine.admit("integration:crm", now=5.0)


def test_unknown_key(engine: Engine) -> None:
    with pytest.raises(KeyError, match="no `limit` for key `gateway:nope`"):
        engine.admit("gateway:nope")


def test_real_clock(engine: Engine) -> None:
    assert engine.admit("gateway:edge")


def test_threads_never_over_admit(engine: Engine) -> None:
    admitted = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        count = 0
        for _ in range(100):
            if engine.admit("gateway:edge", now=1.0):
                count += 1
        admitted.append(count)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(admitted) == 150  # exactly the burst, no token handed out twice


def test_threads_with_refill(engine: Engine) -> None:
    # 8 threads x 200 calls spread over 2 simulated seconds: 150 + 2 x 100 refilled
    results: list[int] = []

    def worker(offset: int) -> None:
        results.append(
            sum(engine.admit("gateway:edge", now=(i * 8 + offset) / 800) for i in range(200))
        )

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 150 <= sum(results) <= 150 + 200 + 1
