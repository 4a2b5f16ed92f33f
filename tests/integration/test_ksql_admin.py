"""ksqlDB session statements against a real broker: INSERT INTO runs as a persistent query
writing into the target stream's topic; SHOW QUERIES lists it, DROP is refused while it runs,
TERMINATE stops it; DROP ... DELETE TOPIC deletes the topic."""

from __future__ import annotations

import uuid

import orjson
import polars as pl
import pytest
from helpers import drain

import streamml.query as q
from streamml.config import Settings
from streamml.errors import QueryError
from streamml.kafka import clients, ensure_topic
from streamml.kafka.admin import list_topics


def test_insert_into_show_terminate_drop(settings: Settings) -> None:
    q.use(settings)
    src_topic, dst_topic = f"{settings.namespace}-eu", f"{settings.namespace}-all"
    ensure_topic(settings, src_topic, 1)
    ensure_topic(settings, dst_topic, 1)
    p = clients.producer(settings)
    for card, amount in [("a", 1.0), ("b", 20.0), ("c", 30.0)]:
        p.produce(src_topic, orjson.dumps({"card": card, "amount": amount}), card.encode(), partition=0)
    assert p.flush(30) == 0
    eu, every = "EU_" + uuid.uuid4().hex[:6].upper(), "ALL_" + uuid.uuid4().hex[:6].upper()
    q.sql(f"CREATE STREAM {eu} (card VARCHAR KEY, amount DOUBLE) WITH (kafka_topic='{src_topic}');"
          f"CREATE STREAM {every} (card VARCHAR KEY, amount DOUBLE, region VARCHAR) "
          f"WITH (kafka_topic='{dst_topic}');")
    stmt = f"INSERT INTO {every} SELECT card, amount, 'EU' AS region FROM {eu} WHERE amount > 10;"
    preview = q.sql(stmt)
    assert preview.drop("_tombstone").to_dicts() == [{"CARD": "b", "AMOUNT": 20.0, "REGION": "EU"},
                                                     {"CARD": "c", "AMOUNT": 30.0, "REGION": "EU"}]
    d = q.deploy(stmt, max_batch=2)
    try:
        d.wait(2, timeout=60)
        assert d.sink == dst_topic
        recs = drain(settings, dst_topic, expect=2)
        assert [(r["key"], orjson.loads(r["value"])) for r in recs] == [
            (b"b", {"AMOUNT": 20.0, "REGION": "EU"}), (b"c", {"AMOUNT": 30.0, "REGION": "EU"})]
        shown = q.sql("SHOW QUERIES").filter(pl.col("query_id") == d.query_id)
        assert shown.select("status", "sink_topic").rows() == [("RUNNING", dst_topic)]
        with pytest.raises(QueryError, match=f"cannot drop {every}"):
            q.sql(f"DROP STREAM {every}")
        assert q.sql(f"TERMINATE {d.query_id}").rows() == [(d.query_id, "TERMINATED")]
        assert not d.running
    finally:
        d.stop()
    assert q.sql(f"DROP STREAM {every} DELETE TOPIC").to_dicts() == [
        {"name": every, "dropped": True, "topic_deleted": True}]
    assert dst_topic not in list_topics(settings)
    assert every not in q.sql("SHOW STREAMS")["name"].to_list()
