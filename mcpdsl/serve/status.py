"""What policy the server runs, and why the last reload was refused (`/v1/status`, `/ready`).

The engine reloads in its watch thread and reports every reload to the
callbacks given to `Engine.load` (`on_reload` when a policy was installed,
`on_error` when the last good one was kept).  `PolicyStatus` turns those
reports into metrics (`mcpdsl_reloads_total{outcome}`,
`mcpdsl_load_failures_total`, `mcpdsl_policy_loaded_timestamp_seconds`), one
line on standard error, and a snapshot the HTTP side reads.  The snapshot is
an immutable value replaced by one assignment, so the event loop never sees a
half-updated status.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mcpdsl.serve.metrics import Metrics

if TYPE_CHECKING:
    from mcpdsl.engine import Engine, Reload
    from mcpdsl.evaluate.project import PreparedProject


def policy_digest(prepared: PreparedProject) -> str:
    """`sha256:<hex>` of the policy's IR: the same for the same policy, tree or build."""
    data = prepared.project.model_dump_json().encode("utf-8")
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Snapshot:
    """The policy in force and the last reload."""

    source: str
    digest: str
    loaded_at: str
    policies: int
    rules: int
    detail: str = ""  # e.g. "verified, signed by KEY at TIME, revision N"
    reloads: int = 0
    last_reload: dict[str, Any] | None = None
    last_error: dict[str, Any] | None = None

    def as_data(self) -> dict[str, Any]:
        return asdict(self)


class PolicyStatus:
    """Reload reports in, metrics + stderr line + snapshot out (callbacks for `Engine.load`)."""

    def __init__(
        self,
        source: str,
        metrics: Metrics,
        *,
        say: Callable[[str], object] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.metrics = metrics
        self._say = say
        self._clock = clock
        self.engine: Engine | None = None
        self.snapshot: Snapshot | None = None

    def attach(self, engine: Engine, detail: str = "") -> None:
        """The engine's first policy is in force (called once, after `Engine.load`)."""
        self.engine = engine
        now = self._clock()
        self.snapshot = self._describe(engine.compiled, now, detail)
        self.metrics.ready.set(1)
        self.metrics.policy_revision.set(now)

    def _describe(self, prepared: PreparedProject, now: float, detail: str) -> Snapshot:
        project = prepared.project
        return Snapshot(
            source=self.source,
            digest=policy_digest(prepared),
            loaded_at=_iso(now),
            policies=len(project.policies),
            rules=sum(len(p.rules) for p in project.policies),
            detail=detail,
        )

    @staticmethod
    def _report(result: Reload, now: float) -> dict[str, Any]:
        return {
            "ok": result.ok,
            "at": _iso(now),
            "message": result.message,
            "changed": list(result.changed),
        }

    def on_reload(self, result: Reload) -> None:
        """A reload installed a new policy (or the source recovered)."""
        now = self._clock()
        engine, old = self.engine, self.snapshot
        if engine is None or old is None:
            return
        report = self._report(result, now)
        if result.swapped:
            new = self._describe(engine.compiled, now, _detail(result.message))
            self.metrics.reloads.labels("installed").inc()
            self.metrics.policy_revision.set(now)
        else:
            new = old
            self.metrics.reloads.labels("unchanged").inc()
        self.snapshot = Snapshot(
            **{**new.as_data(), "reloads": old.reloads + 1, "last_reload": report,
               "last_error": None}
        )  # fmt: skip
        self._line(f"mcpdsl serve: {result.message}; policy {self.snapshot.digest}")

    def on_error(self, result: Reload) -> None:
        """A reload was refused: the last good policy stays in force."""
        now = self._clock()
        self.metrics.reloads.labels("refused").inc()
        self.metrics.load_failures.inc()
        old = self.snapshot
        report = self._report(result, now)
        if old is not None:
            self.snapshot = Snapshot(
                **{**old.as_data(), "reloads": old.reloads + 1, "last_reload": report,
                   "last_error": report}
            )  # fmt: skip
        self._line(f"mcpdsl serve: reload refused: {result.message}")

    def _line(self, text: str) -> None:
        if self._say is not None:
            self._say(text)


def _detail(message: str) -> str:
    """The `(verified, signed by ...)` part of a reload message, if any."""
    start = message.find("(verified")
    if start < 0:
        return ""
    end = message.find(")", start)
    return message[start + 1 : end] if end > 0 else ""


__all__ = ["PolicyStatus", "Snapshot", "policy_digest"]
