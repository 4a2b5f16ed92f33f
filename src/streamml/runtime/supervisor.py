"""Worker processes kept running: restarted with a capped exponential back-off.

A worker that exits with 0 is done. One that exits with :data:`EXIT_CONFIG` (a
configuration error, a missing ACL, a pipeline that cannot run) is not restarted: a restart
would fail the same way, and the supervisor stops and says so. Everything else, a worker
killed by a signal (an operator, the OOM killer, a node drain) or crashed, is restarted after
a back-off that doubles with each quick failure up to ``max_backoff_s`` and starts again from
``backoff_s`` once a worker ran for ``stable_after_s``; the app keeps running. It stops only
when asked (SIGINT / SIGTERM), or when the user set ``max_restarts`` and a worker exceeded it.

>>> Backoff(0.5, 8.0).next(), Backoff(0.5, 8.0).next()
(0.5, 0.5)
>>> b = Backoff(0.5, 8.0); [b.next() for _ in range(6)]
[0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["EXIT_CONFIG", "EXIT_STUCK", "Backoff", "Supervisor"]

EXIT_CONFIG = 2   # a worker that cannot run as configured: not restarted
EXIT_STUCK = 70   # a worker that the watchdog stopped: restarted


@dataclass
class Backoff:
    """Delays that double from ``first`` up to ``cap``; :meth:`reset` after a stable run."""

    first: float = 0.5
    cap: float = 10.0
    _next: float = field(default=0.0, init=False)

    def next(self) -> float:
        delay = self._next or self.first
        self._next = min(self.cap, delay * 2)
        return delay

    def reset(self) -> None:
        self._next = 0.0


class Supervisor:
    """Runs ``command(i)`` for ``i`` in ``range(workers)`` and keeps each one running."""

    def __init__(self, command: Callable[[int], list[str]], workers: int, *, env: dict[str, str] | None = None,
                 backoff_s: float = 0.5, max_backoff_s: float = 10.0, stable_after_s: float = 30.0,
                 max_restarts: int | None = None, say: Callable[[str], None] = print) -> None:
        self.command, self.workers, self.env = command, workers, env
        self.backoff_s, self.max_backoff_s, self.stable_after_s = backoff_s, max_backoff_s, stable_after_s
        self.max_restarts = max_restarts
        self.say = say
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.restarts: dict[int, int] = {}
        self._backoff: dict[int, Backoff] = {}
        self._started: dict[int, float] = {}
        self._due: dict[int, float] = {}  # worker -> monotonic time of its restart
        self._stopping = threading.Event()

    def _spawn(self, i: int) -> None:
        self._started[i] = time.monotonic()
        self.procs[i] = subprocess.Popen(self.command(i), env=self.env)

    def stop(self, *_: Any) -> None:
        """Ask every worker to finish (SIGTERM) and stop supervising."""
        self._stopping.set()
        self._due.clear()
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGTERM, self.stop)

    def run(self) -> int:
        """Supervise until every worker is done; returns the exit code for the app."""
        for i in range(self.workers):
            self._spawn(i)
        code = 0
        while self.procs or self._due:
            time.sleep(0.1)
            now = time.monotonic()
            for i, at in list(self._due.items()):
                if now >= at and not self._stopping.is_set():
                    del self._due[i]
                    self._spawn(i)
            for i, p in list(self.procs.items()):
                rc = p.poll()
                if rc is None:
                    continue
                del self.procs[i]
                if self._stopping.is_set():
                    continue
                if rc == 0:
                    self.say(f"worker {i} finished")
                    continue
                if rc == EXIT_CONFIG:
                    self.say(f"worker {i} cannot run as configured (exit {rc}); stopping the app")
                    code = rc
                    self.stop()
                    continue
                ran = now - self._started[i]
                b = self._backoff.setdefault(i, Backoff(self.backoff_s, self.max_backoff_s))
                if ran >= self.stable_after_s:
                    b.reset()
                self.restarts[i] = self.restarts.get(i, 0) + 1
                if self.max_restarts is not None and self.restarts[i] > self.max_restarts:
                    self.say(f"worker {i} exited ({_why(rc)}) after {self.max_restarts} restarts "
                             "(--max-restarts); stopping the app")
                    code = 1
                    self.stop()
                    continue
                delay = b.next()
                self.say(f"worker {i} exited ({_why(rc)}) after {ran:.1f}s; restarting in {delay:.1f}s")
                self._due[i] = now + delay
        for p in self.procs.values():
            p.wait(30)
        return code


def _why(rc: int) -> str:
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    if rc == EXIT_STUCK:
        return "stuck, stopped by its watchdog"
    return f"exit {rc}"
