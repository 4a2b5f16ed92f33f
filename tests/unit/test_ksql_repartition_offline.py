"""GROUP BY a non-key column of a multi-partition stream: the two stages (re-key into the
internal repartition topic, then the aggregation over it), run by the engine without a broker."""

from __future__ import annotations

import struct
import zlib
from dataclasses import replace
from typing import Any

import orjson
import polars as pl
import pytest

from streamml.errors import QueryError
from streamml.query.ksql_compile import Catalog, Query, rows
from streamml.query.ksql_repartition import INTERNAL_CONFIG, internal_topic, internal_topics
from streamml.stream.engine import Engine, RawBatch

T0 = 1_700_000_040_000
M = 60_000
DECL = ("CREATE STREAM pay (id BIGINT KEY, card VARCHAR, amount DOUBLE, ts BIGINT) "
        "WITH (kafka_topic='payments', value_format='JSON', timestamp='ts');")
AGG = ("CREATE TABLE t AS SELECT card, COUNT(*) AS n, SUM(amount) AS total FROM pay "
       "WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 0 SECONDS) GROUP BY card EMIT FINAL;")


def _compile(stmt: str = AGG, decl: str = DECL, partitions: int = 3, namespace: str | None = "ns") -> Query:
    cat = Catalog(partitions=lambda topic: partitions, namespace=namespace)
    cat.execute(decl)
    return cat.compile(stmt)


def test_compiles_to_two_stages_over_the_internal_topic() -> None:
    q = _compile()
    assert q.repartition is not None and len(q.pipelines) == 2
    first, second = q.pipelines
    assert (first.name, second.name) == ("ksql-t-repartition", "ksql-t")
    topic = "ns.changelog.ksql-t-repartition"
    assert first.source_topic() == "payments" and first.sink_topic() == topic == internal_topic("ns", "ksql-t")
    assert second.source_topic() == topic and q.source.topic == topic and internal_topics(q) == [topic]
    assert dict(first.sink_config) == INTERNAL_CONFIG and INTERNAL_CONFIG["retention.ms"] == "-1"
    assert first.window_op is None and first.sink_key == "__ksql_key" and first.record_key
    assert not first.record_time  # the event time is the declared column
    # the aggregation reads the input's columns keyed by the GROUP BY column
    assert [(c.name, c.type, c.key) for c in q.source.columns] == [
        ("CARD", "VARCHAR", True), ("ID", "BIGINT", False), ("AMOUNT", "DOUBLE", False), ("TS", "BIGINT", False)]
    op = second.window_op
    assert op is not None and (op.key, op.time, op.emit) == ("CARD", "TS", "close")
    assert (q.sink, q.key_type, q.windowed, q.columns) == ("T", "VARCHAR", True, ("N", "TOTAL"))
    assert "re-key by CARD (event time: TS)" in first.describe()


def test_one_stage_when_no_repartition_is_needed() -> None:
    assert _compile(partitions=1).repartition is None  # one partition: the group is never split
    by_key = AGG.replace("SELECT card", "SELECT id").replace("GROUP BY card", "GROUP BY id")
    assert _compile(by_key).repartition is None  # the key column: records of a group share a partition
    assert Catalog().execute(DECL + AGG)[-1].repartition is None  # type: ignore[union-attr]  # no broker known
    q = _compile(namespace=None)
    assert q.pipeline.source_topic() == "changelog.ksql-t-repartition"


def _run_first(q: Query, records: list[tuple[int, int, dict[str, Any]]], ts: list[int] | None = None) -> Any:
    """Stage 1 over (partition, key, value) records; returns its StepResult."""
    assert q.repartition is not None
    e = Engine(q.repartition)
    raw = RawBatch("payments", [orjson.dumps(v) for _, _, v in records], [struct.pack(">q", k) for _, k, _ in records],
                   [p for p, _, _ in records], list(range(len(records))), ts or [0] * len(records))
    res = e.process(raw)
    e.commit(res)
    return res


def test_rekey_stage_keys_by_the_group_column_and_keeps_event_time() -> None:
    q = _compile("CREATE TABLE t AS SELECT card, COUNT(*) AS n FROM pay WHERE amount > 0 GROUP BY card EMIT CHANGES;")
    recs = [(0, 1, {"card": "a", "amount": 1.0, "ts": T0}), (1, 2, {"card": "b", "amount": 2.0, "ts": T0 + 5}),
            (2, 3, {"card": None, "amount": 3.0, "ts": T0 + 6}), (1, 4, {"card": "a", "amount": -1.0, "ts": T0 + 7})]
    res = _run_first(q, recs)
    assert res.keys == [b"a", b"b"]  # the null group and the row WHERE drops never reach the topic
    assert [orjson.loads(v) for v in res.values] == [{"ID": 1, "AMOUNT": 1.0, "TS": T0},
                                                     {"ID": 2, "AMOUNT": 2.0, "TS": T0 + 5}]
    assert res.timestamps == [T0, T0 + 5]  # the record timestamp is the event time
    # without a timestamp column the input record's timestamp is carried
    decl = DECL.replace(", timestamp='ts'", "")
    q2 = _compile("CREATE TABLE t AS SELECT card, COUNT(*) AS n FROM pay WINDOW TUMBLING (SIZE 1 MINUTE) "
                  "GROUP BY card EMIT CHANGES;", decl)
    assert q2.repartition is not None and q2.repartition.record_time and q2.pipeline.window_op.time is None  # type: ignore[union-attr]
    res2 = _run_first(q2, recs[:2], ts=[T0 + 11, T0 + 22])
    assert res2.timestamps == [T0 + 11, T0 + 22]


def test_bigint_group_key_in_kafka_format() -> None:
    decl = "CREATE STREAM s (k VARCHAR KEY, shop BIGINT, ts BIGINT) WITH (kafka_topic='x', timestamp='ts');"
    q = _compile("CREATE TABLE c AS SELECT shop, COUNT(*) AS n FROM s GROUP BY shop EMIT CHANGES;", decl)
    assert q.repartition is not None
    e = Engine(q.repartition)
    res = e.process(RawBatch("x", [orjson.dumps({"shop": 7, "ts": 1})], [b"k"], [0], [0], [0]))
    assert res.keys == [struct.pack(">q", 7)] and orjson.loads(res.values[0]) == {"K": "k", "TS": 1}


def test_windowed_group_by_over_the_rekeyed_stream_equals_python() -> None:
    q = _compile()
    cards = ["a", "b", "c", "d"]
    recs = []
    for i in range(40):  # every card's records on every input partition
        recs.append((i % 3, i, {"card": cards[i % 4], "amount": float(i), "ts": T0 + i * 4_000}))
    first = _run_first(q, recs)
    parts = [zlib.crc32(k) % 3 for k in first.keys]  # where the producer's partitioner puts them
    second = Engine(q.pipeline, keep_frames=True)
    res = second.process(RawBatch(q.pipeline.source_topic(), first.values, first.keys, parts,
                                  list(range(len(parts))), first.timestamps))
    second.commit(res)
    out = list(zip(res.keys, res.values))
    assert len(out) < 12  # EMIT FINAL: the last windows wait for a later record
    for p in range(3):  # a later record on every partition of the internal topic closes its windows
        key = next(k for k in (f"z{i}".encode() for i in range(100)) if zlib.crc32(k) % 3 == p)
        res = second.process(RawBatch(q.pipeline.source_topic(), [orjson.dumps({"TS": T0 + 10 * M, "AMOUNT": 0})],
                                      [key], [p], [10_000], [0]))
        second.commit(res)
        out += list(zip(res.keys, res.values))
    got = rows(q, out).drop("_tombstone").sort(["CARD", "WINDOWSTART"])
    expect: dict[tuple[str, int], list[float]] = {}
    for _, _, v in recs:
        ws = (v["ts"] // M) * M
        expect.setdefault((v["card"], ws), []).append(v["amount"])
    want = pl.DataFrame([{"CARD": c, "WINDOWSTART": ws, "WINDOWEND": ws + M, "N": len(a), "TOTAL": sum(a)}
                         for (c, ws), a in sorted(expect.items())])
    assert got.select(want.columns).rows() == want.rows()


def test_refusals_stay_over_a_repartition() -> None:
    with pytest.raises(QueryError, match="EMIT FINAL is only supported for windowed"):
        _compile("CREATE TABLE t AS SELECT card, COUNT(*) AS n FROM pay GROUP BY card EMIT FINAL;")
    with pytest.raises(QueryError, match="GROUP BY takes column names"):
        _compile("CREATE TABLE t AS SELECT COUNT(*) AS n FROM pay GROUP BY UCASE(card) EMIT CHANGES;")


class _Msg:
    def __init__(self, p: int, o: int) -> None:
        self.p, self.o = p, o

    def partition(self) -> int:
        return self.p

    def offset(self) -> int:
        return self.o


class _Admin:
    def __init__(self) -> None:
        self.calls: list[list[tuple[str, int, int]]] = []

    def delete_records(self, tps: list[Any], operation_timeout: float = 0) -> dict[Any, Any]:
        from concurrent.futures import Future

        self.calls.append([(tp.topic, tp.partition, tp.offset) for tp in tps])
        out: dict[Any, Any] = {}
        for tp in tps:
            f: Future[Any] = Future()
            f.set_result(None)
            out[tp] = f
        return out


def test_the_aggregation_purges_what_it_committed_at_most_every_interval() -> None:
    from streamml.config import Settings
    from streamml.stream.runner import RunOptions, Worker

    q = _compile()
    assert q.pipeline.purge_source == 30.0 and q.repartition is not None and q.repartition.purge_source is None
    w = Worker(replace(q.pipeline, purge_source=0.0),
               Settings(bootstrap_servers="127.0.0.1:1", namespace="unit"), RunOptions())
    admin = _Admin()
    w._admin = admin  # noqa: SLF001 - the admin seam of the purge
    w.purge([_Msg(0, 4), _Msg(2, 9), _Msg(0, 5)])
    assert admin.calls == [[(q.source.topic, 0, 6), (q.source.topic, 2, 10)]]  # below the next offsets
    w.pipeline = q.pipeline  # 30 s between purges: the next batch's offsets wait
    w.purge([_Msg(1, 3)])
    assert len(admin.calls) == 1 and w._consumed == {1: 4}  # noqa: SLF001
