"""Push queries: ``SELECT ... FROM s [WHERE ...] EMIT CHANGES|FINAL [LIMIT n]`` as a live iterator of rows.

A push query over a declared STREAM is compiled like a persistent query (the same pipeline:
decode, WHERE, projection, or GROUP BY with its windows and aggregates) and run in this
process by the stream engine over the batches a :class:`~streamml.query.tail.Tail` consumes:
nothing is written to Kafka, no consumer group is joined. Its rows are exactly the rows the
persistent query (``CREATE STREAM|TABLE x AS`` the same SELECT) would write, decoded: the key
column (``WINDOWSTART``/``WINDOWEND`` when windowed) and the value columns; an aggregation's
rows carry ``_tombstone`` (a row that failed HAVING). ``EMIT FINAL`` on a windowed aggregation
emits each window once, when stream time passes its end plus the grace period. GROUP BY a
column that is not the key of a multi-partition stream re-keys the records in memory
(:func:`~streamml.query.ksql_repartition.push_decoder`), as the deployed query's repartition
topic would.

A push query over a table (a declared TABLE, or a CREATE TABLE/STREAM AS of this session)
follows its topic: every change of the table, filtered by WHERE and projected; a deletion (a
tombstone) is a row with ``_tombstone`` true and null values, whatever the WHERE clause says.

As in ksqlDB, a push query starts at the end of the topic (records committed from now on);
``SET 'auto.offset.reset' = 'earliest';`` before it (in the same call or an earlier one of the
session) starts at the beginning. ``LIMIT n`` ends it after ``n`` rows::

    live = streamml.sql("SELECT card, amount FROM pay WHERE amount > 100 EMIT CHANGES LIMIT 10")
    for row in live: ...                # dicts, as they arrive
    for df in live.frames(20): ...      # a refreshing DataFrame of the last 20 rows

>>> from streamml.query.ksql_compile import Catalog
>>> cat = Catalog()
>>> _ = cat.execute("CREATE STREAM pay (card VARCHAR KEY, amount DOUBLE, ts BIGINT) "
...                 "WITH (kafka_topic='p', timestamp='ts')")
>>> q = transient_query(parse_push("SELECT card, COUNT(*) AS n FROM pay GROUP BY card EMIT CHANGES"), cat)
>>> q.kind, q.columns, "PUSH" in q.name, cat.queries
('TABLE', ('N',), True, {})
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any, Callable

import polars as pl
from confluent_kafka import Message

from streamml.config import Settings
from streamml.errors import QueryError
from streamml.kafka.admin import list_topics
from streamml.query.ksql import CreateAs
from streamml.query.ksql_compile import Catalog, Query, decode_record
from streamml.query.ksql_pull import conjuncts, select_rows, source_rows
from streamml.query.ksql_repartition import push_decoder
from streamml.query.ksql_select import PushQuery, parse_transient
from streamml.query.ksql_table import Source
from streamml.query.reader import Bound
from streamml.query.tail import Tail
from streamml.stream.engine import Engine, RawBatch
from streamml.stream.pipeline import Join

__all__ = ["batch_rows", "push", "parse_push", "transient_query", "engine_decoder", "OFFSET_RESET"]

#: The session property that picks where a push query starts (ksqlDB's name).
OFFSET_RESET = "AUTO.OFFSET.RESET"


def parse_push(text: str) -> PushQuery:
    """A push query (refuses a pull query)."""
    st = parse_transient(text)
    if not isinstance(st, PushQuery):
        raise QueryError("expected a push query (SELECT ... EMIT CHANGES)")
    return st


def transient_query(st: PushQuery, cat: Catalog) -> Query:
    """The push query over a stream compiled as a persistent query that is never deployed."""
    kind = "TABLE" if st.select.group_by else "STREAM"
    name = f"PUSH_{uuid.uuid4().hex[:8].upper()}"
    q = cat.compile_unregistered(CreateAs(kind, name, {}, st.select, st.text))
    if q.pipeline.join_op is not None:  # a tail follows one topic; the join reads two
        raise QueryError("a push query over a stream-stream join is not supported yet",
                         hint="CREATE STREAM j AS SELECT ... WITHIN ... (streamml.sql previews it; deploy it), "
                              "then SELECT * FROM j EMIT CHANGES")
    return q


def _rows(q: Query, keys: list[bytes | None], values: list[bytes | None]) -> pl.DataFrame:
    rows = [decode_record(q, k, v) for k, v in zip(keys, values)]
    if not rows:
        return pl.DataFrame()
    df = pl.DataFrame(rows, infer_schema_length=None)
    return df if q.kind == "TABLE" else df.filter(~pl.col("_tombstone")).drop("_tombstone")


def batch_rows(q: Query) -> Callable[[RawBatch], pl.DataFrame]:
    """Raw batches of ``q``'s input -> the rows ``q`` emits for them (the engine holds the state,
    in this process only: nothing is committed to Kafka)."""
    engine = Engine(q.pipeline, keep_frames=True)

    def rows(raw: RawBatch) -> pl.DataFrame:
        res = engine.process(raw)
        engine.commit(res)
        return _rows(q, res.keys, res.values)

    return rows


def engine_decoder(q: Query) -> Callable[[list[Message]], pl.DataFrame]:
    """Batches of ``q``'s input records (messages) -> the rows ``q`` emits for them."""
    rows, topic = batch_rows(q), q.source.topic
    return lambda msgs: rows(RawBatch.from_messages(msgs, topic))


def _follow(st: PushQuery, table: Query | Source,
            registry: str | None = None) -> Callable[[list[Message]], pl.DataFrame]:
    """A table's (or a persistent query's) topic records -> its changes as rows, filtered and projected."""
    sel = st.select
    if sel.join is not None or sel.group_by or sel.window is not None:
        raise QueryError(f"a push query over the table {table.name} takes WHERE only",
                         hint="join or aggregate streams: SELECT ... FROM <stream> ... EMIT CHANGES")
    where = conjuncts(sel.where) if sel.where is not None else []
    windowed = isinstance(table, Query) and table.windowed

    def decode(msgs: list[Message]) -> pl.DataFrame:
        if isinstance(table, Query):
            rows = _rows(table, [m.key() for m in msgs], [m.value() for m in msgs])
        else:  # each record is one change; a tombstone deletes its key
            parts = [(source_rows(table, [(m.key(), m.value())], registry) if m.value() is not None else
                      source_rows(replace(table, value_format="JSON"), [(m.key(), b"{}")])).with_columns(
                pl.lit(m.value() is None).alias("_tombstone")) for m in msgs if m.key() is not None]
            rows = pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame()
        if rows.height == 0:
            return rows
        return select_rows(sel.items, where, rows, table.name, windowed=windowed)

    return decode


def push(st: PushQuery, cat: Catalog, settings: Settings, *, from_: Bound | str | None = None,
         timeout: float | None = None, idle_timeout: float | None = None) -> Tail:
    """Start push query ``st``: a :class:`Tail` of its rows (see the module doc); writes nothing."""
    start: Any = from_ or cat.properties.get(OFFSET_RESET, "latest")
    name = st.select.source
    on_close: Callable[[], None] | None = None
    if name in cat.queries:
        q = cat.queries[name]
        topic = q.pipeline.sink_topic(settings) or q.sink
        decode = _follow(st, q)
    elif cat.source(name).kind == "TABLE":
        src = cat.source(name)
        topic, decode = src.topic, _follow(st, src, cat.registry)
    else:
        q = transient_query(st, cat)
        topic = q.pipelines[0].source_topic(settings)
        tables = [op.table for op in q.pipeline.ops if isinstance(op, Join)]
        for t in tables:
            t.start(settings)

        def stop_tables() -> None:
            for t in tables:
                t.stop()

        on_close = stop_tables if tables else None
        decode = engine_decoder(q) if q.repartition is None else \
            push_decoder(q, list_topics(settings).get(topic, 1), batch_rows(q))  # GROUP BY a non-key column
    return Tail(topic, settings=settings, from_=start, max_records=st.limit, timeout=timeout,
                idle_timeout=idle_timeout, resolve=False, decode=decode, on_close=on_close)
