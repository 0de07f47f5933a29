"""The compiled engine is immutable: many threads get the same answers as one."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from engine_support import REPO, request

from mcpdsl.engine import Engine


def _requests(engine: Engine, n: int) -> list[dict[str, Any]]:
    rnd = random.Random(7)
    rules = [r for p in engine.project.policies for r in p.rules]
    out = []
    for _ in range(n):
        rule = rnd.choice(rules)
        ptype = rule.principal.type or "user"
        pid = rnd.choice(rule.principal.ids) if rule.principal.ids else "someone"
        rtype = rule.resource.type or "service"
        rid = rnd.choice(rule.resource.ids) if rule.resource.ids else "something"
        action = rnd.choice(rule.actions) if rule.actions else "GET"
        path = (rule.path or "/v1/x").replace("**", "a/b").replace("*", "s")
        out.append(
            request(
                (ptype, pid),
                action,
                (rtype, rid),
                path,
                request__auth__mfa=rnd.random() < 0.5,
                context__device__managed=rnd.random() < 0.5,
                context__failed_logins=rnd.randrange(10),
                source__namespace=rnd.choice(["data", "web"]),
            )
        )
    return out


def test_many_threads_same_decisions() -> None:
    engine = Engine.load(REPO / "policies")
    reqs = _requests(engine, 400)
    expected = [engine.authorize(r) for r in reqs]
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(seed: int) -> list[int]:
        barrier.wait()
        rnd = random.Random(seed)
        order = list(range(len(reqs)))
        rnd.shuffle(order)
        bad = []
        for i in order * 3:
            try:
                if engine.authorize(reqs[i]) != expected[i]:
                    bad.append(i)
            except BaseException as exc:
                errors.append(exc)
        return bad

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(worker, range(8)))
    assert not errors
    assert all(not bad for bad in results)


def test_threads_mix_every_entry_point() -> None:
    engine = Engine.load(REPO / "policies")
    gateway = engine.project.gateways[0].name
    integration = next(i.name for i in engine.project.integrations if i.mappings)
    scale = engine.project.scales[0].service.name
    reqs = _requests(engine, 50)
    base_route = [engine.route(gateway, "GET", p) for p in ("/v1/x", "/mcp", "/nope")]
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(200):
                engine.authorize(reqs[i % len(reqs)])
                assert [
                    engine.route(gateway, "GET", p) for p in ("/v1/x", "/mcp", "/nope")
                ] == base_route
                try:
                    engine.transform(integration, {})
                except Exception as exc:
                    assert type(exc).__name__ == "TransformError"
                engine.scale(scale, {}, 3, now=0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
