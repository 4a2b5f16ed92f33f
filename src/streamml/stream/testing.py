"""A broker-free driver for users' unit tests (like Kafka Streams' TopologyTestDriver).

>>> import polars as pl
>>> from streamml.stream import stream, tumbling, count, TestDriver
>>> p = (stream("clicks").window(key="user", size=tumbling(1000), time="ts")
...      .agg(n=count()).to("click_counts"))
>>> d = TestDriver(p)
>>> d.send({"user": "a", "ts": 10}, {"user": "a", "ts": 20}, {"user": "b", "ts": 30})
[]
>>> d.send({"user": "a", "ts": 1500})  # window [0, 1000) closes  # doctest: +NORMALIZE_WHITESPACE
[{'user': 'a', 'window_start': 0, 'window_end': 1000, 'n': 2},
 {'user': 'b', 'window_start': 0, 'window_end': 1000, 'n': 1}]
>>> d.send({"user": "a", "ts": 999}), d.late   # its window has closed: late, counted
([], 1)
"""

from __future__ import annotations

from typing import Any, Iterable

import orjson
import polars as pl

from streamml.stream.engine import Engine, RawBatch, StepResult
from streamml.stream.pipeline import Pipeline

__all__ = ["TestDriver"]


class TestDriver:
    """Runs a pipeline in-process over records you give it; no broker involved.

    Each :meth:`send` call is one micro-batch. Records are dicts (encoded as JSON) or
    bytes. ``partition`` places them on one input partition (stream time is per partition).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.engine = Engine(pipeline, keep_frames=True)
        self.outputs: list[dict[str, Any]] = []
        self.results: list[StepResult] = []
        self.dead_letters: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
        self.late = 0
        self.invalid = 0
        self._offsets: dict[tuple[str, int], int] = {}

    def send(self, *records: dict[str, Any] | bytes | None, key: bytes | str | None = None,
             partition: int = 0, timestamp: int | None = None,
             headers: list[tuple[str, bytes]] | None = None, topic: str | None = None) -> list[dict[str, Any]]:
        """Process ``records`` as one batch; returns the output rows of this batch.

        ``topic`` sends them to another input than the source (a stream join's right topic)."""
        values = [r if isinstance(r, bytes) or r is None else orjson.dumps(r) for r in records]
        topic = topic or self.pipeline.source_topic()
        start = self._offsets.get((topic, partition), 0)
        self._offsets[(topic, partition)] = start + len(values)
        k = key.encode() if isinstance(key, str) else key
        raw = RawBatch(topic, values, [k] * len(values), [partition] * len(values),
                       list(range(start, start + len(values))), [timestamp or 0] * len(values),
                       [headers] * len(values))
        res = self.engine.process(raw)
        self.engine.commit(res)
        self.results.append(res)
        self.dead_letters += res.dlq
        self.late += res.n_late
        self.invalid += res.n_invalid
        rows = res.frame.to_dicts() if res.frame is not None else []
        self.outputs += rows
        return rows

    def send_many(self, records: Iterable[dict[str, Any]], batch_size: int = 100, **kw: Any) -> list[dict[str, Any]]:
        """Send ``records`` in batches of ``batch_size``; returns all output rows."""
        out: list[dict[str, Any]] = []
        buf: list[dict[str, Any]] = []
        for r in records:
            buf.append(r)
            if len(buf) >= batch_size:
                out += self.send(*buf, **kw)
                buf = []
        if buf:
            out += self.send(*buf, **kw)
        return out

    @property
    def frame(self) -> pl.DataFrame:
        """All outputs so far as a DataFrame."""
        return pl.DataFrame(self.outputs)

    @property
    def state(self) -> pl.DataFrame | None:
        """The open windows (internal columns included)."""
        return self.engine.state.rows
