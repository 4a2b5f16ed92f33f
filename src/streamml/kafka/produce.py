"""Backpressured produce: the one place that handles a full local queue (``BufferError``).

librdkafka raises ``BufferError`` when its local queue is full; the right answer is to
serve delivery reports (``poll``), which frees room, and try again. Every producer in
streamml goes through :func:`send` (one record) or :func:`send_all` (many records), so
that the handling is written once.

>>> class Tiny:  # a client seam: a queue of two records that drains on poll
...     def __init__(self): self.queue, self.sent = [], []
...     def produce(self, topic, value=None, key=None, **kw):
...         if len(self.queue) >= 2:
...             raise BufferError("queue full")
...         self.queue.append(value)
...     def poll(self, timeout=0):
...         self.sent += self.queue; self.queue = []; return 0
>>> p = Tiny()
>>> send_all(p, "t", [(b"k", b"1", None), (b"k", b"2", None), (b"k", b"3", None)])
3
>>> p.sent + p.queue
[b'1', b'2', b'3']
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Sequence

__all__ = ["send", "send_all", "Headers", "BACKPRESSURE_WAIT_S"]

#: Record headers as produced: ``(name, value)`` pairs.
Headers = Sequence[tuple[str, bytes | str | None]]

BACKPRESSURE_WAIT_S = 0.05  # how long one poll waits for delivery reports while the queue is full


def send(producer: Any, topic: str, value: bytes | None, key: bytes | None = None, *,
         headers: Headers | None = None, partition: int | None = None,
         on_delivery: Any = None, timeout: float | None = None, timestamp: int | None = None) -> None:
    """``producer.produce(...)``, waiting while the local queue is full (``timestamp``: the
    record's timestamp in ms, by default the produce time).

    ``timeout`` bounds the wait (``None``: wait as long as the queue stays full, which
    only happens while no broker takes the records); then the ``BufferError`` is raised.
    """
    kw: dict[str, Any] = {}
    if headers:
        kw["headers"] = headers
    if partition is not None:
        kw["partition"] = partition
    if on_delivery is not None:
        kw["on_delivery"] = on_delivery
    if timestamp is not None:
        kw["timestamp"] = timestamp
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            producer.produce(topic, value, key, **kw)
            return
        except BufferError:
            if deadline is not None and time.monotonic() >= deadline:
                raise
            producer.poll(BACKPRESSURE_WAIT_S)


def send_all(producer: Any, topic: str,
             records: Iterable[tuple[bytes | None, bytes | None, Headers | None]], *,
             partition: int | None = None, on_delivery: Any = None,
             timestamps: list[int | None] | None = None) -> int:
    """Produce ``(key, value, headers)`` records to ``topic``; returns how many.

    ``timestamps`` (ms, one per record): the records' timestamps instead of the produce time.
    The fast path calls ``produce`` directly; only a full queue takes the slow path.
    """
    if timestamps is not None:  # the slow path: the one that carries timestamps
        n = 0
        for (key, value, headers), ts in zip(records, timestamps):
            send(producer, topic, value, key, headers=headers, partition=partition, on_delivery=on_delivery,
                 timestamp=ts)
            n += 1
        return n
    produce = producer.produce
    n = 0
    kw: dict[str, Any] = {}
    if partition is not None:
        kw["partition"] = partition
    if on_delivery is not None:
        kw["on_delivery"] = on_delivery
    for key, value, headers in records:
        try:
            if headers:
                produce(topic, value, key, headers=headers, **kw)
            else:
                produce(topic, value, key, **kw)
        except BufferError:
            send(producer, topic, value, key, headers=headers, partition=partition, on_delivery=on_delivery)
        n += 1
    return n
