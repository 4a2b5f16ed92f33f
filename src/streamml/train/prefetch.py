"""Helpers for reading: a background prefetch thread and a rich progress bar over offsets."""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator, TypeVar

__all__ = ["prefetch", "ProgressBar"]

T = TypeVar("T")


def prefetch(make: Callable[[], Iterator[T]], depth: int = 2) -> Iterator[T]:
    """Run the iterator ``make()`` in a background thread, ``depth`` items ahead.

    Reading from Kafka (librdkafka and the consume loop) then overlaps with decoding the
    previous batch (Polars releases the GIL), on another core.

    >>> list(prefetch(lambda: iter(range(5))))
    [0, 1, 2, 3, 4]
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        it = make()
        try:
            for item in it:
                if not put(item):
                    return
            put(end)
        except BaseException as exc:  # handed to the consuming thread
            put(_Failed(exc))
        finally:
            close = getattr(it, "close", None)
            if close:
                close()

    t = threading.Thread(target=work, name="streamml-dataset-reader", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is end:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        stop.set()
        t.join(timeout=10)


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc



class ProgressBar:
    """A rich progress bar over offsets (records), with throughput."""

    def __init__(self, total: int, description: str) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        class _Rate(ProgressColumn):
            def render(self, task: Any) -> Text:
                return Text(f"{task.speed or 0:,.0f} rec/s", style="progress.data.speed")

        self._p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("offsets"), _Rate(), TimeRemainingColumn(), transient=True)
        self._p.start()
        self._task = self._p.add_task(description, total=total)

    def advance(self, records: int, nbytes: int) -> None:
        self._p.update(self._task, advance=records)

    def close(self) -> None:
        self._p.stop()
