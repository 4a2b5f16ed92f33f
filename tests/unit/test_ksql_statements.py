"""The ksqlDB dialect without a broker: parsing, checks, and the compiled pipeline on the TestDriver."""

from __future__ import annotations

import struct

import pytest

from streamml.errors import QueryError
from streamml.query.ksql import DEFAULT_GRACE_MS, CreateAs, CreateSource, parse_ksql
from streamml.query.ksql_compile import Catalog, decode_key
from streamml.stream import TestDriver

DDL = ("CREATE STREAM pay (card VARCHAR KEY, amount DOUBLE, ts BIGINT, country VARCHAR) "
       "WITH (kafka_topic='payments', value_format='JSON', timestamp='ts');")
T0 = 1_700_000_040_000


def test_declarations_parse_with_ksqldb_names() -> None:
    st = parse_ksql(DDL)
    assert isinstance(st, CreateSource)
    assert st.name == "PAY" and [c.name for c in st.columns] == ["CARD", "AMOUNT", "TS", "COUNTRY"]
    t = parse_ksql("CREATE TABLE cards (`Id` VARCHAR PRIMARY KEY, lim DOUBLE) WITH (kafka_topic='cards')")
    assert isinstance(t, CreateSource) and t.columns[0].name == "Id" and t.columns[0].key


def test_window_clauses_and_default_grace() -> None:
    st = parse_ksql("CREATE TABLE x AS SELECT card, COUNT(*) FROM pay WINDOW HOPPING (SIZE 1 MINUTE, "
                    "ADVANCE BY 10 SECONDS) GROUP BY card EMIT CHANGES")
    assert isinstance(st, CreateAs) and st.select.window is not None
    assert (st.select.window.size, st.select.window.advance, st.select.window.grace) == (60_000, 10_000,
                                                                                       DEFAULT_GRACE_MS)


@pytest.mark.parametrize("stmt, message", [
    ("CREATE STREAM s (a INT PRIMARY KEY) WITH (kafka_topic='t')", "a stream has KEY columns"),
    ("CREATE TABLE t (a INT) WITH (kafka_topic='t')", "needs a PRIMARY KEY"),
    ("CREATE TABLE x AS SELECT a, COUNT(*) FROM s WINDOW HOPPING (SIZE 1 MINUTE, ADVANCE BY 7 SECONDS) "
     "GROUP BY a EMIT FINAL", "must divide SIZE"),
    ("CREATE TABLE x AS SELECT a, COUNT(*) FROM s WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY a", "ends with EMIT"),
    ("CREATE STREAM x AS SELECT a FROM s RIGHT JOIN t WITHIN 1 HOUR ON s.a = t.a EMIT CHANGES", "RIGHT joins"),
    ("CREATE STREAM x AS SELECT a FROM s JOIN t WITHIN (BEFORE 1 HOUR) ON s.a = t.a EMIT CHANGES", "expected ,"),
    ("CREATE STREAM x AS SELECT a, COUNT(*) FROM s GROUP BY a EMIT CHANGES", "an aggregation is a table"),
    ("PRINT 'payments' FROM BEGINNING", "PRINT statements are not supported yet"),
    ("INSERT INTO x VALUES (1, 2)", "INSERT INTO ... VALUES is not supported yet"),
    ("CREATE TABLE x AS SELECT a FROM s WINDOW TUMBLING (SIZE 1 FORTNIGHT) GROUP BY a EMIT FINAL",
     "expected a time unit"),
])
def test_refusals_name_what_and_where(stmt: str, message: str) -> None:
    with pytest.raises(QueryError, match=message) as info:
        parse_ksql(stmt)
    assert info.value.hint or "position" in info.value.message or "end of the statement" in info.value.message


def _driver(stmt: str) -> tuple[TestDriver, Catalog]:
    cat = Catalog()
    cat.execute(DDL)
    return TestDriver(cat.compile(stmt).pipeline), cat


def test_compiled_windowed_table_on_the_test_driver() -> None:
    d, _ = _driver("CREATE TABLE per_card AS SELECT card, COUNT(*) AS n, SUM(amount) AS total FROM pay "
                   "WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 0 SECONDS) WHERE country = 'FR' "
                   "GROUP BY card EMIT FINAL")
    assert d.send({"amount": 2, "ts": T0, "Country": "FR"}, {"amount": 3, "ts": T0 + 1, "country": "FR"},
                  {"amount": 9, "ts": T0 + 2, "country": "DE"}, key="c1") == []
    assert d.send({"amount": 1, "ts": T0 + 60_000, "country": "FR"}, key="c1") == [{"N": 2, "TOTAL": 5.0}]
    res = d.results[-1]
    assert decode_key(res.keys[0], "VARCHAR", True) == ("c1", T0)
    assert res.keys[0] == b"c1" + struct.pack(">q", T0)


def test_select_checks_against_the_catalog() -> None:
    cat = Catalog()
    cat.execute(DDL)
    with pytest.raises(QueryError, match="not part of GROUP BY: COUNTRY"):
        cat.compile("CREATE TABLE x AS SELECT card, country, COUNT(*) FROM pay GROUP BY card EMIT CHANGES")
    with pytest.raises(QueryError, match="must be in the SELECT list"):
        cat.compile("CREATE TABLE x AS SELECT COUNT(*) AS n FROM pay GROUP BY card EMIT CHANGES")
    with pytest.raises(QueryError, match="value_format AVRO, which needs a schema registry"):
        cat.execute("CREATE STREAM s2 (a INT) WITH (kafka_topic='t', value_format='AVRO')")
    with pytest.raises(QueryError, match="a stream-stream join needs WITHIN"):
        cat.compile("CREATE STREAM j AS SELECT * FROM pay p JOIN pay q ON p.card = q.card EMIT CHANGES")


@pytest.mark.parametrize("batch", [1, 3, 7, 100])
def test_emit_changes_rows_do_not_depend_on_batch_boundaries(batch: int) -> None:
    """One row per record that updates a window, the same whatever the micro-batches are."""
    import random

    rnd = random.Random(7)
    recs = [{"amount": rnd.randint(1, 9), "ts": T0 + i * 900 + rnd.randint(-15000, 0), "country": "FR"}
            for i in range(150)]
    stmt = ("CREATE TABLE c AS SELECT card, COUNT(*) AS n, SUM(amount) AS s, MAX(amount) AS hi FROM pay "
            "WINDOW HOPPING (SIZE 10 SECONDS, ADVANCE BY 5 SECONDS, GRACE PERIOD 2 SECONDS) "
            "GROUP BY card EMIT CHANGES")
    one, _ = _driver(stmt)
    for r in recs:
        one.send(r, key="k")
    many, _ = _driver(stmt)
    many.send_many(recs, batch_size=batch, key="k")
    assert many.outputs == one.outputs and len(one.outputs) > 150
    assert one.late == many.late > 0
