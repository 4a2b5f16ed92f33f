"""ksqlDB pull and push queries against a real broker: statement + timestamped records -> exact rows.

Pull (ksqlDB semantics): a CREATE TABLE AS SELECT, once running, answers ``SELECT ... WHERE
key = ...`` with the current row of that key (per window for a windowed table); a row that
fails HAVING is deleted; a query that is not a key lookup is refused. Push: ``SELECT ... EMIT
CHANGES LIMIT n`` emits the matching records committed after it started (or from the
beginning after ``SET 'auto.offset.reset'='earliest'``), ends after ``n`` rows, writes nothing.
"""

from __future__ import annotations

import threading
import time
import uuid

import orjson
import pytest

import streamml.query as q
from streamml.config import Settings
from streamml.errors import QueryError
from streamml.kafka import clients, ensure_topic
from streamml.kafka.admin import list_topics

T0 = 1_700_000_040_000
M = 60_000


def produce(settings: Settings, topic: str, records: list[tuple[str, int, float]]) -> None:
    p = clients.producer(settings)
    for card, ts, amount in records:
        p.produce(topic, orjson.dumps({"card": card, "amount": amount, "ts": ts}), card.encode(), partition=0)
    assert p.flush(30) == 0


def declare(settings: Settings) -> tuple[str, str]:
    topic = f"{settings.namespace}-payments"
    ensure_topic(settings, topic, 1)
    q.use(settings)
    name = "PAY_" + uuid.uuid4().hex[:8].upper()
    q.sql(f"CREATE STREAM {name} (card VARCHAR KEY, amount DOUBLE, ts BIGINT) "
          f"WITH (kafka_topic='{topic}', value_format='JSON', timestamp='ts');")
    return topic, name


def test_pull_queries_answer_from_the_deployed_tables_state(settings: Settings) -> None:
    topic, src = declare(settings)
    produce(settings, topic, [("a", T0, 2.0), ("b", T0 + 1, 1.0), ("a", T0 + 2, 3.0), ("c", T0 + 3, 1.0),
                              ("c", T0 + 4, 9.0)])
    name = "TOT_" + uuid.uuid4().hex[:6].upper()
    stmt = (f"CREATE TABLE {name} AS SELECT card, SUM(amount) AS total, COUNT(*) AS n FROM {src} "
            f"GROUP BY card HAVING SUM(amount) < 6 EMIT CHANGES;")
    q.sql(stmt)  # the preview registers the table in the session; its topic does not exist yet
    with pytest.raises(QueryError, match="not materialised") as info:
        q.sql(f"SELECT * FROM {name} WHERE card = 'a'")
    assert "deploy" in (info.value.hint or "")
    with q.deploy(stmt, max_batch=2) as d:
        d.wait(5, timeout=60)
    assert q.sql(f"SELECT * FROM {name} WHERE card = 'a'").to_dicts() == [{"CARD": "a", "TOTAL": 5.0, "N": 2}]
    assert q.sql(f"SELECT card, n FROM {name} WHERE card IN ('b', 'c')").to_dicts() == [{"CARD": "b", "N": 1}]
    with pytest.raises(QueryError, match="looks up keys"):
        q.sql(f"SELECT * FROM {name} WHERE total > 1")
    with pytest.raises(QueryError, match="is a stream: pull queries are on tables"):
        q.sql(f"SELECT * FROM {src} WHERE card = 'a'")


def test_windowed_pull_with_window_bounds(settings: Settings) -> None:
    topic, src = declare(settings)
    produce(settings, topic, [("a", T0 + 1_000, 1.0), ("a", T0 + 2_000, 4.0), ("a", T0 + M + 1_000, 2.0),
                              ("b", T0 + M + 2_000, 7.0)])
    name = "WIN_" + uuid.uuid4().hex[:6].upper()
    stmt = (f"CREATE TABLE {name} AS SELECT card, COUNT(*) AS n, MAX(amount) AS hi FROM {src} "
            f"WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 0 SECONDS) GROUP BY card EMIT CHANGES;")
    with q.deploy(stmt, max_batch=1) as d:
        d.wait(4, timeout=60)
    assert q.sql(f"SELECT * FROM {name} WHERE card = 'a'").to_dicts() == [
        {"CARD": "a", "WINDOWSTART": T0, "WINDOWEND": T0 + M, "N": 2, "HI": 4.0},
        {"CARD": "a", "WINDOWSTART": T0 + M, "WINDOWEND": T0 + 2 * M, "N": 1, "HI": 2.0}]
    got = q.sql(f"SELECT WINDOWSTART, n FROM {name} WHERE card = 'a' AND WINDOWSTART >= {T0 + M} "
                f"AND WINDOWSTART < {T0 + 2 * M}")
    assert got.to_dicts() == [{"WINDOWSTART": T0 + M, "N": 1}]


def test_push_query_follows_new_records_and_writes_nothing(settings: Settings) -> None:
    topic, src = declare(settings)
    produce(settings, topic, [("old", T0, 99.0)])  # before the query started: not seen
    before = set(list_topics(settings))
    live = q.sql(f"SELECT card, amount FROM {src} WHERE amount > 5 EMIT CHANGES LIMIT 2")
    assert isinstance(live, q.Tail)

    def later() -> None:
        time.sleep(0.5)
        produce(settings, topic, [("a", T0 + 1, 1.0), ("b", T0 + 2, 6.0), ("c", T0 + 3, 2.0), ("d", T0 + 4, 50.0),
                                  ("e", T0 + 5, 70.0)])

    t = threading.Thread(target=later)
    t.start()
    live.timeout = 30
    rows = list(live)
    t.join()
    assert rows == [{"CARD": "b", "AMOUNT": 6.0}, {"CARD": "d", "AMOUNT": 50.0}]
    assert set(list_topics(settings)) == before


def test_push_aggregation_from_the_beginning(settings: Settings) -> None:
    topic, src = declare(settings)
    produce(settings, topic, [("a", T0, 1.0), ("b", T0 + 1, 2.0), ("a", T0 + 2, 3.0)])
    live = q.sql(f"SET 'auto.offset.reset' = 'earliest'; "
                 f"SELECT card, COUNT(*) AS n, SUM(amount) AS s FROM {src} GROUP BY card EMIT CHANGES LIMIT 3;")
    live.timeout = 30
    frames = list(live.frames())
    assert frames[-1].drop("_tombstone").to_dicts() == [
        {"CARD": "a", "N": 1, "S": 1.0}, {"CARD": "b", "N": 1, "S": 2.0}, {"CARD": "a", "N": 2, "S": 4.0}]
    q.sql("SET 'auto.offset.reset' = 'latest'")


def test_collection_aggregates_deployed_and_pulled(settings: Settings) -> None:
    """TOPK / COLLECT_LIST / LATEST_BY_OFFSET / EARLIEST_BY_OFFSET arrays and values survive the
    output topic (JSON) and a pull query reads them back; the preview writes the same rows."""
    topic, src = declare(settings)
    produce(settings, topic, [("a", T0, 4.0), ("a", T0 + 1, 9.0), ("b", T0 + 2, 1.0), ("a", T0 + 3, 6.0)])
    name = "COL_" + uuid.uuid4().hex[:6].upper()
    stmt = (f"CREATE TABLE {name} AS SELECT card, TOPK(amount, 2) AS top2, COLLECT_LIST(amount) AS amounts, "
            f"LATEST_BY_OFFSET(amount) AS last, EARLIEST_BY_OFFSET(amount) AS first, "
            f"STDDEV_SAMP(amount) AS sd FROM {src} GROUP BY card EMIT CHANGES;")
    preview = q.sql(stmt)
    assert preview.height == 4
    with q.deploy(stmt, max_batch=3) as d:
        d.wait(4, timeout=60)
    got = q.sql(f"SELECT card, top2, amounts, last, first FROM {name} WHERE card = 'a'").to_dicts()
    assert got == [{"CARD": "a", "TOP2": [9.0, 6.0], "AMOUNTS": [4.0, 9.0, 6.0], "LAST": 6.0, "FIRST": 4.0}]
    sd = q.sql(f"SELECT sd FROM {name} WHERE card IN ('a', 'b')")["SD"].to_list()
    assert sd[0] == pytest.approx(2.5166114784235836) and sd[1] is None


def test_push_query_on_a_deployed_table_follows_its_changes(settings: Settings) -> None:
    """``SELECT * FROM table EMIT CHANGES`` on a running CREATE TABLE AS: one row per change of the
    table (its topic), deletions (HAVING) as tombstone rows."""
    topic, src = declare(settings)
    produce(settings, topic, [("a", T0, 2.0), ("b", T0 + 1, 1.0), ("a", T0 + 2, 9.0)])
    name = "CHG_" + uuid.uuid4().hex[:6].upper()
    stmt = (f"CREATE TABLE {name} AS SELECT card, SUM(amount) AS total FROM {src} GROUP BY card "
            f"HAVING SUM(amount) < 5 EMIT CHANGES;")
    with q.deploy(stmt, max_batch=1) as d:
        d.wait(3, timeout=60)
    live = q.sql(f"SET 'auto.offset.reset' = 'earliest'; SELECT * FROM {name} EMIT CHANGES LIMIT 3;")
    live.timeout = 30
    assert live.collect().to_dicts() == [{"CARD": "a", "TOTAL": 2.0, "_tombstone": False},
                                         {"CARD": "b", "TOTAL": 1.0, "_tombstone": False},
                                         {"CARD": "a", "TOTAL": None, "_tombstone": True}]
    q.sql("SET 'auto.offset.reset' = 'latest'")
