"""A ``CREATE STREAM ... AS SELECT`` is a source for later statements, as in ksqlDB (no broker):
its columns get the projection's types, its event time is the input's timestamp column when the
SELECT carries it unchanged, and windowing a derived stream that lost its event time is refused."""

from __future__ import annotations

import pytest

from streamml.errors import QueryError
from streamml.query.ksql_compile import Catalog, decode_key
from streamml.stream import TestDriver

DDL = ("CREATE STREAM pay (card VARCHAR KEY, amount DOUBLE, ts BIGINT, country VARCHAR) "
       "WITH (kafka_topic='payments', value_format='JSON', timestamp='ts');"
       "CREATE TABLE cards (id VARCHAR PRIMARY KEY, home VARCHAR, typical DOUBLE) WITH (kafka_topic='cards');")
T0 = 1_700_000_040_000
WINDOWED = ("CREATE TABLE w AS SELECT card, COUNT(*) AS n, SUM(a2) AS total, MAX(a2) AS hi FROM big "
            "WINDOW HOPPING (SIZE 20 SECONDS, ADVANCE BY 10 SECONDS, GRACE PERIOD 0 SECONDS) GROUP BY card EMIT FINAL")


def test_a_join_query_registers_its_output_with_typed_columns() -> None:
    cat = Catalog()
    cat.execute(DDL)
    q = cat.compile("CREATE STREAM enr WITH (kafka_topic='enriched') AS SELECT p.card, p.ts, p.amount / c.typical "
                    "AS rel, CASE WHEN p.country <> c.home THEN 1 ELSE 0 END AS abroad, c.home FROM pay p "
                    "JOIN cards c ON p.card = c.id EMIT CHANGES")
    src = cat.source("ENR")
    assert src is q.derived and src.topic == "enriched" and src.kind == "STREAM"
    assert [(c.name, c.type, c.key) for c in src.columns] == [
        ("CARD", "VARCHAR", True), ("TS", "BIGINT", False), ("REL", "DOUBLE", False), ("ABROAD", "INT", False),
        ("HOME", "VARCHAR", False)]
    assert src.timestamp == "TS"
    agg = cat.compile("CREATE TABLE per_card AS SELECT card, COUNT(*) AS n, MAX(rel) AS hi, SUM(abroad) AS away "
                      "FROM enr WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY card EMIT CHANGES")
    assert agg.pipeline.source_topic() == "enriched"
    assert "time=TS" in agg.pipeline.describe()


def test_the_chained_queries_compute_what_one_would() -> None:
    """Records through ``big`` then the window over it: the rows of the window over ``pay`` itself."""
    cat = Catalog()
    cat.execute(DDL)
    first = cat.compile("CREATE STREAM big AS SELECT card, amount * 2 AS a2, ts FROM pay WHERE amount > 1 EMIT CHANGES")
    second = cat.compile(WINDOWED)
    direct = cat.compile("CREATE TABLE w2 AS SELECT card, COUNT(*) AS n, SUM(amount * 2) AS total, "
                         "MAX(amount * 2) AS hi FROM pay WINDOW HOPPING (SIZE 20 SECONDS, ADVANCE BY 10 SECONDS, "
                         "GRACE PERIOD 0 SECONDS) WHERE amount > 1 GROUP BY card EMIT FINAL")
    recs = [({"amount": a, "ts": T0 + t, "country": "FR"}, k) for a, t, k in
            [(2, 0, "c1"), (0.5, 3_000, "c1"), (4, 12_000, "c2"), (3, 15_000, "c1"), (1, 31_000, "c1"),
             (6, 33_000, "c2"), (5, 61_000, "c1")]]
    d1, d2, dd = TestDriver(first.pipeline), TestDriver(second.pipeline), TestDriver(direct.pipeline)
    chained, straight = [], []
    for value, key in recs:
        for out in d1.send(value, key=key):
            assert d1.results[-1].keys == [key.encode()]  # the record key is kept: CARD is its KEY column
            if d2.send(out, key=key):
                chained += [decode_key(k, "VARCHAR", True) for k in d2.results[-1].keys]
        if dd.send(value, key=key):
            straight += [decode_key(k, "VARCHAR", True) for k in dd.results[-1].keys]
    assert d2.outputs == dd.outputs and len(d2.outputs) >= 4
    assert chained == straight


@pytest.mark.parametrize("select", ["card, amount AS a2", "card, amount AS a2, ts + 0 AS ts",
                                    "card, amount AS a2, ts AS t2"])
def test_windowing_a_derived_stream_without_its_event_time_is_refused(select: str) -> None:
    cat = Catalog()
    cat.execute(DDL)
    cat.compile(f"CREATE STREAM big AS SELECT {select} FROM pay EMIT CHANGES")
    assert cat.source("BIG").timestamp is None
    with pytest.raises(QueryError, match="BIG does not carry an event time"):
        cat.compile(WINDOWED)
    # an unwindowed aggregation does not need one
    cat.compile("CREATE TABLE t AS SELECT card, COUNT(*) AS n FROM big GROUP BY card EMIT CHANGES")


def test_tables_and_inserts_do_not_register_streams() -> None:
    cat = Catalog()
    cat.execute(DDL)
    cat.compile("CREATE TABLE t AS SELECT card, COUNT(*) AS n FROM pay GROUP BY card EMIT CHANGES")
    cat.execute("CREATE STREAM s (card VARCHAR KEY, amount DOUBLE) WITH (kafka_topic='s');"
                "INSERT INTO s SELECT card, amount FROM pay EMIT CHANGES;")
    assert "T" not in cat.sources and not any(n.startswith("INSERTQUERY") for n in cat.sources)
    with pytest.raises(QueryError, match="T is not a declared stream or table"):
        cat.compile("CREATE STREAM x AS SELECT * FROM t EMIT CHANGES")
