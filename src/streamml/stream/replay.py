"""Batch mode: run a pipeline over a bounded range of history with the live engine.

The same :class:`~streamml.stream.engine.Engine` that serves the live stream processes the
records of each partition in offset order, so the features it computes equal the live
ones for the same input (windows: stream time advances record by record, which makes the
result independent of batch boundaries). State starts empty, as it did for the live run
that began at ``start``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator

import polars as pl

from streamml.config import Settings
from streamml.errors import KafkaError, PipelineError
from streamml.kafka import clients
from streamml.kafka.names import resolve_topic
from streamml.kafka.produce import send_all
from streamml.kafka.read import pin, read_ranges
from streamml.stream.engine import Engine, RawBatch
from streamml.stream.pipeline import Join, Pipeline
from streamml.stream.stream_join import merge_by_time

__all__ = ["replay"]

Bound = int | dict[int, int] | datetime | None


def replay(pipeline: Pipeline, settings: Settings, *, start: Bound = None, end: Bound = None,
           by_time: bool = False, to: str | None = None, batch_size: int = 10_000,
           timeout: float = 300.0, keys: bool = False) -> pl.DataFrame:
    """Recompute ``pipeline`` over ``[start, end)`` of its input topic; returns the outputs.

    Bounds are offsets (one int for every partition, or ``{partition: offset}``), or times
    (a ``datetime``, or ms with ``by_time=True``); ``None`` means the beginning / the last
    stable offset at call time (see :func:`streamml.kafka.read.pin`). With ``to``, the
    outputs are also written to that topic (resolved like ``.to()``). With ``keys``, each
    output row carries its record key (bytes) as ``_key`` and ``_tombstone`` (no value).
    A stream join's second input is read whole, from its beginning to its end at call time (the
    bounds apply to the source); each partition's two inputs are merged by record timestamp.
    """
    engine = Engine(pipeline, keep_frames=True)
    topic = pipeline.source_topic(settings)
    ranges = pin(settings, topic, start=start, end=end, by_time=by_time, timeout=30.0, error=PipelineError)
    out_topic = resolve_topic(to, settings.namespace, kind="features") if to else None
    if out_topic:
        from streamml.kafka.admin import ensure_topic

        ensure_topic(settings, out_topic, len(ranges))
    for op in pipeline.ops:
        if isinstance(op, Join):
            op.table.start(settings)
    frames: list[pl.DataFrame] = []
    producer = clients.producer(settings) if out_topic else None
    batches = read_ranges(settings, ranges, max_messages=batch_size, timeout=timeout, idle_timeout=timeout,
                          context=f"replay of {topic}")
    if engine.join is not None:
        batches = _both(settings, engine.join.right_topic, ranges, batch_size, timeout)
    try:
        for msgs in batches:
            res = engine.process(RawBatch.from_messages(msgs, topic, topics=engine.join is not None))
            engine.commit(res)
            if res.frame is not None and res.frame.height:
                frames.append(res.frame.with_columns(
                    pl.Series("_key", res.keys, dtype=pl.Binary),
                    pl.Series("_tombstone", [v is None for v in res.values], dtype=pl.Boolean)) if keys else res.frame)
            if producer is not None and out_topic:
                send_all(producer, out_topic, zip(res.keys, res.values, res.headers))
                producer.poll(0)
    except KafkaError as exc:
        if exc.code == "_TIMED_OUT":
            raise PipelineError(exc.message, hint=exc.hint) from None
        raise
    finally:
        if producer is not None and producer.flush(60):
            raise PipelineError(f"replay could not deliver every output to {out_topic}")
        for op in pipeline.ops:
            if isinstance(op, Join):
                op.table.stop()
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def _both(settings: Settings, right: str, ranges: list[Any], batch_size: int, timeout: float) -> Iterator[list[Any]]:
    """A stream join's two inputs up to their ends, each partition's two runs merged by timestamp
    (the smaller head first, as Kafka Streams picks), in batches of ``batch_size``."""
    rranges = pin(settings, right, timeout=30.0, error=PipelineError)
    runs: dict[tuple[str, int], list[Any]] = {}
    for msgs in read_ranges(settings, list(ranges) + list(rranges), max_messages=batch_size, timeout=timeout,
                            idle_timeout=timeout, context=f"replay of {ranges[0].topic if ranges else ''} and {right}"):
        for m in msgs:
            runs.setdefault((m.topic(), m.partition()), []).append(m)
    parts = sorted({p for _t, p in runs})
    left = ranges[0].topic if ranges else ""
    merged: list[Any] = []
    for p in parts:
        merged += merge_by_time(runs.get((left, p), []), runs.get((right, p), []), ts=lambda m: m.timestamp()[1])
    for i in range(0, len(merged), batch_size):
        yield merged[i:i + batch_size]
