"""`mcpdsl.Engine`: in-process decisions from a compiled policy tree.

Everything compiled lives in ONE immutable `PreparedProject` held by
`Engine._compiled`; a reload builds a new one and swaps that single
attribute (an atomic reference assignment), so readers never see a mix:
every entry point reads `self._compiled` exactly once per call.
Token buckets (`admit`) and the decision-log sink are the only mutable state
and are safe to share between threads.  Reloads, sources and watching live
in `mcpdsl.engine.reload`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mcpdsl.engine.decision_log import DEFAULT_MASK, DecisionLog, Sink
from mcpdsl.evaluate.limits import Limiter
from mcpdsl.evaluate.policy import Decision
from mcpdsl.evaluate.project import PreparedProject, prepare_project
from mcpdsl.evaluate.route import PreparedGateway, RouteDecision, find
from mcpdsl.evaluate.scale import ScaleDecision, ScaleError, decide, find_scale
from mcpdsl.evaluate.transform import PreparedTransform
from mcpdsl.ir import model as m
from mcpdsl.ir.paths import PathRejected

_log = logging.getLogger("mcpdsl.engine")

if TYPE_CHECKING:
    from mcpdsl.engine.reload import EngineWatch, PolicySource, Reload, ReloadCallback, Trust


class Engine:
    """Authorize, scale, route, transform and rate-limit with a compiled policy tree.

    >>> engine = Engine.load("policies/")            # doctest: +SKIP
    >>> engine.authorize({"principal": {"type": "service", "id": "frontend"}, ...}).allowed  # doctest: +SKIP
    """

    def __init__(
        self,
        compiled: PreparedProject,
        *,
        decision_log: Sink | DecisionLog | None = None,
        mask: Iterable[str] = DEFAULT_MASK,
        source: PolicySource | None = None,
        on_reload: ReloadCallback | None = None,
        on_error: ReloadCallback | None = None,
    ) -> None:
        self._compiled = compiled  # the ONE reference a reload swaps
        self._log = (
            decision_log if isinstance(decision_log, DecisionLog) or decision_log is None
            else DecisionLog(decision_log, mask)
        )  # fmt: skip
        self._limiter = Limiter()
        self._source = source  # where reload() reads from; None for from_project
        self._on_reload = on_reload
        self._on_error = on_error
        self._reload_lock = threading.Lock()  # one reload at a time; readers never lock
        self._failing = False  # the last reload failed (the next good one is reported)
        self._watches: list[EngineWatch] = []

    # ------------------------------------------------------------ loading

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        decision_log: Sink | DecisionLog | None = None,
        mask: Iterable[str] = DEFAULT_MASK,
        trust: Trust | None = None,
        allow_unsigned: bool = False,
        on_reload: ReloadCallback | None = None,
        on_error: ReloadCallback | None = None,
    ) -> Engine:
        """An engine for a policy tree or a signed build directory.

        A tree (a directory of `.mcp` files, or one file) is compiled; errors
        raise `mcpdsl.CompileError`.  With `trust=` (a `Keyring` or a keyring
        path) `path` must be a signed build (`mcpdsl build` + `mcpdsl sign`): it
        is verified with `mcpdsl.trust.verify_build` and the policy is loaded
        from the verified `ir/project.json` bytes; a refusal raises
        `mcpdsl.trust.TrustError` (`reason`, `kind`).  A build directory without
        `trust=` is refused (`BundleError`, kind `unsigned`) unless
        `allow_unsigned=True`.  `on_reload` / `on_error` receive a `Reload` after
        every later reload that installed a policy / kept the old one.
        """
        from mcpdsl.engine.reload import open_source

        source = open_source(path, trust, allow_unsigned)
        outcome = source.load(force=True)
        outcome.raise_error()
        assert outcome.compiled is not None
        return cls(
            outcome.compiled,
            decision_log=decision_log,
            mask=mask,
            source=source,
            on_reload=on_reload,
            on_error=on_error,
        )

    @classmethod
    def watch(
        cls,
        path: str | os.PathLike[str],
        *,
        debounce_ms: int = 50,
        on_reload: ReloadCallback | None = None,
        on_error: ReloadCallback | None = None,
        trust: Trust | None = None,
        allow_unsigned: bool = False,
        decision_log: Sink | DecisionLog | None = None,
        mask: Iterable[str] = DEFAULT_MASK,
        force_polling: bool | None = None,
    ) -> EngineWatch:
        """`Engine.load(path, ...)`, then reload in a daemon thread after every change.

        Returns the running `EngineWatch`: `.engine`, `.stop()`, a context manager.
        The initial load raises like `Engine.load`; later failures keep the
        previous policy and go to `on_error`.
        """
        engine = cls.load(
            path,
            decision_log=decision_log,
            mask=mask,
            trust=trust,
            allow_unsigned=allow_unsigned,
            on_reload=on_reload,
            on_error=on_error,
        )
        return engine.start_watching(debounce_ms=debounce_ms, force_polling=force_polling)

    def start_watching(
        self, *, debounce_ms: int = 50, force_polling: bool | None = None
    ) -> EngineWatch:
        """Watch this engine's source (tree or build directory) in a daemon thread."""
        from mcpdsl.engine.reload import EngineWatch

        handle = EngineWatch(self, debounce_ms=debounce_ms, force_polling=force_polling)
        self._watches.append(handle)
        return handle

    # ------------------------------------------------------------ reloading

    def reload(self) -> Reload:
        """Rebuild the policy from the engine's source and swap it in atomically.

        Never raises for a bad source: a tree with errors, a refused bundle or an
        unexpected failure keeps the current policy, calls `on_error` (or logs a
        warning on the `mcpdsl.engine` logger without one) and returns a `Reload`
        with `ok=False`.  A source that did not change is not recompiled
        (`swapped=False`).  A bundle is re-verified every time.
        """
        return self._reload(())

    def _reload(self, changed: tuple[str, ...], *, background: bool = False) -> Reload:
        from mcpdsl.engine.reload import Reload, describe, timed

        source = self._source
        if source is None:
            raise RuntimeError("this engine was not loaded from a path; there is nothing to reload")
        with self._reload_lock:
            outcome, seconds = timed(source, force=False)
            if outcome.compiled is not None:
                self._install(outcome.compiled)
            recovered = outcome.ok and self._failing
            self._failing = not outcome.ok
        result = Reload(
            ok=outcome.ok,
            swapped=outcome.compiled is not None,
            source=str(source.path),
            message=describe(source, outcome, seconds),
            diagnostics=outcome.diagnostics,
            error=outcome.error,
            changed=changed,
            seconds=seconds,
            stats=outcome.stats,
        )
        callback = self._on_error if not result.ok else self._on_reload
        if not result.ok and callback is None:
            _log.warning("%s", result.message)
        if callback is not None and (not result.ok or result.swapped or recovered):
            if not background:
                callback(result)
            else:
                try:
                    callback(result)
                except Exception:  # a callback bug must not end the watch
                    _log.exception("mcpdsl engine reload callback failed")
        return result

    def _install(self, compiled: PreparedProject) -> None:
        old = self._compiled
        self._compiled = compiled  # the swap: one reference assignment
        if compiled.limits != old.limits:
            self._limiter.retune(compiled.limits)

    def _report_watch_failure(self, error: BaseException) -> None:
        from mcpdsl.engine.reload import Reload

        source = self._source
        where = str(source.path) if source is not None else "?"
        result = Reload(
            ok=False,
            swapped=False,
            source=where,
            message=f"watching {where} stopped: {type(error).__name__}: {error}",
            error=error,
        )
        _log.error("%s", result.message)
        if self._on_error is not None:
            try:
                self._on_error(result)
            except Exception:
                _log.exception("mcpdsl engine reload callback failed")

    @classmethod
    def from_project(
        cls,
        project: m.Project,
        *,
        decision_log: Sink | DecisionLog | None = None,
        mask: Iterable[str] = DEFAULT_MASK,
    ) -> Engine:
        """An engine for an already compiled IR project."""
        return cls(prepare_project(project), decision_log=decision_log, mask=mask)

    @property
    def project(self) -> m.Project:
        return self._compiled.project

    @property
    def compiled(self) -> PreparedProject:
        return self._compiled

    # ------------------------------------------------------------ access

    def authorize(self, request: dict[str, Any]) -> Decision:
        """The access decision for one request (docs/semantics.md)."""
        log = self._log
        if log is None:
            return self._compiled.policies.authorize(request)
        start = time.perf_counter_ns()
        decision = self._compiled.policies.authorize(request)
        latency = (time.perf_counter_ns() - start) / 1000
        log.record(request, decision, latency)
        return decision

    # ------------------------------------------------------------ scaling

    def scale(
        self,
        service: str,
        metrics: Mapping[str, object],
        current_replicas: int,
        history: Iterable[tuple[datetime | float, int]] | None = None,
        now: datetime | float | None = None,
        *,
        events: Iterable[tuple[datetime | float, int]] | None = None,
        last_active: datetime | float | None = None,
    ) -> ScaleDecision:
        """The replicas the emitted HPA or KEDA ScaledObject sets for `service`.

        `metrics`: `cpu`/`memory` as utilisation ratios (0.95 = 95%), custom metrics
        (and `predict`, the forecast) as their average value per pod.  `history`:
        earlier (timestamp, recommendation) pairs for the stabilisation windows;
        `events`: earlier (timestamp, replica change) scale events for the policies'
        periods; `last_active`: when a KEDA trigger was last active (the cooldown
        before scaling to zero).  `now`: a datetime (naive = UTC) or epoch seconds;
        None is the current time.  See mcpdsl.evaluate.scale.
        """
        if not isinstance(service, str):
            raise ScaleError(f"a service name is a string, found {service!r}")
        scale = find_scale(self._compiled.project.scales, service)
        if now is None:
            moment = datetime.now(UTC)
        elif isinstance(now, datetime):
            moment = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
        elif isinstance(now, (int, float)) and not isinstance(now, bool):
            try:
                moment = datetime.fromtimestamp(float(now), UTC)
            except (OverflowError, ValueError, OSError) as exc:
                raise ScaleError(f"`now` is not a representable time: {now!r}") from exc
        else:
            raise ScaleError(f"`now` must be a datetime or epoch seconds, found {now!r}")
        return decide(scale, metrics, current_replicas, history, moment, events, last_active)

    # ------------------------------------------------------------ routing

    def route(
        self,
        gateway: str,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
    ) -> RouteDecision | None:
        """The first route of `gateway` taking `method path`, or None.

        Raises `PathRejected` (a ValueError) for a path Envoy answers with 400,
        and ValueError for arguments that are not strings (headers: a mapping
        of strings).
        """
        if not isinstance(gateway, str) or not isinstance(method, str):
            raise ValueError("the gateway and the method are strings")
        if not isinstance(path, str):
            raise PathRejected(repr(path), "the path is not a string")
        if headers is not None and (
            not isinstance(headers, Mapping)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
        ):
            raise ValueError("headers must be a mapping of strings to strings")
        compiled: PreparedGateway = find(self._compiled.gateways, gateway, "gateway")
        return compiled.route(str.__str__(method), str.__str__(path), headers)

    # ----------------------------------------------------------- transform

    def transform(self, integration: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Apply the integration's `map` block; raises `TransformError`.

        A payload value the mapping reads that is not JSON (NaN, a huge
        integer, a foreign type, nesting too deep) is a `TransformError` too.
        """
        if not isinstance(integration, str):
            raise KeyError(f"an integration name is a string, found {integration!r}")
        compiled: PreparedTransform = find(self._compiled.transforms, integration, "integration")
        return compiled.apply(payload)

    # -------------------------------------------------------------- limits

    def admit(self, key: str, now: float | None = None) -> bool:
        """Take a token from the bucket of `key` (see mcpdsl.evaluate.limits); False = limited.

        `now` is a monotonic clock in seconds (default `time.monotonic()`); a
        `now` that is not a finite number raises ValueError (it would freeze the
        bucket), an unknown or non-string key KeyError.
        """
        return self._limiter.admit(self._compiled.limits, key, now)

    def close(self) -> None:
        """Stop this engine's watchers and close its decision log."""
        for handle in self._watches:
            handle.stop()
        self._watches.clear()
        if self._log is not None:
            self._log.close()
