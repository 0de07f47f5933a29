"""The circuit breaker as a pure state machine, driven by hypothesis through any interleaving.

A reference model written independently of `mcpdsl.serve.breaker` (an explicit
mode, a run counter, the probe's identity) runs beside it; after every step the
two must agree on what a caller sees, and the invariants of docs/mcp-upstreams.md
must hold: while open nothing passes, while half-open at most one probe is in
flight, N failures in a row from closed open the circuit, only the probe's verdict
leaves half-open.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from mcpdsl.serve import breaker as br


@dataclass
class Reference:
    """The breaker as the docs describe it, spelled the obvious way."""

    threshold: int
    open_for: float
    mode: str = "closed"
    run: int = 0
    until: float = 0.0
    probe: int | None = None  # the id of the call that is the probe

    def seen(self, now: float) -> str:
        if self.mode == "open" and now >= self.until:
            return "half-open"
        return self.mode

    def admit(self, now: float, call: int) -> str | None:
        state = self.seen(now)
        if state == "closed":
            return "call"
        if state == "open" or self.probe is not None:
            return None
        self.probe = call
        return "probe"

    def end(self, call: int, ok: bool | None, now: float) -> None:
        if self.probe == call:
            self.probe = None
            if ok is None:
                return
            if ok:
                self.mode, self.run = "closed", 0
            else:
                self.mode, self.until = "open", now + self.open_for
            return
        if ok is None or self.mode != "closed":
            return
        if ok:
            self.run = 0
            return
        self.run += 1
        if self.run >= self.threshold:
            self.mode, self.until = "open", now + self.open_for


class BreakerMachine(RuleBasedStateMachine):
    calls = Bundle("calls")

    def __init__(self) -> None:
        super().__init__()
        self.threshold = 3
        self.open_for = 10.0
        self.now = 0.0
        self.state = br.BreakerState()
        self.model = Reference(self.threshold, self.open_for)
        self.next_id = 0
        self.in_flight: dict[int, br.Ticket] = {}

    @rule(threshold=st.integers(1, 4), open_for=st.sampled_from([0.5, 1.0, 10.0]))
    @precondition(lambda self: self.next_id == 0)
    def configure(self, threshold: int, open_for: float) -> None:
        self.threshold, self.open_for = threshold, open_for
        self.model = Reference(threshold, open_for)

    @rule(step=st.sampled_from([0.0, 0.25, 0.5, 1.0, 5.0, 10.0]))
    def wait(self, step: float) -> None:
        self.now += step

    @rule(target=calls)
    def arrive(self) -> int:
        self.next_id += 1
        call = self.next_id
        self.state, ticket = br.admit(self.state, self.now, self.open_for)
        assert ticket == self.model.admit(self.now, call)
        if ticket is not None:
            self.in_flight[call] = ticket
        return call

    @rule(call=consumes(calls), verdict=st.sampled_from([True, False, None]))
    def finish(self, call: int, verdict: bool | None) -> None:
        ticket = self.in_flight.pop(call, None)
        if ticket is None:
            return  # refused at admission: nothing to settle
        if verdict is None:
            self.state = br.abandon(self.state, ticket)
        else:
            self.state = br.settle(
                self.state,
                ticket,
                ok=verdict,
                now=self.now,
                failures=self.threshold,
                open_for=self.open_for,
            )
        self.model.end(call, verdict, self.now)

    @invariant()
    def agrees_with_reference(self) -> None:
        assert br.state_at(self.state, self.now, self.open_for) == self.model.seen(self.now)

    @invariant()
    def at_most_one_probe(self) -> None:
        probes = [c for c, t in self.in_flight.items() if t == "probe"]
        assert len(probes) <= 1
        assert self.state.probing == bool(probes)

    @invariant()
    def open_refuses(self) -> None:
        if br.state_at(self.state, self.now, self.open_for) == "open":
            assert br.admit(self.state, self.now, self.open_for)[1] is None


TestBreakerMachine = BreakerMachine.TestCase
TestBreakerMachine.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


@given(n=st.integers(1, 10), t=st.floats(0.1, 100))
def test_n_failures_open_exactly_at_the_nth(n: int, t: float) -> None:
    state = br.BreakerState()
    for i in range(n):
        assert br.state_at(state, 0.0, t) == "closed"
        state, ticket = br.admit(state, 0.0, t)
        assert ticket == "call"
        state = br.settle(state, ticket, ok=False, now=0.0, failures=n, open_for=t)
        assert br.state_at(state, 0.0, t) == ("open" if i == n - 1 else "closed")
    assert br.state_at(state, t, t) == "half-open"


def test_success_resets_the_run() -> None:
    state = br.BreakerState()
    for ok in (False, False, True, False, False):
        state = br.settle(state, "call", ok=ok, now=0.0, failures=3, open_for=1.0)
    assert br.state_at(state, 0.0, 1.0) == "closed"


def test_late_call_does_not_close_an_open_circuit() -> None:
    opened = br.BreakerState(failures=1, opened_at=0.0)
    assert br.settle(opened, "call", ok=True, now=0.5, failures=1, open_for=1.0) == opened
