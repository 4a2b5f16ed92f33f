"""The query layer without a broker: parsing, rewriting, deployability, resolution, decoding."""

from __future__ import annotations

import random

import polars as pl
import pytest

from streamml.errors import QueryError
from streamml.query.continuous import check, to_batch_sql
from streamml.query.deploy import batch_function
from streamml.query.reader import META_COLUMNS, as_millis, decode_values
from streamml.query.resolve import candidates, pick
from streamml.query.sql import parse, run_statement
from streamml.query.tail import compile_where
from streamml.stream import TestDriver, stream


def test_parse_finds_topics_and_skips_ctes() -> None:
    st = parse('WITH big AS (SELECT * FROM payments WHERE amount > 5) '
               'SELECT b.card_id, c.holder FROM big b JOIN "ns.raw.cards" c USING (card_id) '
               'WHERE b.card_id IN (SELECT card_id FROM raw.blocked);')
    assert st.topic_names == ["payments", "ns.raw.cards", "raw.blocked"]
    assert not st.emit_changes
    assert parse("select 1 from t emit   changes ;").emit_changes


def test_rewrite_keeps_the_statement_and_aliases() -> None:
    st = parse("SELECT payments.a, p2.b FROM payments JOIN raw.payments p2 ON payments.k = p2.k")
    out = st.rewrite({"payments": "x0", "raw.payments": "x1"})
    assert out == 'SELECT payments.a, p2.b FROM "x0" AS "payments" JOIN "x1" AS "p2" ON payments.k = p2.k'
    st = parse("SELECT 'é' AS e, amount FROM payments")  # byte offsets, not characters
    assert st.rewrite({"payments": "t"}) == "SELECT 'é' AS e, amount FROM \"t\" AS \"payments\""


def test_run_statement_joins_frames() -> None:
    st = parse("SELECT p.k, sum(p.v * c.w) AS s FROM pay p JOIN cards c USING (k) GROUP BY 1 ORDER BY 1")
    pay = pl.DataFrame({"k": ["a", "b", "a"], "v": [1, 2, 3]})
    cards = pl.DataFrame({"k": ["a", "b"], "w": [10, 100]})
    assert run_statement(st, {"pay": pay, "cards": cards}).rows() == [("a", 40), ("b", 200)]
    assert run_statement(st, {"pay": pay, "cards": cards}, output="pandas").shape == (2, 2)
    with pytest.raises(QueryError, match="SQL failed"):
        run_statement(parse("SELECT nope FROM pay"), {"pay": pay})


@pytest.mark.parametrize("statement, reason", [
    ("SELECT k, count(*) FROM s GROUP BY k", "GROUP BY"),
    ("SELECT sum(v) FROM s", "aggregate sum"),
    ("SELECT DISTINCT k FROM s", "DISTINCT"),
    ("SELECT k FROM s ORDER BY k", "ORDER BY"),
    ("SELECT k FROM s LIMIT 3", "LIMIT"),
    ("SELECT k, row_number() OVER (PARTITION BY k) FROM s", "window function"),
    ("SELECT a.k FROM s a JOIN t b USING (k)", "join"),
    ("SELECT k FROM s WHERE k IN (SELECT k FROM t)", "subqueries"),
    ("WITH x AS (SELECT * FROM s) SELECT * FROM x", "WITH"),
    ("SELECT k FROM s UNION ALL SELECT k FROM t", "UNION"),
    ("SELECT k, random() AS r FROM s", "not deterministic"),
    ("SELECT k, now() AS t FROM s", "not deterministic"),
    ("SELECT k, _offset FROM s", "metadata column _offset"),
    ("SELECT k FROM (SELECT * FROM s)", "subquery"),
    ("SELECT k FROM s TABLESAMPLE 10%", "SAMPLE"),
    ("SELECT count(*) AS n FROM s", "aggregate count_star"),
    ("SELECT k FROM s WHERE v > (SELECT max(v) FROM s)", "subqueries"),
])
def test_check_refuses_what_cannot_run_batch_by_batch(statement: str, reason: str) -> None:
    with pytest.raises(QueryError, match="cannot deploy") as err:
        check(statement + " EMIT CHANGES")
    assert reason in str(err.value)


def test_check_accepts_projections_filters_and_scalar_functions() -> None:
    st = check("SELECT k, v * 2 AS v2, CASE WHEN v > 3 THEN 'hi' ELSE 'lo' END AS band, upper(k) AS K, "
               "coalesce(v, 0) + 1 AS w, CAST(v AS DOUBLE) / 3 AS third FROM s WHERE v % 2 = 1 AND k LIKE 'a%' "
               "EMIT CHANGES")
    assert to_batch_sql(st).startswith('SELECT "__row", k, v * 2 AS v2')
    assert 'FROM "batch" AS "s"' in to_batch_sql(st)


STATEMENT = ("SELECT card, amount * 100 AS cents, upper(country) AS cc, amount > 50 AS big "
             "FROM payments WHERE amount > 20 AND country <> 'us' EMIT CHANGES")


def _records(n: int, seed: int = 7) -> list[dict[str, object]]:
    rnd = random.Random(seed)
    return [{"card": f"c{rnd.randrange(9)}", "amount": round(rnd.uniform(0, 100), 2),
             "country": rnd.choice(["fr", "de", "us"])} for _ in range(n)]


def test_statement_through_the_stream_engine_equals_the_statement_over_everything() -> None:
    records = _records(500)
    whole = run_statement(parse(STATEMENT), {"payments": pl.DataFrame(records)})
    driver = TestDriver(stream("payments").sql(to_batch_sql(check(STATEMENT))).to("out"))
    driver.send_many(records, batch_size=37)
    batched = driver.frame
    assert batched.columns == whole.columns
    assert batched.rows() == whole.rows()  # same rows, same order
    expected = [(r["card"], r["amount"] * 100, str(r["country"]).upper(), r["amount"] > 50)
                for r in records if r["amount"] > 20 and r["country"] != "us"]
    assert [(a, pytest.approx(b), c, d) for a, b, c, d in expected] == whole.rows()


def test_batch_function_drops_metadata_columns() -> None:
    fn = batch_function(STATEMENT)
    df = pl.DataFrame(_records(50)).with_columns(*(pl.lit(0).alias(c) for c in META_COLUMNS))
    out = fn(df)
    assert out.columns == ["card", "cents", "cc", "big"]
    assert out.height == sum(1 for r in _records(50) if r["amount"] > 20 and r["country"] != "us")


def test_resolution_order() -> None:
    existing = ["ns.raw.pay", "ns.features.pay", "ns.predictions.model", "pay", "other.raw.model"]
    assert pick("pay", "ns", existing) == "pay"  # the exact name wins
    assert pick("model", "ns", existing) == "ns.predictions.model"
    assert pick("raw.pay", "ns", existing) == "ns.raw.pay"
    assert pick("pay", "ns", existing[:2]) == "ns.raw.pay"  # stream kinds: raw, features, predictions
    assert pick("pay", "ns", ["ns.features.pay", "ns.predictions.pay", "ns.labels.pay"]) == "ns.features.pay"
    assert pick("pay", "ns", ["ns.labels.pay"]) == "ns.labels.pay"
    with pytest.raises(QueryError, match="ambiguous: ns.labels.pay, ns.metrics.pay"):
        pick("pay", "ns", ["ns.labels.pay", "ns.metrics.pay"])
    with pytest.raises(QueryError, match="no topic named 'zzz'") as err:
        pick("zzz", "ns", existing)
    assert err.value.hint and "ns.raw.pay" in err.value.hint
    assert candidates("x", "n")[1:4] == ["n.raw.x", "n.features.x", "n.predictions.x"]


def test_where_clauses_and_expressions() -> None:
    df = pl.DataFrame({"a": [1, 5, 9, None], "s": ["x", "y", "x", "x"]})
    assert df.filter(compile_where("a > 1 AND s = 'x'"))["a"].to_list() == [9]
    assert df.filter(compile_where(pl.col("a") < 6))["a"].to_list() == [1, 5]
    with pytest.raises(QueryError):
        compile_where("a >>> 1")


def test_decode_values_and_times() -> None:
    df = decode_values([b'{"a": 1, "n": {"x": 2}}', b'{"a": 2.5}', None])
    assert df.columns == ["a", "n"] and df["a"].to_list() == [1.0, 2.5, None]
    assert decode_values([b"plain", b'{"a": 1}'])["_value"].to_list() == ["plain", '{"a": 1}']
    assert as_millis("1970-01-01T00:00:01Z") == 1000 == as_millis("1970-01-01T00:00:01")
    with pytest.raises(QueryError):
        as_millis("yesterday")
