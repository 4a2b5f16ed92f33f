"""ksqlDB windowed aggregations against a real broker: statement + timestamped records -> exact rows.

Expected rows follow ksqlDB's documented semantics: a window [start, start + size) closes when
stream time (the largest event time seen in the partition) reaches start + size + grace;
EMIT FINAL writes one row per window once it closes, EMIT CHANGES one row per record that
updates a window; records whose window closed are dropped and counted; the output topic is the
query's name upper-cased; the key is the GROUP BY value followed by the 8-byte window start.
The preview (``streamml.sql``) and the deployment write the same rows.
"""

from __future__ import annotations

import struct
import uuid

import orjson
import polars as pl
import pytest
from helpers import drain

import streamml.query as q
from streamml.config import Settings
from streamml.errors import QueryError
from streamml.kafka import clients, ensure_topic
from streamml.query.ksql_compile import rows
from streamml.query.ksql_run import compile_query

T0 = 1_700_000_040_000  # a minute boundary: 1_700_000_040_000 % 60_000 == 0
M = 60_000


def produce(settings: Settings, topic: str, records: list[tuple[str, int, float]]) -> None:
    """(card, event time, amount) records, keyed by card, in this order on one partition."""
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


def deployed(settings: Settings, stmt: str, n: int) -> pl.DataFrame:
    query = compile_query(stmt, settings)
    with q.deploy(stmt, max_batch=3) as d:
        d.wait(n, timeout=60)
    assert d.sink == query.sink
    recs = drain(settings, query.sink, expect=n)
    return rows(query, [(r["key"], r["value"]) for r in recs]), recs, d.stats


# out of order within grace (card a at +20s after +50s), late beyond grace (a at +10s after
# stream time reached 1m10s), and the record that advances stream time past the windows.
RECORDS = [("a", T0 + 5_000, 10.0), ("b", T0 + 7_000, 1.0), ("a", T0 + 50_000, 20.0),
           ("a", T0 + 20_000, 5.0),             # out of order, same window: counted
           ("a", T0 + M + 5_000, 7.0),           # window 2; window 1 still within grace (10 s)
           ("b", T0 + M + 12_000, 2.0),          # stream time 1m12s: window 1 closes
           ("a", T0 + 10_000, 100.0),            # late: window 1 closed -> dropped, counted
           ("a", T0 + 3 * M, 0.0)]               # closes window 2


def test_tumbling_emit_final_with_grace_out_of_order_and_late(settings: Settings) -> None:
    topic, src = declare(settings)
    produce(settings, topic, RECORDS)
    name = "FINAL_" + uuid.uuid4().hex[:6].upper()
    stmt = (f"CREATE TABLE {name} AS SELECT card, COUNT(*) AS n, SUM(amount) AS total, MAX(amount) AS hi, "
            f"AVG(amount) AS avg_amount, WINDOWEND AS we FROM {src} "
            f"WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 10 SECONDS) GROUP BY card EMIT FINAL;")
    expected = [
        {"CARD": "a", "WINDOWSTART": T0, "WINDOWEND": T0 + M, "N": 3, "TOTAL": 35.0, "HI": 20.0,
         "AVG_AMOUNT": 35.0 / 3, "WE": T0 + M, "_tombstone": False},
        {"CARD": "b", "WINDOWSTART": T0, "WINDOWEND": T0 + M, "N": 1, "TOTAL": 1.0, "HI": 1.0,
         "AVG_AMOUNT": 1.0, "WE": T0 + M, "_tombstone": False},
        {"CARD": "a", "WINDOWSTART": T0 + M, "WINDOWEND": T0 + 2 * M, "N": 1, "TOTAL": 7.0, "HI": 7.0,
         "AVG_AMOUNT": 7.0, "WE": T0 + 2 * M, "_tombstone": False},
        {"CARD": "b", "WINDOWSTART": T0 + M, "WINDOWEND": T0 + 2 * M, "N": 1, "TOTAL": 2.0, "HI": 2.0,
         "AVG_AMOUNT": 2.0, "WE": T0 + 2 * M, "_tombstone": False},
    ]
    preview = q.sql(stmt)
    assert preview.to_dicts() == expected
    out, recs, stats = deployed(settings, stmt, len(expected))
    assert out.to_dicts() == expected
    assert stats["late"] == 1
    assert recs[0]["key"] == b"a" + struct.pack(">q", T0)  # KAFKA key + 8-byte window start
    assert orjson.loads(recs[0]["value"]) == {"N": 3, "TOTAL": 35.0, "HI": 20.0, "AVG_AMOUNT": 35.0 / 3,
                                              "WE": T0 + M}


def test_tumbling_emit_changes_without_grace_one_row_per_record(settings: Settings) -> None:
    topic, src = declare(settings)
    produce(settings, topic, RECORDS)
    name = "CHG_" + uuid.uuid4().hex[:6].upper()
    stmt = (f"CREATE TABLE {name} WITH (kafka_topic='{settings.namespace}-chg') AS SELECT card, COUNT(*) AS n, "
            f"MIN(amount) AS lo FROM {src} WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 0 SECONDS) "
            f"GROUP BY card EMIT CHANGES;")
    # no grace: after +1m5s, window 1 is closed, so (a, +10s) is late; so is nothing else
    w1, w2, w4 = T0, T0 + M, T0 + 3 * M
    expected = [("a", w1, 1, 10.0), ("b", w1, 1, 1.0), ("a", w1, 2, 10.0), ("a", w1, 3, 5.0),
                ("a", w2, 1, 7.0), ("b", w2, 1, 2.0), ("a", w4, 1, 0.0)]
    preview = q.sql(stmt)
    got = [(r["CARD"], r["WINDOWSTART"], r["N"], r["LO"]) for r in preview.to_dicts()]
    assert got == expected
    out, _, stats = deployed(settings, stmt, len(expected))
    assert compile_query(stmt, settings).sink == f"{settings.namespace}-chg"
    assert out.to_dicts() == preview.to_dicts()
    assert stats["late"] == 1


def test_hopping_with_having_writes_tombstones(settings: Settings) -> None:
    topic, src = declare(settings)
    recs = [("a", T0 + 5_000, 1.0), ("a", T0 + 15_000, 2.0), ("a", T0 + 25_000, 3.0), ("a", T0 + 95_000, 0.0)]
    produce(settings, topic, recs)
    name = "HOP_" + uuid.uuid4().hex[:6].upper()
    stmt = (f"CREATE TABLE {name} AS SELECT card, COUNT(*) AS n FROM {src} "
            f"WINDOW HOPPING (SIZE 20 SECONDS, ADVANCE BY 10 SECONDS, GRACE PERIOD 0 SECONDS) "
            f"GROUP BY card HAVING COUNT(*) > 1 EMIT FINAL;")
    # windows of 20 s every 10 s; stream time +95s closes every window up to [+70s, +90s)
    preview = q.sql(stmt)
    got = [(r["WINDOWSTART"] - T0, r.get("N"), r["_tombstone"]) for r in preview.to_dicts()]
    assert got == [(-10_000, None, True), (0, 2, False), (10_000, 2, False), (20_000, None, True)]
    out, _, _ = deployed(settings, stmt, 4)
    assert out.to_dicts() == preview.to_dicts()


def test_statements_outside_the_subset_are_refused(settings: Settings) -> None:
    _, src = declare(settings)
    cases = {
        f"CREATE TABLE x AS SELECT card, COUNT(*) FROM {src} WINDOW SESSION (SIZE 5 MINUTES) GROUP BY card EMIT FINAL":
            "a SESSION window takes its inactivity gap without SIZE",
        f"CREATE TABLE x AS SELECT card, COUNT(*) FROM {src} GROUP BY card EMIT FINAL":
            "EMIT FINAL is only supported for windowed aggregations",
        f"CREATE TABLE x AS SELECT card, amount, COUNT(*) FROM {src} GROUP BY card EMIT CHANGES":
            "not part of GROUP BY: AMOUNT",
        f"CREATE TABLE x AS SELECT card, COLLECT_SET(amount) FROM {src} GROUP BY card EMIT CHANGES":
            "aggregate COLLECT_SET is not supported yet",
        "CREATE TABLE x AS SELECT card, COUNT(*) FROM nowhere GROUP BY card EMIT CHANGES":
            "NOWHERE is not a declared stream or table",
        f"CREATE STREAM x AS SELECT card FROM {src} PARTITION BY amount EMIT CHANGES":
            "must include the partitioning expression AMOUNT",
    }
    for stmt, message in cases.items():
        with pytest.raises(QueryError, match=message):
            q.sql(stmt)


def test_stream_as_select_filters_projects_and_keeps_the_key(settings: Settings) -> None:
    topic, src = declare(settings)
    produce(settings, topic, RECORDS[:4])
    name = "BIG_" + uuid.uuid4().hex[:6].upper()
    stmt = (f"CREATE STREAM {name} AS SELECT card, amount * 100 AS cents, ts FROM {src} "
            f"WHERE amount >= 10 EMIT CHANGES;")
    expected = [{"CARD": "a", "CENTS": 1000.0, "TS": T0 + 5_000, "_tombstone": False},
                {"CARD": "a", "CENTS": 2000.0, "TS": T0 + 50_000, "_tombstone": False}]
    assert q.sql(stmt).to_dicts() == expected
    out, recs, _ = deployed(settings, stmt, 2)
    assert out.to_dicts() == expected
    assert [r["key"] for r in recs] == [b"a", b"a"]  # the record key, unchanged
    assert orjson.loads(recs[0]["value"]) == {"CENTS": 1000.0, "TS": T0 + 5_000}  # key column not in the value
