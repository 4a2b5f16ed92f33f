"""A watchdog over a whole loop: poll, rebalance callbacks, processing and commit.

The loop calls :meth:`Watchdog.beat` whenever it makes progress. When no beat came for
``limit_s`` seconds while the loop runs, ``on_stuck(seconds, stacks)`` is called once per
stall with the stacks of all threads (what the loop is stuck in).

>>> import time
>>> seen = []
>>> w = Watchdog(0.2, lambda s, stacks: seen.append(round(s)), every_s=0.05).start()
>>> time.sleep(0.5); w.stop()
>>> seen
[0]
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from contextlib import contextmanager
from typing import Callable, Iterator

__all__ = ["Watchdog", "thread_stacks"]


def thread_stacks() -> str:
    """The current stack of every thread, as text."""
    names = {t.ident: t.name for t in threading.enumerate()}
    out = []
    for ident, frame in sys._current_frames().items():
        out.append(f"--- thread {names.get(ident, ident)}\n" + "".join(traceback.format_stack(frame)))
    return "\n".join(out)


class Watchdog:
    """Calls ``on_stuck`` when :meth:`beat` was not called for ``limit_s`` seconds."""

    def __init__(self, limit_s: float, on_stuck: Callable[[float, str], None], *, every_s: float = 1.0,
                 name: str = "watchdog") -> None:
        self.limit_s = limit_s
        self.on_stuck = on_stuck
        self.every_s = every_s
        self.name = name
        self._last = time.monotonic()
        self._fired = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        """Progress: the loop is alive."""
        self._last = time.monotonic()
        self._fired = False

    @contextmanager
    def allow(self, limit_s: float) -> Iterator[None]:
        """A longer limit for the calls inside the block (a state restore on assignment)."""
        saved = self.limit_s
        self.limit_s = max(saved, limit_s) if saved > 0 else saved
        self.beat()
        try:
            yield
        finally:
            self.limit_s = saved
            self.beat()

    def start(self) -> "Watchdog":
        if self.limit_s > 0 and self._thread is None:
            self.beat()
            self._thread = threading.Thread(target=self._watch, name=self.name, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2 * self.every_s + 1)
        self._thread = None

    def _watch(self) -> None:
        while not self._stop.wait(self.every_s):
            idle = time.monotonic() - self._last
            if idle > self.limit_s and not self._fired:
                self._fired = True
                self.on_stuck(idle, thread_stacks())
