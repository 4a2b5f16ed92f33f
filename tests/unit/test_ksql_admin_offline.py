"""ksqlDB's session statements without a broker: SHOW, DESCRIBE, DROP, TERMINATE on a catalog
with stand-in deployments, and INSERT INTO compiled onto the engine (the TestDriver)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from streamml.config import Settings
from streamml.errors import QueryError
from streamml.query.ksql import parse_ksql
from streamml.query.ksql_admin import parse_admin, run_admin
from streamml.query.ksql_compile import Catalog, Query
from streamml.stream import TestDriver

DDL = ("CREATE STREAM pay (card VARCHAR KEY, amount DOUBLE, ts BIGINT) WITH (kafka_topic='payments', timestamp='ts');"
       "CREATE STREAM pay2 (card VARCHAR KEY, amount DOUBLE, ts BIGINT) WITH (kafka_topic='payments2');"
       "CREATE TABLE cards (id VARCHAR PRIMARY KEY, lim DOUBLE) WITH (kafka_topic='cards');"
       "CREATE TABLE per_card AS SELECT card, COUNT(*) AS n FROM pay WINDOW TUMBLING (SIZE 1 MINUTE) "
       "GROUP BY card EMIT CHANGES;")
S = Settings(bootstrap_servers="127.0.0.1:1", namespace="unit")


@dataclass
class FakeDeployment:
    query: Query
    sink: str
    running: bool = True
    error: BaseException | None = None
    stopped: list[bool] = field(default_factory=list)

    def stop(self) -> dict[str, int]:
        self.running = False
        self.stopped.append(True)
        return {}


def _cat() -> Catalog:
    cat = Catalog()
    cat.execute(DDL)
    return cat


def run(cat: Catalog, text: str) -> list[dict[str, Any]]:
    st = parse_admin(text)
    assert st is not None
    return run_admin(st, cat, S).to_dicts()


def test_show_streams_and_tables() -> None:
    cat = _cat()
    assert [(r["name"], r["topic"], r["origin"]) for r in run(cat, "SHOW STREAMS")] == [
        ("PAY", "payments", "declared"), ("PAY2", "payments2", "declared")]
    assert [(r["name"], r["windowed"], r["origin"]) for r in run(cat, "LIST TABLES;")] == [
        ("CARDS", False, "declared"), ("PER_CARD", True, "query")]


def test_describe_declared_and_created() -> None:
    cat = _cat()
    assert run(cat, "DESCRIBE cards") == [{"field": "ID", "type": "VARCHAR", "key": True},
                                          {"field": "LIM", "type": "DOUBLE", "key": False}]
    assert [(r["field"], r["type"], r["key"]) for r in run(cat, "DESCRIBE per_card")] == [
        ("CARD", "VARCHAR", True), ("WINDOWSTART", "BIGINT", False), ("WINDOWEND", "BIGINT", False),
        ("N", None, False)]
    with pytest.raises(QueryError, match="NOPE is not a declared stream or table"):
        run(cat, "DESCRIBE nope")


def test_show_queries_terminate_and_drop_rules() -> None:
    cat = _cat()
    q = cat.queries["PER_CARD"]
    d = FakeDeployment(q, "PER_CARD")
    qid = cat.start(q, d)
    assert qid == "CTAS_PER_CARD_1"
    assert [(r["query_id"], r["status"], r["sink_topic"]) for r in run(cat, "SHOW QUERIES")] == [
        (qid, "RUNNING", "PER_CARD")]
    with pytest.raises(QueryError, match="running queries read from or write to it: CTAS_PER_CARD_1") as info:
        run(cat, "DROP STREAM pay")
    assert "TERMINATE CTAS_PER_CARD_1" in (info.value.hint or "")
    with pytest.raises(QueryError, match="cannot drop PER_CARD"):
        run(cat, "DROP TABLE per_card")
    with pytest.raises(QueryError, match="PAY is a stream, not a table"):
        run(cat, "DROP TABLE pay")
    with pytest.raises(QueryError, match="no query CTAS_X_9"):
        run(cat, "TERMINATE CTAS_X_9")
    assert run(cat, f"TERMINATE {qid.lower()}") == [{"query_id": qid, "status": "TERMINATED"}]
    assert d.stopped == [True] and run(cat, "SHOW QUERIES") == []
    assert run(cat, "DROP STREAM pay")[0]["dropped"] is True
    assert "PAY" not in cat.sources
    assert run(cat, "DROP STREAM IF EXISTS pay")[0]["dropped"] is False
    with pytest.raises(QueryError, match="PAY is not a declared stream"):
        run(cat, "DROP STREAM pay")


@pytest.mark.parametrize("text, message", [
    ("SHOW TOPICS", "SHOW TOPICS is not supported"),
    ("DROP TYPE x", "DROP TYPE is not supported"),
    ("TERMINATE", "expected a query id"),
    ("DESCRIBE STREAMS", "DESCRIBE takes one stream or table name"),
])
def test_admin_refusals(text: str, message: str) -> None:
    with pytest.raises(QueryError, match=message) as info:
        parse_admin(text)
    assert info.value.hint


def test_insert_into_writes_the_target_topic_with_its_schema() -> None:
    cat = _cat()
    q = cat.compile("INSERT INTO pay SELECT card, amount * 2 AS amount, ts FROM pay2 WHERE amount > 1;")
    assert q.name == "INSERTQUERY_1" and q.pipeline.sink_topic() == "payments"
    assert "INSERTQUERY_1" not in cat.queries  # not a new stream of the session
    d = TestDriver(q.pipeline)
    assert d.send({"amount": 3, "ts": 5}, {"amount": 1, "ts": 6}, key="c1") == [{"AMOUNT": 6.0, "TS": 5}]
    assert d.results[-1].keys == [b"c1"]  # the record key goes along
    with pytest.raises(QueryError, match="the SELECT writes AMOUNT but PAY has AMOUNT, TS"):
        cat.compile("INSERT INTO pay SELECT card, amount FROM pay2 EMIT CHANGES")
    with pytest.raises(QueryError, match="CARDS is a table; INSERT INTO writes into streams"):
        cat.compile("INSERT INTO cards SELECT card AS id, amount AS lim FROM pay2")
    with pytest.raises(QueryError, match="cannot read from PAY"):
        cat.compile("INSERT INTO pay SELECT card, amount, ts FROM pay")
    assert parse_ksql("INSERT INTO pay SELECT * FROM pay2").select.emit == "CHANGES"  # type: ignore[union-attr]
