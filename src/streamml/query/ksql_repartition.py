"""GROUP BY a column that is not the input's key: the engine-managed repartition topic.

An aggregation needs every record of a group in one partition of its input. When a
``CREATE TABLE ... AS SELECT ... GROUP BY col`` groups a multi-partition stream by a column
that is not its key, ksqlDB re-keys the stream through an internal topic
(``...-Aggregate-GroupBy-repartition``); so does this engine. The query compiles into two
pipelines that run together as one query (:attr:`Query.pipelines`):

1. the **re-key stage** (``ksql-<name>-repartition``): decodes the input, applies WHERE, and
   writes every record with a non-null GROUP BY value to the internal topic, keyed by that
   value in ksqlDB's KAFKA key format (:func:`~streamml.query.ksql_keys.encode_key`, as
   ``PARTITION BY`` keys), its value the input's columns as JSON, its record timestamp the
   event time (the declared ``timestamp`` column, else the input record's timestamp);
2. the **aggregation** (``ksql-<name>``), compiled from the same statement over that topic,
   declared as the input stream keyed by the GROUP BY column (same columns, same event time).

The internal topic follows the state store's naming, the project's one kind of internal topic:
``<namespace>.changelog.ksql-<name>-repartition`` (beside the aggregation's store changelog
``<namespace>.changelog.ksql-<name>-window``). It is created by the engine with the input's
partition count, the default replication, ``cleanup.policy=delete`` and ``retention.ms=-1``
(its records carry event times, which may be older than any time-based retention: a
retention by time could delete records the aggregation has not read yet); instead, as in
Kafka Streams, the aggregation deletes the records it has committed (exactly-once) every
``PURGE_INTERVAL_S`` seconds. It is deleted with the query (``DROP TABLE``).

A preview runs both stages in memory (:func:`preview_frames`): the re-keyed records are
assigned the partitions the producer's partitioner gives them (librdkafka's default, CRC32 of
the key), so windows close as they do deployed. Which input partition's records reach the
internal topic first is up to the consumer's fetches, deployed as in ksqlDB; a record that
comes after a later record of another input partition closed its window is late there, so
previews equal deployments when no record is late.

>>> from streamml.query.ksql_compile import Catalog
>>> cat = Catalog(partitions=lambda topic: 3, namespace="shop")
>>> _ = cat.execute("CREATE STREAM pay (id BIGINT KEY, card VARCHAR, amount DOUBLE, ts BIGINT) "
...                 "WITH (kafka_topic='payments', timestamp='ts')")
>>> q = cat.compile("CREATE TABLE per_card AS SELECT card, COUNT(*) AS n FROM pay "
...                 "WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY card EMIT FINAL")
>>> [p.name for p in q.pipelines], q.source.topic, q.source.key
(['ksql-per_card-repartition', 'ksql-per_card'], 'shop.changelog.ksql-per_card-repartition', \
Column(name='CARD', type='VARCHAR', key=True))
"""

from __future__ import annotations

import heapq
import zlib
from dataclasses import replace
from typing import Any, Callable

import polars as pl

from streamml.config import Settings, topic_name
from streamml.errors import PipelineError, QueryError
from streamml.query.ksql import Column, CreateAs
from streamml.query.ksql_base import Query
from streamml.query.ksql_formats import source_format
from streamml.query.ksql_keys import encode_key
from streamml.query.ksql_table import Source
from streamml.stream.pipeline import Window

__all__ = ["needs_repartition", "repartition", "internal_topic", "internal_topics", "push_decoder",
           "preview_frames", "INTERNAL_CONFIG"]

#: The configuration of a repartition topic (see the module docs for why no time-based retention).
INTERNAL_CONFIG = {"cleanup.policy": "delete", "retention.ms": "-1", "message.timestamp.type": "CreateTime"}
#: Seconds between purges of the repartition records the aggregation has committed (Kafka Streams: 30 s).
PURGE_INTERVAL_S = 30.0


def internal_topic(namespace: str | None, pipeline: str) -> str:
    """The repartition topic of the aggregation pipeline named ``pipeline``.

    >>> internal_topic("shop", "ksql-per_card"), internal_topic(None, "ksql-t")
    ('shop.changelog.ksql-per_card-repartition', 'changelog.ksql-t-repartition')
    """
    name = f"{pipeline}-repartition"
    return topic_name(namespace, "changelog", name) if namespace is not None else f"changelog.{name}"


def internal_topics(q: Query) -> list[str]:
    """The internal topics ``q`` writes besides its sink (its repartition topic, if any)."""
    return [q.pipeline.source_name] if q.repartition is not None else []


def needs_repartition(q: Query, partitions: Callable[[str], int]) -> int:
    """The input's partition count when ``q`` aggregates by a column that is not its input's
    key over several partitions (the records of a group would be spread over them), else 0."""
    op = q.pipeline.window_op
    key = q.source.key
    if op is None or q.repartition is not None or (key is not None and key.name == op.key):
        return 0
    n = partitions(q.source.topic)
    return n if n > 1 else 0


def repartition(st: CreateAs, q: Query, over: Callable[[Source, CreateAs], Query], namespace: str | None,
                registry: str | None) -> Query:
    """``q`` (the one-stage aggregation of ``st``) as re-key stage + aggregation over the internal
    topic. ``over(source, statement)`` compiles ``statement`` with ``source`` in place of its input."""
    src, op = q.source, q.pipeline.window_op
    assert op is not None
    cols = {c.name: c for c in src.columns}
    gk = op.key
    ktype = cols[gk].type
    topic = internal_topic(namespace, q.pipeline.name)
    # stage 1: the aggregation's steps before its window (decode, WHERE, aggregate arguments), then re-key
    before = q.pipeline.ops[:next(i for i, o in enumerate(q.pipeline.ops) if isinstance(o, Window))]
    p1 = replace(q.pipeline, ops=tuple(before), name_=f"{q.pipeline.name}-repartition", sink_name=None,
                 sink_key=None).exact(record_key=q.pipeline.record_key, record_time=src.timestamp is None)
    values = [c.name for c in src.columns if c.name != gk]
    when = pl.col(src.timestamp).cast(pl.Int64, strict=False) if src.timestamp is not None else pl.col("__ts")

    def rekey(df: pl.DataFrame) -> pl.DataFrame:
        if df.height == 0:
            return df
        df = df.filter(pl.col(gk).is_not_null())  # as ksqlDB: a record without a group is dropped
        times = df.select(when.alias("__timestamp"))
        return df.select(["__row", *values]).with_columns(
            pl.Series("__ksql_key", encode_key(df[gk], ktype), dtype=pl.Binary), times.to_series())

    p1 = p1.map_batch(rekey, name=f"re-key by {gk} (event time: {src.timestamp or 'record timestamp'})")
    p1 = p1.to(topic, key="__ksql_key", config=INTERNAL_CONFIG).formats(source_format(src, registry), None)
    # stage 2: the same statement over the internal topic, declared as the input keyed by the GROUP BY column
    rcols = (Column(gk, ktype, True), *(Column(c.name, c.type, False) for c in src.columns if c.name != gk))
    rsrc = Source("STREAM", src.name, topic, rcols, src.timestamp)
    q2 = over(rsrc, replace(st, select=replace(st.select, where=None)))  # WHERE ran in stage 1
    if q2.pipeline.name != q.pipeline.name:
        raise QueryError(f"{st.name}: the aggregation over the repartition topic is not the query's pipeline")
    return replace(q2, repartition=p1, pipeline=replace(q2.pipeline, purge_source=PURGE_INTERVAL_S))


def preview_frames(q: Query, settings: Settings, timeout: float = 300.0, batch: int = 10_000) -> list[pl.DataFrame]:
    """The output frames of both stages of ``q`` run over what its input topic holds now, the
    re-keyed records passed in memory (each row with ``_key`` and ``_tombstone``, as
    :func:`streamml.stream.replay` with ``keys=True`` returns them).

    The re-keyed records of the input's partitions are interleaved as Kafka Streams picks
    them: each partition's in offset order, the one with the smallest event time next; a
    record goes to the partition of the internal topic that the producer's partitioner picks.
    """
    from streamml.kafka.read import pin, read_ranges
    from streamml.stream.engine import Engine, RawBatch

    assert q.repartition is not None
    first, second = Engine(q.repartition), Engine(q.pipeline, keep_frames=True)
    topic, internal = q.repartition.source_topic(settings), q.pipeline.source_topic(settings)
    ranges = pin(settings, topic, timeout=30.0, error=PipelineError)
    n = len(ranges)
    rekeyed: dict[int, list[tuple[int, bytes | None, bytes | None, Any]]] = {}
    for msgs in read_ranges(settings, ranges, max_messages=batch, timeout=timeout, idle_timeout=timeout,
                            context=f"preview of {q.name} over {topic}"):
        for part in sorted({m.partition() for m in msgs}):  # stateless: one partition at a time, to keep its order
            r1 = first.process(RawBatch.from_messages([m for m in msgs if m.partition() == part], topic,
                                                      timestamps=first.needs_timestamps))
            stamps = r1.timestamps or [0] * len(r1.values)
            rekeyed.setdefault(part, []).extend(
                (t if t is not None else 0, k, v, h) for t, k, v, h in zip(stamps, r1.keys, r1.values, r1.headers))
    merged = list(heapq.merge(*(rekeyed[p] for p in sorted(rekeyed)), key=lambda r: r[0]))
    offsets = [0] * n
    frames: list[pl.DataFrame] = []
    for i in range(0, len(merged), batch):
        chunk = merged[i:i + batch]
        r2 = second.process(_internal_batch(internal, offsets, [t for t, _, _, _ in chunk], [k for _, k, _, _ in chunk],
                                            [v for _, _, v, _ in chunk], [h for _, _, _, h in chunk]))
        second.commit(r2)
        if r2.frame is not None and r2.frame.height:
            frames.append(r2.frame.with_columns(pl.Series("_key", r2.keys, dtype=pl.Binary),
                                                pl.Series("_tombstone", [v is None for v in r2.values],
                                                          dtype=pl.Boolean)))
    return frames


def _internal_batch(topic: str, offsets: list[int], stamps: list[int | None], keys: list[bytes | None],
                    values: list[bytes | None], headers: list[Any]) -> Any:
    """Re-keyed records as a batch of the internal topic: each in the partition the producer's
    partitioner (librdkafka's default: CRC32 of the key) gives it, at the next offset there."""
    from streamml.stream.engine import RawBatch

    parts = [zlib.crc32(k or b"") % len(offsets) for k in keys]
    offs = []
    for p in parts:
        offs.append(offsets[p])
        offsets[p] += 1
    return RawBatch(topic, values, keys, parts, offs, [t if t is not None else 0 for t in stamps],
                    headers if any(headers) else None)


def push_decoder(q: Query, partitions: int,
                 rows: Callable[[Any], pl.DataFrame]) -> Callable[[list[Any]], pl.DataFrame]:
    """Messages of ``q``'s input -> the rows of its aggregation (``rows``: a batch of the internal
    topic -> rows), re-keyed in memory as a push query runs it (nothing is written)."""
    from streamml.stream.engine import Engine, RawBatch

    assert q.repartition is not None
    first, topic, internal = Engine(q.repartition), q.repartition.source_topic(), q.pipeline.source_topic()
    offsets = [0] * max(1, partitions)

    def decode(msgs: list[Any]) -> pl.DataFrame:
        r1 = first.process(RawBatch.from_messages(msgs, topic, timestamps=first.needs_timestamps))
        first.commit(r1)
        if not r1.values:
            return pl.DataFrame()
        return rows(_internal_batch(internal, offsets, r1.timestamps or [None] * len(r1.values), r1.keys,
                                    r1.values, r1.headers))

    return decode
