"""`mcpdsl serve --workers N`: N worker processes behind one pair of ports, one supervisor.

One `mcpdsl serve` process decides on one core (Python runs one thread of
bytecode at a time); a machine with more cores serves more Checks with more
processes.  The supervisor (this module) binds the ports once and starts N
workers, each a complete `mcpdsl serve` (its own engine, store, log and
event loop):

* HTTP: the supervisor's listening socket is inherited by every worker, and
  the kernel hands each new connection to one of the workers accepting on it;
* gRPC: every worker binds the same address with `SO_REUSEPORT` (gRPC sets it
  on Linux), and the kernel spreads connections across them.  With port 0,
  worker 0 starts first and alone: the others (and any restarted worker) bind
  the address it reports, so that the port becomes one port for all.

Each worker says where it listens on a pipe of its own (`--ready-fd`); once
all have, the supervisor prints the one `listening` line.  SIGTERM/SIGINT are
forwarded to every worker, which drains as a single server does (a second
signal is forwarded too: the workers stop waiting); the supervisor exits when
they have.  The workers run in a session of their own (a terminal's Ctrl-C
reaches the supervisor only) and are sent SIGTERM by the kernel if the
supervisor dies (`PR_SET_PDEATHSIG`), so none outlives it.  A worker that dies while serving is restarted after `BACKOFF`
seconds, unless `MAX_RESTARTS` happened within `RESTART_WINDOW` seconds: then
the supervisor stops the others and exits 1, rather than hide a worker that
cannot run.  A worker that exits before the first `listening` line fails the
start (its exit code is the supervisor's).

Metrics: the workers run prometheus-client in multiprocess mode
(`PROMETHEUS_MULTIPROC_DIR`, a directory the supervisor creates and removes),
so `/metrics` on any worker sums the counters of all; a dead worker's live
gauges are dropped (`mark_process_dead`).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Seconds before a dead worker is started again.
BACKOFF = 0.5
#: More restarts than this within `RESTART_WINDOW` seconds end the supervisor.
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
#: Seconds the workers have to listen after they were started (a large tree compiles first).
START_TIMEOUT = 300.0


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes]
    ready: int | None  # the read end of its ready pipe, until it said where it listens
    said: dict[str, Any] | None = None


@dataclass
class Supervisor:
    """Start, watch and stop the workers (module docstring).

    `command(index, ready_fd, grpc_addr)` is a worker's argv; `pass_fds` are inherited by
    every worker (the HTTP socket); `say` prints a line on standard error.
    """

    command: Callable[[int, int, str], list[str]]
    workers: int
    pass_fds: tuple[int, ...]
    say: Callable[[str], None]
    grpc: str
    grace: float = 10.0
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    _signals: int = 0
    _restarts: list[float] = field(default_factory=list)

    def run(self) -> int:
        """Serve until signalled; the exit code (0 after a drain)."""
        metrics_dir = tempfile.mkdtemp(prefix="mcpdsl-metrics-")
        self.env = {**self.env, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
        previous = {
            sig: signal.signal(sig, self._signalled) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        workers: list[_Worker] = []
        try:
            # a port 0 is known once worker 0 has bound it; a fixed port, at once
            alone = self.grpc.rpartition(":")[2] == "0"
            workers = [self._start(i) for i in range(1 if alone else self.workers)]
            code = self._until_listening(workers)
            if code is None and alone:
                first = workers[0].said or {}
                self.grpc = str(first.get("grpc") or self.grpc)
                workers += [self._start(i) for i in range(1, self.workers)]
                code = self._until_listening(workers)
            if code is None:
                self._announce(workers)
            else:
                self._stop(workers, signal.SIGTERM)
                self._wait_all(workers, self.grace + 5)
                return code
            return self._serve(workers, metrics_dir)
        finally:
            for w in workers:  # nothing outlives the supervisor
                if w.proc.poll() is None:
                    w.proc.kill()
                    w.proc.wait()
                if w.ready is not None:
                    os.close(w.ready)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            shutil.rmtree(metrics_dir, ignore_errors=True)

    # -------------------------------------------------------------- helpers

    def _signalled(self, signum: int, frame: Any) -> None:
        self._signals += 1

    def _start(self, index: int) -> _Worker:
        read, write = os.pipe()
        try:
            proc = subprocess.Popen(
                self.command(index, write, self.grpc),
                pass_fds=(*self.pass_fds, write),
                env=self.env,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            os.close(write)
        return _Worker(index, proc, read)

    def _read_ready(self, worker: _Worker) -> None:
        """Read the worker's `listening` line (or EOF: it closed the pipe without one)."""
        assert worker.ready is not None
        data = b""
        while True:
            chunk = os.read(worker.ready, 4096)
            if not chunk:
                break
            data += chunk
        os.close(worker.ready)
        worker.ready = None
        with contextlib.suppress(ValueError):
            said = json.loads(data.decode("utf-8", "replace"))
            if isinstance(said, dict):
                worker.said = said

    def _until_listening(self, workers: list[_Worker]) -> int | None:
        """Wait until every worker listens: None, or the exit code of a failed start."""
        deadline = time.monotonic() + START_TIMEOUT
        while any(w.said is None for w in workers):
            if self._signals:
                return 0
            for w in workers:
                code = w.proc.poll()
                if code is not None and w.said is None:
                    self.say(json.dumps({"event": "worker-failed", "worker": w.index,
                                         "pid": w.proc.pid, "code": code}))  # fmt: skip
                    return code or 1
            if time.monotonic() > deadline:
                self.say(json.dumps({"event": "worker-failed", "reason": "no listening line"}))
                return 1
            self._poll_ready(workers, 0.1)
        return None

    def _announce(self, workers: list[_Worker]) -> None:
        """The one `listening` line: where the workers listen, the supervisor's pid, theirs."""
        first = workers[0].said or {}
        line = {
            "event": "listening",
            "http": first.get("http"),
            "grpc": first.get("grpc"),
            "pid": os.getpid(),
            "workers": [w.proc.pid for w in workers],
        }
        self.say(json.dumps(line, sort_keys=True))

    def _poll_ready(self, workers: list[_Worker], timeout: float) -> None:
        pending = {w.ready: w for w in workers if w.ready is not None}
        if not pending:
            time.sleep(timeout)
            return
        with contextlib.suppress(InterruptedError):
            readable, _, _ = select.select(list(pending), [], [], timeout)
            for fd in readable:
                self._read_ready(pending[fd])

    def _serve(self, workers: list[_Worker], metrics_dir: str) -> int:
        from prometheus_client import multiprocess

        forwarded = 0
        deadline = 0.0
        while True:
            if self._signals > forwarded:
                if forwarded == 0:
                    deadline = time.monotonic() + self.grace + 15
                forwarded = self._signals
                self._stop(workers, signal.SIGTERM)
            for i, w in enumerate(workers):
                code = w.proc.poll()
                if code is None or forwarded:
                    continue
                multiprocess.mark_process_dead(w.proc.pid, metrics_dir)
                if w.ready is not None:
                    os.close(w.ready)
                    w.ready = None
                self.say(json.dumps({"event": "worker-exited", "worker": w.index,
                                     "pid": w.proc.pid, "code": code}))  # fmt: skip
                now = time.monotonic()
                self._restarts = [t for t in self._restarts if t > now - RESTART_WINDOW]
                if len(self._restarts) >= MAX_RESTARTS:
                    self.say(json.dumps({"event": "giving-up", "restarts": len(self._restarts),
                                         "window_s": RESTART_WINDOW}))  # fmt: skip
                    self._stop(workers, signal.SIGTERM)
                    self._wait_all(workers, self.grace + 5)
                    return 1
                self._restarts.append(now)
                time.sleep(BACKOFF)
                workers[i] = self._start(w.index)
                self.say(json.dumps({"event": "worker-started", "worker": w.index,
                                     "pid": workers[i].proc.pid}))  # fmt: skip
            if forwarded and all(w.proc.poll() is not None for w in workers):
                return 0
            if forwarded and time.monotonic() > deadline:
                self._stop(workers, signal.SIGKILL)
                return 1
            self._poll_ready(workers, 0.1)

    @staticmethod
    def _stop(workers: list[_Worker], sig: int) -> None:
        for w in workers:
            if w.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(sig)

    @staticmethod
    def _wait_all(workers: list[_Worker], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for w in workers:
            try:
                w.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    """SIGTERM this worker when its supervisor dies, however it dies (Linux `PR_SET_PDEATHSIG`).

    The workers run in a session of their own, so that a terminal's Ctrl-C
    reaches the supervisor alone and is forwarded once (a worker receiving it
    twice would skip its drain); this keeps them from outliving a killed supervisor.
    """
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def worker_announce(fd: int) -> Callable[[str], None]:
    """What a worker does with its `listening` line: write it to the supervisor's pipe."""

    def announce(line: str) -> None:
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    return announce


def python_argv() -> list[str]:
    """The command that runs this mcpdsl's CLI (`python -m mcpdsl`) in a worker."""
    return [sys.executable, "-m", "mcpdsl"]
