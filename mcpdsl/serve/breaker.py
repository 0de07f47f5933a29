"""The circuit breaker of one upstream, as a pure state machine.

Why a value and pure functions rather than an object with a lock: the MCP
gateway keeps one `BreakerState` per integration and replaces it after every
transition, so the whole behaviour is three functions of (state, time) that a
property test can drive through any interleaving of calls without a network,
threads or a real clock.  The gateway runs on one asyncio loop, so "acquire the
probe" is a single synchronous step: no two calls can both see `half-open`
with no probe in flight.

The machine (`breaker N failures open T` of an integration, docs/mcp-upstreams.md):

* `closed`: every call goes through; a failed call (after its retries) adds one to
  the run of consecutive failures, a successful one resets it; the N-th failure in a
  row opens the circuit at that moment;
* `open` for T seconds after it opened: every call is refused at once (no network);
* `half-open` once T has passed: exactly one call, the probe, goes through, and every
  other call is refused while it is in flight; its success closes the circuit, its
  failure opens it again for T.  A probe that ends without a verdict (the caller
  was cancelled) gives its slot back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

State = Literal["closed", "open", "half-open"]
#: What `admit` hands an admitted call: an ordinary call (closed) or the half-open probe.
Ticket = Literal["call", "probe"]


@dataclass(frozen=True)
class BreakerState:
    """Where one upstream's breaker stands (the initial value is closed, no failures)."""

    failures: int = 0  # consecutive failed calls while closed
    opened_at: float | None = None  # when it last opened; None: closed
    probing: bool = False  # a half-open probe is in flight


def state_at(state: BreakerState, now: float, open_for: float) -> State:
    """The state as a caller arriving at `now` sees it."""
    if state.opened_at is None:
        return "closed"
    if now < state.opened_at + open_for:
        return "open"
    return "half-open"


def admit(state: BreakerState, now: float, open_for: float) -> tuple[BreakerState, Ticket | None]:
    """Whether a call arriving at `now` may go to the network, and the state after it.

    Closed: yes, as an ordinary `call`.  Open: no (None).  Half-open: yes for the
    first caller, as the `probe`, and no for every caller while that probe is in
    flight.  The ticket goes back to `settle` or `abandon`: only the probe's
    verdict decides a half-open circuit, never a call admitted before it opened.
    """
    current = state_at(state, now, open_for)
    if current == "closed":
        return state, "call"
    if current == "open" or state.probing:
        return state, None
    return replace(state, probing=True), "probe"


def settle(
    state: BreakerState, ticket: Ticket, *, ok: bool, now: float, failures: int, open_for: float
) -> BreakerState:
    """The state after an admitted call ended: `ok`, or failed (timeout, connect, reset, 5xx).

    `failures` is the declared threshold N (>= 1).  The probe's verdict closes or
    re-opens the circuit.  An ordinary call that ends after the circuit opened
    (it was admitted just before other calls opened it) changes nothing: the
    circuit stays open for its full time and only its probe may close it.
    """
    if ticket == "probe":
        return BreakerState() if ok else BreakerState(failures=state.failures, opened_at=now)
    if state.opened_at is not None:
        return state
    if ok:
        return BreakerState()
    run = state.failures + 1
    if run >= max(1, failures):
        return BreakerState(failures=run, opened_at=now)
    return BreakerState(failures=run)


def abandon(state: BreakerState, ticket: Ticket) -> BreakerState:
    """An admitted call ended without a verdict (cancelled): a probe gives its slot back."""
    return replace(state, probing=False) if ticket == "probe" else state
