"""ksqlDB value formats (DELIMITED, AVRO) and PARTITION BY: parsing, declaration, type mapping,
decoding with dead letters, and refusals, without a broker (the test driver runs the engine)."""

from __future__ import annotations

import polars as pl
import pytest

from streamml import headers as H
from streamml.config import Settings
from streamml.errors import QueryError
from streamml.query.ksql import CreateSource, parse_ksql
from streamml.query.ksql_compile import Catalog, decode_key, rows
from streamml.query.ksql_formats import avro_columns
from streamml.stream import TestDriver
from streamml.stream.formats import avro_schema_of

T0 = 1_700_000_040_000
CSV = ("CREATE STREAM pay (card VARCHAR KEY, amount DOUBLE, n INT, ok BOOLEAN, ts BIGINT) "
       "WITH (kafka_topic='payments', value_format='DELIMITED', timestamp='ts');")


def test_parse_declaration_without_columns_and_partition_by() -> None:
    st = parse_ksql("CREATE STREAM s WITH (kafka_topic='t', value_format='AVRO')")
    assert isinstance(st, CreateSource) and st.columns == [] and st.props["VALUE_FORMAT"] == "AVRO"
    q = parse_ksql("CREATE STREAM x AS SELECT * FROM s WHERE a > 1 PARTITION BY b EMIT CHANGES")
    assert [t.text for t in q.select.partition_by] == ["b"]  # type: ignore[union-attr]
    with pytest.raises(QueryError, match="does not go with GROUP BY"):
        parse_ksql("CREATE TABLE x AS SELECT k, COUNT(*) FROM s GROUP BY k PARTITION BY k EMIT CHANGES")
    with pytest.raises(QueryError, match="more than one expression"):
        parse_ksql("CREATE STREAM x AS SELECT * FROM s PARTITION BY a, b EMIT CHANGES")


def test_declaration_refusals() -> None:
    cat = Catalog()
    with pytest.raises(QueryError, match="value_format PROTOBUF is not supported"):
        cat.execute("CREATE STREAM s (a INT) WITH (kafka_topic='t', value_format='PROTOBUF')")
    with pytest.raises(QueryError, match="value_delimiter applies to value_format DELIMITED"):
        cat.execute("CREATE STREAM s (a INT) WITH (kafka_topic='t', value_delimiter='|')")
    with pytest.raises(QueryError, match="one character"):
        cat.execute("CREATE STREAM s (a INT) WITH (kafka_topic='t', value_format='DELIMITED', value_delimiter='||')")
    with pytest.raises(QueryError, match="declares no columns"):
        cat.execute("CREATE STREAM s WITH (kafka_topic='t', value_format='DELIMITED')")
    with pytest.raises(QueryError, match="needs a schema registry") as err:
        cat.execute("CREATE STREAM s WITH (kafka_topic='t', value_format='AVRO')")
    assert "schema_registry_url" in str(err.value)  # the hint names the setting
    cat.execute(CSV)
    with pytest.raises(QueryError, match="needs a schema registry"):
        cat.compile("CREATE STREAM o WITH (value_format='AVRO') AS SELECT * FROM pay EMIT CHANGES")
    with pytest.raises(QueryError, match="DELIMITED cannot hold"):
        cat.compile("CREATE TABLE o AS SELECT card, COLLECT_LIST(n) AS l FROM pay GROUP BY card EMIT CHANGES")


def test_registry_setting_from_the_environment() -> None:
    s = Settings.load(env={"STREAMML_SCHEMA_REGISTRY_URL": "http://127.0.0.1:8081"}, config_file=None)
    assert s.schema_registry_url == "http://127.0.0.1:8081"


def test_avro_type_mapping() -> None:
    cols = avro_columns({"type": "record", "name": "r", "fields": [
        {"name": "s", "type": "string"}, {"name": "l", "type": "long"}, {"name": "i", "type": ["null", "int"]},
        {"name": "d", "type": "double"}, {"name": "f", "type": "float"}, {"name": "b", "type": "boolean"},
        {"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}}]})
    assert [(c.name, c.type) for c in cols] == [("S", "VARCHAR"), ("L", "BIGINT"), ("I", "INT"), ("D", "DOUBLE"),
                                                 ("F", "DOUBLE"), ("B", "BOOLEAN"), ("T", "BIGINT")]
    with pytest.raises(QueryError, match="has no column type here"):
        avro_columns({"type": "record", "name": "r", "fields": [{"name": "m", "type": {"type": "map",
                                                                                       "values": "long"}}]})
    doc = avro_schema_of({"CARD": pl.String, "N": pl.Int64, "X": pl.Float64, "L": pl.List(pl.Int64)})
    assert doc["name"] == "KsqlDataSourceSchema" and doc["namespace"] == "io.confluent.ksql.avro_schemas"
    assert [f["type"] for f in doc["fields"]] == [["null", "string"], ["null", "long"], ["null", "double"],
                                                  ["null", {"type": "array", "items": ["null", "long"]}]]


def test_delimited_rows_typed_and_bad_rows_go_to_the_dead_letters() -> None:
    cat = Catalog()
    cat.execute(CSV)
    q = cat.compile("CREATE STREAM big AS SELECT card, amount * 2 AS a2, n, ok FROM pay WHERE amount > 1 EMIT CHANGES")
    assert q.pipeline.value_format is not None and q.pipeline.value_format.name == "delimited"
    assert q.pipeline.sink_format is not None and q.pipeline.sink_format.name == "delimited"  # the source's
    d = TestDriver(q.pipeline)
    out = d.send(f"2.5,3,true,{T0}".encode(), b"oops", f"x,1,true,{T0}".encode(), f"0.5,1,false,{T0}".encode(),
                 f'4,,"FALSE",{T0}'.encode(), key="c1")
    assert out == [{"A2": 5.0, "N": 3, "OK": True}, {"A2": 8.0, "N": None, "OK": False}]
    res = d.results[-1]
    assert res.values == [b"5.0,3,true", b"8.0,,false"]  # DELIMITED out: declared order, no header
    assert [r[1] for r in d.dead_letters] == [b"oops", f"x,1,true,{T0}".encode()]
    reasons = [dict(h)[H.REASON] for _, _, h in d.dead_letters]
    assert reasons == [b"expected 4 delimited values, got 1", b"column AMOUNT: not a DOUBLE: x"]
    assert d.invalid == 2
    # the outputs read back as rows, typed as the projection types them
    assert rows(q, list(zip(res.keys, res.values))).to_dicts() == [
        {"CARD": "c1", "A2": 5.0, "N": 3, "OK": True, "_tombstone": False},
        {"CARD": "c1", "A2": 8.0, "N": None, "OK": False, "_tombstone": False}]


def test_delimited_aggregate_equals_json_aggregate() -> None:
    """The same records as DELIMITED and as JSON aggregate to the same rows."""
    stmt = ("CREATE TABLE t WITH (value_format='JSON') AS SELECT card, COUNT(*) AS c, SUM(amount) AS s FROM pay "
            "WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 0 SECONDS) GROUP BY card EMIT FINAL")
    recs = [(2.0, 1, T0), (3.5, 2, T0 + 10), (1.0, 3, T0 + 60_000)]
    dc = Catalog()
    dc.execute(CSV.replace("value_format='DELIMITED'", "value_format='DELIMITED', value_delimiter='|'"))
    d = TestDriver(dc.compile(stmt).pipeline)
    d.send(*[f"{a}|{n}|true|{ts}".encode() for a, n, ts in recs], key="k")
    jc = Catalog()
    jc.execute(CSV.replace("DELIMITED", "JSON"))
    j = TestDriver(jc.compile(stmt).pipeline)
    j.send(*[{"amount": a, "n": n, "ok": True, "ts": ts} for a, n, ts in recs], key="k")
    assert d.outputs == j.outputs == [{"C": 2, "S": 5.5}]
    assert d.results[-1].values == j.results[-1].values == [b'{"C":2,"S":5.5}']


def test_partition_by_rekeys_each_record() -> None:
    cat = Catalog()
    cat.execute(CSV.replace("DELIMITED", "JSON"))
    q = cat.compile("CREATE STREAM by_n AS SELECT *, n * 10 AS n10 FROM pay PARTITION BY n * 10 EMIT CHANGES")
    d = TestDriver(q.pipeline)
    d.send({"amount": 1.0, "n": 4, "ok": True, "ts": T0}, {"amount": 2.0, "n": None, "ok": True, "ts": T0},
           key="c1")
    res = d.results[-1]
    assert q.key_type == "INT" and q.columns == ("CARD", "AMOUNT", "N", "OK", "TS")
    assert [decode_key(k, "INT", False)[0] for k in res.keys] == [40, None]
    assert res.values[0] == b'{"CARD":"c1","AMOUNT":1.0,"N":4,"OK":true,"TS":1700000040000}'
    # a later statement reads the re-keyed stream, keyed by its new key
    q2 = cat.compile("CREATE TABLE per AS SELECT n10, COUNT(*) AS c FROM by_n GROUP BY n10 EMIT CHANGES")
    assert q2.key_type == "INT"
    with pytest.raises(QueryError, match="PARTITION BY over a join"):
        cat.execute("CREATE TABLE cards (id VARCHAR PRIMARY KEY, lim DOUBLE) WITH (kafka_topic='cards');"
                    "CREATE STREAM j AS SELECT p.card, c.lim FROM pay p JOIN cards c ON p.card = c.id "
                    "PARTITION BY p.card EMIT CHANGES")
    with pytest.raises(QueryError, match="has no KAFKA key format"):
        cat.compile("CREATE STREAM b AS SELECT * FROM pay PARTITION BY ok EMIT CHANGES")
