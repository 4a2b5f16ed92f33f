"""ksqlDB session windows against a real broker: the preview's rows are the deployed rows.

Expected rows follow ksqlDB's session-window semantics: a record within the inactivity gap of
a session extends it (EMIT CHANGES: a tombstone on the old session's key, then the new row);
a record within the gap of two sessions merges them (a tombstone for each, then the merged
row); a session closes once stream time passes end + gap + grace, after which a record that
touches no open session and is older than gap + grace is late (dropped, counted); EMIT FINAL
writes one row per session when it closes. WINDOWSTART/WINDOWEND are the session's first and
last event times; the key is the KAFKA key, then the start and the end, 8 bytes big-endian.
"""

from __future__ import annotations

import struct
import uuid
from typing import Any

import orjson
import polars as pl
from helpers import drain

import streamml.query as q
from streamml.config import Settings
from streamml.kafka import clients, ensure_topic
from streamml.query.ksql_compile import rows
from streamml.query.ksql_run import compile_query

T0 = 1_700_000_040_000
S = 1000
# gap 30 s, grace 10 s
RECORDS = [("a", 0, 10.0), ("b", 5 * S, 1.0), ("a", 20 * S, 20.0),   # a extends [0, 0] to [0, 20 s]
           ("a", 80 * S, 5.0),    # stream time 80 s: a's [0, 20 s] and b's [5 s] close; a opens [80 s]
           ("a", 55 * S, 7.0),    # out of order, within the gap of [80 s]: extends it backwards
           ("b", 30 * S, 3.0),    # 30 s + 30 s + 10 s < 80 s, and b has no open session: late
           ("a", 120 * S, 1.0),   # a new session: 120 s - 80 s is more than the gap
           ("a", 100 * S, 2.0),   # within the gap of [55 s, 80 s] and of [120 s]: merges them
           ("c", 300 * S, 0.0)]   # stream time 300 s closes a's [55 s, 120 s]


def produce(settings: Settings, topic: str) -> None:
    p = clients.producer(settings)
    for card, ts, amount in RECORDS:
        p.produce(topic, orjson.dumps({"card": card, "amount": amount, "ts": T0 + ts}), card.encode(), partition=0)
    assert p.flush(30) == 0


def declare(settings: Settings) -> str:
    topic = f"{settings.namespace}-payments"
    ensure_topic(settings, topic, 1)
    q.use(settings)
    name = "PAY_" + uuid.uuid4().hex[:8].upper()
    q.sql(f"CREATE STREAM {name} (card VARCHAR KEY, amount DOUBLE, ts BIGINT) "
          f"WITH (kafka_topic='{topic}', value_format='JSON', timestamp='ts');")
    produce(settings, topic)
    return name


def deployed(settings: Settings, stmt: str, n: int) -> tuple[pl.DataFrame, list[dict[str, Any]], dict[str, Any]]:
    query = compile_query(stmt, settings)
    with q.deploy(stmt, max_batch=3) as d:
        d.wait(n, timeout=60)
    recs = drain(settings, query.sink, expect=n)
    return rows(query, [(r["key"], r["value"]) for r in recs]), recs, d.stats


def key(card: str, start: int, end: int) -> bytes:
    return card.encode() + struct.pack(">qq", T0 + start, T0 + end)


def test_session_emit_changes_tombstones_merges_and_late(settings: Settings) -> None:
    src = declare(settings)
    name = "SESS_" + uuid.uuid4().hex[:6].upper()
    stmt = (f"CREATE TABLE {name} AS SELECT card, COUNT(*) AS n, SUM(amount) AS total FROM {src} "
            f"WINDOW SESSION (30 SECONDS, GRACE PERIOD 10 SECONDS) GROUP BY card EMIT CHANGES;")
    expected = [  # (card, start, end, n, total) or (card, start, end) for a tombstone
        ("a", 0, 0, 1, 10.0), ("b", 5 * S, 5 * S, 1, 1.0),
        ("a", 0, 0), ("a", 0, 20 * S, 2, 30.0),
        ("a", 80 * S, 80 * S, 1, 5.0),
        ("a", 80 * S, 80 * S), ("a", 55 * S, 80 * S, 2, 12.0),
        ("a", 120 * S, 120 * S, 1, 1.0),
        ("a", 55 * S, 80 * S), ("a", 120 * S, 120 * S), ("a", 55 * S, 120 * S, 4, 15.0),
        ("c", 300 * S, 300 * S, 1, 0.0)]

    def flat(df: pl.DataFrame) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        for r in df.to_dicts():
            bounds = (r["CARD"], r["WINDOWSTART"] - T0, r["WINDOWEND"] - T0)
            out.append(bounds if r["_tombstone"] else (*bounds, r["N"], r["TOTAL"]))
        return out

    preview = q.sql(stmt)
    assert flat(preview) == expected
    out, recs, stats = deployed(settings, stmt, len(expected))
    assert out.to_dicts() == preview.to_dicts()
    assert stats["late"] == 1
    assert [r["key"] for r in recs[2:4]] == [key("a", 0, 0), key("a", 0, 20 * S)]
    assert recs[2]["value"] is None and orjson.loads(recs[3]["value"]) == {"N": 2, "TOTAL": 30.0}


def test_session_emit_final_one_row_per_session(settings: Settings) -> None:
    src = declare(settings)
    name = "SESSF_" + uuid.uuid4().hex[:6].upper()
    stmt = (f"CREATE TABLE {name} AS SELECT card, COUNT(*) AS n, MAX(amount) AS hi, WINDOWEND AS last_seen "
            f"FROM {src} WINDOW SESSION (30 SECONDS, GRACE PERIOD 10 SECONDS) GROUP BY card EMIT FINAL;")
    expected = [
        {"CARD": "a", "WINDOWSTART": T0, "WINDOWEND": T0 + 20 * S, "N": 2, "HI": 20.0, "LAST_SEEN": T0 + 20 * S,
         "_tombstone": False},
        {"CARD": "b", "WINDOWSTART": T0 + 5 * S, "WINDOWEND": T0 + 5 * S, "N": 1, "HI": 1.0,
         "LAST_SEEN": T0 + 5 * S, "_tombstone": False},
        {"CARD": "a", "WINDOWSTART": T0 + 55 * S, "WINDOWEND": T0 + 120 * S, "N": 4, "HI": 7.0,
         "LAST_SEEN": T0 + 120 * S, "_tombstone": False},
    ]
    preview = q.sql(stmt)
    assert preview.to_dicts() == expected
    out, recs, stats = deployed(settings, stmt, len(expected))
    assert out.to_dicts() == expected
    assert stats["late"] == 1
    assert [r["key"] for r in recs] == [key("a", 0, 20 * S), key("b", 5 * S, 5 * S), key("a", 55 * S, 120 * S)]
