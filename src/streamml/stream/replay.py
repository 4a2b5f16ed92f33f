"""Batch mode: run a pipeline over a bounded range of history with the live engine.

The same :class:`~streamml.stream.engine.Engine` that serves the live stream processes the
records of each partition in offset order, so the features it computes equal the live
ones for the same input (windows: stream time advances record by record, which makes the
result independent of batch boundaries). State starts empty, as it did for the live run
that began at ``start``.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import polars as pl
from confluent_kafka import KafkaError as CKError
from confluent_kafka import TopicPartition

from streamml.config import Settings
from streamml.errors import PipelineError
from streamml.kafka import clients
from streamml.kafka.errors import classify
from streamml.stream.engine import Engine, RawBatch
from streamml.stream.pipeline import Join, Pipeline, _resolve

__all__ = ["replay"]

Bound = int | dict[int, int] | datetime | None


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _offsets(c: Any, topic: str, parts: list[int], bound: Bound, *, end: bool, by_time: bool) -> dict[int, int]:
    marks = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30) for p in parts}
    if bound is None:
        return {p: marks[p][1] if end else marks[p][0] for p in parts}
    if isinstance(bound, dict):
        return {p: int(bound.get(p, marks[p][1] if end else marks[p][0])) for p in parts}
    if isinstance(bound, datetime) or by_time:
        ts = _ms(bound) if isinstance(bound, datetime) else int(bound)
        found = c.offsets_for_times([TopicPartition(topic, p, ts) for p in parts], timeout=30)
        return {tp.partition: (tp.offset if tp.offset >= 0 else marks[tp.partition][1]) for tp in found}
    return {p: int(bound) for p in parts}


def replay(pipeline: Pipeline, settings: Settings, *, start: Bound = None, end: Bound = None,
           by_time: bool = False, to: str | None = None, batch_size: int = 10_000,
           timeout: float = 300.0) -> pl.DataFrame:
    """Recompute ``pipeline`` over ``[start, end)`` of its input topic; returns the outputs.

    Bounds are offsets (one int for every partition, or ``{partition: offset}``), or times
    (a ``datetime``, or ms with ``by_time=True``); ``None`` means the beginning / the end at
    call time. With ``to``, the outputs are also written to that topic (resolved like
    ``.to()``).
    """
    engine = Engine(pipeline, keep_frames=True)
    topic = pipeline.source_topic(settings)
    for op in pipeline.ops:
        if isinstance(op, Join):
            op.table.start(settings)
    c = clients.consumer(settings, f"streamml-replay-{time.time_ns()}", enable_partition_eof=True)
    frames: list[pl.DataFrame] = []
    producer = clients.producer(settings) if to else None
    out_topic = _resolve(to, "features", settings) if to else None
    try:
        md = c.list_topics(topic, timeout=30).topics.get(topic)
        if md is None or md.error is not None:
            raise PipelineError(f"input topic {topic} does not exist")
        parts = sorted(md.partitions)
        if out_topic:
            from streamml.kafka.admin import ensure_topic

            ensure_topic(settings, out_topic, len(parts))
        lo = _offsets(c, topic, parts, start, end=False, by_time=by_time)
        hi = _offsets(c, topic, parts, end, end=True, by_time=by_time)
        todo = {p for p in parts if lo[p] < hi[p]}
        c.assign([TopicPartition(topic, p, lo[p]) for p in sorted(todo)])
        deadline = time.monotonic() + timeout
        while todo:
            if time.monotonic() > deadline:
                raise PipelineError(f"replay of {topic} timed out with partitions {sorted(todo)} unfinished")
            msgs = c.consume(batch_size, timeout=0.5)
            keep = []
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() == CKError._PARTITION_EOF:
                        todo.discard(m.partition())
                        continue
                    raise classify(err, "replay: ")
                p = m.partition()
                if m.offset() < hi[p]:
                    keep.append(m)
                if m.offset() + 1 >= hi[p]:
                    todo.discard(p)
            done = [TopicPartition(topic, p) for p in parts if p not in todo and lo[p] < hi[p]]
            if done:
                c.pause(done)
            if not keep:
                continue
            res = engine.process(RawBatch.from_messages(keep, topic))
            engine.commit(res)
            if res.frame is not None and res.frame.height:
                frames.append(res.frame)
            if producer is not None and out_topic:
                for k, v, h in zip(res.keys, res.values, res.headers):
                    producer.produce(out_topic, v, k, headers=h)
                producer.poll(0)
    finally:
        c.close()
        if producer is not None and producer.flush(60):
            raise PipelineError(f"replay could not deliver every output to {out_topic}")
        for op in pipeline.ops:
            if isinstance(op, Join):
                op.table.stop()
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
