"""ksqlDB value formats and PARTITION BY against a real broker (and a real schema registry).

- A DELIMITED stream aggregated to a JSON table writes the same records as the same data in JSON.
- An AVRO source written by confluent-kafka's AvroSerializer, declared without columns (they come
  from the ``<topic>-value`` subject), read by a CSAS writing AVRO, read back by AvroDeserializer.
- PARTITION BY re-keys every record (key bytes in ksqlDB's KAFKA format), every key in one
  partition of the output, and the preview's rows equal the deployed pipeline's rows.
"""

from __future__ import annotations

import struct
import time
import uuid
from typing import Any

import orjson
import polars as pl
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from helpers import drain

import streamml.query as q
from streamml.config import Settings
from streamml.kafka import clients, ensure_topic
from streamml.query.ksql_compile import rows
from streamml.query.ksql_run import compile_query

T0 = 1_700_000_040_000
M = 60_000
RECORDS = [("a", T0 + 5_000, 10.0, 1), ("b", T0 + 7_000, 1.5, 2), ("a", T0 + 50_000, 20.0, 3),
           ("c", T0 + M + 1_000, 4.0, 4), ("a", T0 + M + 2_000, 7.0, 5), ("b", T0 + 3 * M, 0.5, 6)]


def _produce(settings: Settings, topic: str, values: list[tuple[bytes, bytes]], partition: int | None = 0) -> None:
    p = clients.producer(settings)
    for k, v in values:
        if partition is None:
            p.produce(topic, v, k)
        else:
            p.produce(topic, v, k, partition=partition)
    assert p.flush(30) == 0


def _name(prefix: str) -> str:
    return prefix + "_" + uuid.uuid4().hex[:8].upper()


def _deploy(settings: Settings, stmt: str, n: int) -> tuple[Any, list[dict[str, Any]]]:
    query = compile_query(stmt, settings)
    with q.deploy(stmt, max_batch=2) as d:
        d.wait(n, timeout=60)
    return query, drain(settings, query.sink, expect=n)


def test_delimited_stream_aggregated_to_json_equals_json(settings: Settings) -> None:
    q.use(settings)
    out = {}
    for fmt in ("DELIMITED", "JSON"):
        topic = f"{settings.namespace}-pay-{fmt.lower()}"
        ensure_topic(settings, topic, 1)
        if fmt == "DELIMITED":
            vals = [f"{amount},{n},{ts}".encode() for _, ts, amount, n in RECORDS]
            vals.insert(2, b"not,a,row,at all")  # a row that does not parse: a dead letter, not a failure
            keys = [c.encode() for c, *_ in RECORDS]
            keys.insert(2, b"a")
        else:
            vals = [orjson.dumps({"amount": amount, "n": n, "ts": ts}) for _, ts, amount, n in RECORDS]
            keys = [c.encode() for c, *_ in RECORDS]
        _produce(settings, topic, list(zip(keys, vals)))
        src = _name("PAY")
        q.sql(f"CREATE STREAM {src} (card VARCHAR KEY, amount DOUBLE, n BIGINT, ts BIGINT) "
              f"WITH (kafka_topic='{topic}', value_format='{fmt}', timestamp='ts');")
        name = _name("TOT")
        stmt = (f"CREATE TABLE {name} WITH (value_format='JSON') AS SELECT card, COUNT(*) AS c, SUM(amount) AS s, "
                f"MAX(n) AS hi FROM {src} WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 0 SECONDS) "
                f"GROUP BY card EMIT FINAL;")
        preview = q.sql(stmt)
        query, recs = _deploy(settings, stmt, 4)
        deployed = rows(query, [(r["key"], r["value"]) for r in recs])
        assert deployed.to_dicts() == preview.to_dicts()
        out[fmt] = ([(r["key"], r["value"]) for r in recs], preview.to_dicts())
    assert out["DELIMITED"] == out["JSON"]
    got = sorted((k, orjson.loads(v)["C"], orjson.loads(v)["S"]) for k, v in out["JSON"][0])
    assert got == [(b"a" + struct.pack(">q", T0), 2, 30.0), (b"a" + struct.pack(">q", T0 + M), 1, 7.0),
                   (b"b" + struct.pack(">q", T0), 1, 1.5), (b"c" + struct.pack(">q", T0 + M), 1, 4.0)]
    dead = drain(settings, settings.topic("dlq"), expect=1)
    assert [r["value"] for r in dead] == [b"not,a,row,at all"]


def test_avro_source_to_avro_stream(settings: Settings, schema_registry: str) -> None:
    settings = settings.with_(schema_registry_url=schema_registry)
    q.use(settings)
    topic = f"{settings.namespace}-pay-avro"
    ensure_topic(settings, topic, 1)
    client = SchemaRegistryClient({"url": schema_registry})
    schema = orjson.dumps({"type": "record", "name": "payment", "namespace": "com.example", "fields": [
        {"name": "amount", "type": "double"}, {"name": "n", "type": "long"},
        {"name": "note", "type": ["null", "string"], "default": None}]}).decode()
    ser = AvroSerializer(client, schema)
    ctx = SerializationContext(topic, MessageField.VALUE)
    data = [("a", 10.0, 1, "x"), ("b", 2.5, 2, None), ("a", 30.0, 3, "y")]
    _produce(settings, topic, [(k.encode(), ser({"amount": a, "n": n, "note": note}, ctx))
                               for k, a, n, note in data] + [(b"a", b"not avro at all")])
    src = _name("PAYA")
    declared = q.sql(f"CREATE STREAM {src} (card VARCHAR KEY) WITH (kafka_topic='{topic}', value_format='AVRO');")
    assert [(c.name, c.type, c.key) for c in declared.columns] == [
        ("CARD", "VARCHAR", True), ("AMOUNT", "DOUBLE", False), ("N", "BIGINT", False), ("NOTE", "VARCHAR", False)]
    name = _name("BIGA")
    stmt = (f"CREATE STREAM {name} WITH (value_format='AVRO') AS SELECT card, amount * 2 AS a2, n, note "
            f"FROM {src} WHERE amount > 5 EMIT CHANGES;")
    preview = q.sql(stmt)
    query, recs = _deploy(settings, stmt, 2)
    assert [r["key"] for r in recs] == [b"a", b"a"]
    de = AvroDeserializer(client)
    out_ctx = SerializationContext(query.sink, MessageField.VALUE)
    assert [de(r["value"], out_ctx) for r in recs] == [{"A2": 20.0, "N": 1, "NOTE": "x"},
                                                       {"A2": 60.0, "N": 3, "NOTE": "y"}]
    registered = client.get_latest_version(f"{query.sink}-value").schema.schema_str
    assert '"KsqlDataSourceSchema"' in registered
    assert rows(query, [(r["key"], r["value"]) for r in recs]).to_dicts() == preview.to_dicts()
    assert [r["value"] for r in drain(settings, settings.topic("dlq"), expect=1)] == [b"not avro at all"]


def _partitions(settings: Settings, topic: str, n: int, timeout: float = 30.0) -> list[tuple[bytes, int]]:
    c = clients.consumer(settings, f"verify-{time.time_ns()}")
    c.subscribe([topic])
    out: list[tuple[bytes, int]] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out += [(m.key(), m.partition()) for m in c.consume(100, timeout=0.3) if not m.error()]
    c.close()
    return out


@pytest.mark.parametrize("partitions", [3])
def test_partition_by_rekeys_every_record(settings: Settings, partitions: int) -> None:
    q.use(settings)
    topic = f"{settings.namespace}-pay-keyed"
    ensure_topic(settings, topic, partitions)
    recs = [(f"card{i}", {"shop": f"s{i % 4}", "amount": float(i), "ts": T0 + i}) for i in range(24)]
    for p in range(partitions):  # the records of each shop spread over every input partition
        _produce(settings, topic, [(k.encode(), orjson.dumps(v)) for j, (k, v) in enumerate(recs)
                                   if j % partitions == p], partition=p)
    src = _name("PAYK")
    q.sql(f"CREATE STREAM {src} (card VARCHAR KEY, shop VARCHAR, amount DOUBLE, ts BIGINT) "
          f"WITH (kafka_topic='{topic}', value_format='JSON', timestamp='ts');")
    name = _name("BYSHOP")
    stmt = f"CREATE STREAM {name} AS SELECT * FROM {src} PARTITION BY shop EMIT CHANGES;"
    preview = q.sql(stmt)
    query, out = _deploy(settings, stmt, len(recs))
    assert len(out) == len(recs)
    assert {r["key"] for r in out} == {b"s0", b"s1", b"s2", b"s3"}
    for r in out:  # each key is the record's shop, the old key a value column, the shop not in the value
        v = orjson.loads(r["value"])
        assert r["key"] == f"s{int(v['CARD'][4:]) % 4}".encode() and set(v) == {"CARD", "AMOUNT", "TS"}
    where = _partitions(settings, query.sink, len(recs))
    assert len(where) == len(recs)
    assert all(len({p for k, p in where if k == key}) == 1 for key, _ in where)  # a key lives in one partition
    deployed = rows(query, [(r["key"], r["value"]) for r in out])
    order = ["SHOP", "CARD", "AMOUNT", "TS"]
    assert sorted(deployed.select(order).rows()) == sorted(preview.select(order).rows())
    # GROUP BY a non-key column of a 3-partition topic goes through a repartition topic (test_ksql_repartition);
    # over the re-keyed stream it needs none: both count each shop once
    direct = q.sql(f"CREATE TABLE {_name('DIRECT')} AS SELECT shop, COUNT(*) AS c FROM {src} GROUP BY shop "
                   "EMIT CHANGES;")
    assert direct.group_by("SHOP").agg(pl.col("C").max()).sort("SHOP").rows() == [(f"s{i}", 6) for i in range(4)]
    per = f"CREATE TABLE {_name('PERSHOP')} AS SELECT shop, COUNT(*) AS c FROM {name} GROUP BY shop EMIT CHANGES;"
    agg_preview = q.sql(per)
    aq, agg = _deploy(settings, per, len(recs))
    agg_rows = rows(aq, [(r["key"], r["value"]) for r in agg])
    assert sorted(agg_rows.rows()) == sorted(agg_preview.rows())
    assert agg_rows.group_by("SHOP").agg(pl.col("C").max()).sort("SHOP").rows() == [(f"s{i}", 6) for i in range(4)]
    # a BIGINT key is 8 bytes big-endian, as ksqlDB writes it
    name2 = _name("BYAMT")
    stmt2 = f"CREATE STREAM {name2} AS SELECT card, CAST(amount AS BIGINT) AS a FROM {src} PARTITION BY a EMIT CHANGES;"
    _, out2 = _deploy(settings, stmt2, len(recs))
    assert sorted(struct.unpack(">q", r["key"])[0] for r in out2) == list(range(24))
