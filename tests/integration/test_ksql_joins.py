"""ksqlDB stream-table joins against a real broker: INNER drops unmatched records, LEFT keeps them
with null table columns; the table is the latest value per key (tombstones delete)."""

from __future__ import annotations

import uuid

import orjson
import pytest
from helpers import drain

import streamml.query as q
from streamml.config import Settings
from streamml.kafka import clients, ensure_topic
from streamml.query.ksql_compile import rows
from streamml.query.ksql_run import compile_query


def _setup(settings: Settings) -> tuple[str, str]:
    pay, cards = f"{settings.namespace}-pay", f"{settings.namespace}-cards"
    ensure_topic(settings, pay, 1)
    ensure_topic(settings, cards, 1, compacted=True)
    p = clients.producer(settings)
    for k, v in [("c1", {"lim": 100.0, "owner": "ann"}), ("c2", {"lim": 50.0, "owner": "bob"}),
                 ("c1", {"lim": 500.0, "owner": "ann"}), ("c3", {"lim": 1.0, "owner": "cy"}), ("c3", None)]:
        p.produce(cards, None if v is None else orjson.dumps(v), k.encode())
    for i, (card, amount) in enumerate([("c1", 10.0), ("c2", 70.0), ("c3", 5.0), ("c9", 1.0)]):
        p.produce(pay, orjson.dumps({"card": card, "amount": amount, "ts": 1_700_000_000_000 + i}), card.encode())
    assert p.flush(30) == 0
    q.use(settings)
    s, t = "P_" + uuid.uuid4().hex[:6].upper(), "C_" + uuid.uuid4().hex[:6].upper()
    q.sql(f"CREATE STREAM {s} (card VARCHAR KEY, amount DOUBLE, ts BIGINT) WITH (kafka_topic='{pay}', "
          f"value_format='JSON', timestamp='ts'); "
          f"CREATE TABLE {t} (id VARCHAR PRIMARY KEY, lim DOUBLE, owner VARCHAR) "
          f"WITH (kafka_topic='{cards}', value_format='JSON');")
    return s, t


@pytest.mark.parametrize("how, expected", [
    ("JOIN", [("c1", 10.0, 500.0, "ann", False), ("c2", 70.0, 50.0, "bob", True)]),
    ("LEFT JOIN", [("c1", 10.0, 500.0, "ann", False), ("c2", 70.0, 50.0, "bob", True),
                   ("c3", 5.0, None, None, None), ("c9", 1.0, None, None, None)]),
])
def test_stream_table_join(settings: Settings, how: str, expected: list[tuple]) -> None:
    s, t = _setup(settings)
    name = "ENR_" + uuid.uuid4().hex[:6].upper()
    stmt = (f"CREATE STREAM {name} AS SELECT p.card, p.amount, c.lim, c.owner, p.amount > c.lim * 0.5 AS big "
            f"FROM {s} p {how} {t} c ON p.card = c.id EMIT CHANGES;")
    preview = q.sql(stmt)
    got = [(r["CARD"], r["AMOUNT"], r["LIM"], r["OWNER"], r["BIG"]) for r in preview.to_dicts()]
    assert got == expected
    query = compile_query(stmt, settings)
    with q.deploy(stmt, max_batch=2) as d:
        d.wait(len(expected), timeout=60)
    recs = drain(settings, query.sink, expect=len(expected))
    assert rows(query, [(r["key"], r["value"]) for r in recs]).to_dicts() == preview.to_dicts()
    assert [r["key"] for r in recs] == [e[0].encode() for e in expected]
