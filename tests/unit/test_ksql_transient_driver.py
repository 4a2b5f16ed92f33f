"""ksqlDB pull and push queries without a broker: the table state a pull query reads (latest row
per key / per window key, tombstones delete), key-lookup rules, and a push query's rows on the engine.

Expected rows follow ksqlDB's documented semantics: a pull query returns the current value of
each key it looks up (for a windowed table one row per window); a row that fails HAVING is
deleted from the table; a push query over a stream emits one row per matching record, over an
aggregation one row per update.
"""

from __future__ import annotations

from typing import Any

import orjson
import polars as pl
import pytest

from streamml.errors import QueryError
from streamml.query.ksql_compile import Catalog, Query
from streamml.query.ksql_pull import answer, parse_pull, table_rows
from streamml.query.ksql_push import batch_rows, parse_push, transient_query
from streamml.query.ksql_select import PullQuery, PushQuery, parse_transient, source_of
from streamml.stream import TestDriver
from streamml.stream.engine import RawBatch

DDL = ("CREATE STREAM pay (card VARCHAR KEY, amount DOUBLE, ts BIGINT, country VARCHAR) "
       "WITH (kafka_topic='payments', value_format='JSON', timestamp='ts');")
T0 = 1_700_000_040_000
M = 60_000


def _table(stmt: str, records: list[tuple[str, dict[str, Any]]]) -> tuple[Query, list[tuple[Any, Any]]]:
    """Compile ``stmt``, run ``records`` (key, value) one per batch; the output (key, value) records."""
    cat = Catalog()
    cat.execute(DDL)
    q = cat.compile(stmt)
    d = TestDriver(q.pipeline)
    for k, v in records:
        d.send(v, key=k)
    out = [(k, v) for r in d.results for k, v in zip(r.keys, r.values)]
    return q, out


def _pull(q: Query, out: list[tuple[Any, Any]], text: str) -> list[dict[str, Any]]:
    return answer(parse_pull(text), q, table_rows(q, out)).to_dicts()


def test_pull_returns_the_latest_row_per_key() -> None:
    q, out = _table("CREATE TABLE tot AS SELECT card, SUM(amount) AS total, COUNT(*) AS n FROM pay "
                    "GROUP BY card EMIT CHANGES",
                    [("c1", {"amount": 2, "ts": T0}), ("c2", {"amount": 5, "ts": T0 + 1}),
                     ("c1", {"amount": 3, "ts": T0 + 2})])
    assert len(out) == 3  # one change per record
    assert _pull(q, out, "SELECT * FROM tot WHERE card = 'c1'") == [{"CARD": "c1", "TOTAL": 5.0, "N": 2}]
    assert _pull(q, out, "SELECT card, total * 2 AS twice FROM tot WHERE card IN ('c2', 'c1', 'zz')") == [
        {"CARD": "c1", "TWICE": 10.0}, {"CARD": "c2", "TWICE": 10.0}]
    assert _pull(q, out, "SELECT * FROM tot WHERE card = 'nobody'") == []
    assert _pull(q, out, "SELECT n FROM tot WHERE card = 'c1' AND n > 5") == []


def test_pull_tombstones_from_having_delete_the_key() -> None:
    q, out = _table("CREATE TABLE small AS SELECT card, SUM(amount) AS total FROM pay GROUP BY card "
                    "HAVING SUM(amount) < 6 EMIT CHANGES",
                    [("c1", {"amount": 2, "ts": T0}), ("c2", {"amount": 1, "ts": T0}),
                     ("c1", {"amount": 9, "ts": T0 + 1})])
    assert out[-1][1] is None  # c1 fails HAVING: a tombstone
    assert _pull(q, out, "SELECT * FROM small WHERE card = 'c1'") == []
    assert _pull(q, out, "SELECT * FROM small WHERE card IN ('c1', 'c2')") == [{"CARD": "c2", "TOTAL": 1.0}]


def test_windowed_pull_one_row_per_window_and_window_bounds() -> None:
    q, out = _table("CREATE TABLE per_min AS SELECT card, COUNT(*) AS n FROM pay "
                    "WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 0 SECONDS) GROUP BY card EMIT CHANGES",
                    [("c1", {"amount": 1, "ts": T0 + 1}), ("c1", {"amount": 1, "ts": T0 + 2}),
                     ("c1", {"amount": 1, "ts": T0 + M + 5}), ("c2", {"amount": 1, "ts": T0 + M + 6})])
    rows = _pull(q, out, "SELECT * FROM per_min WHERE card = 'c1'")
    assert rows == [{"CARD": "c1", "WINDOWSTART": T0, "WINDOWEND": T0 + M, "N": 2},
                    {"CARD": "c1", "WINDOWSTART": T0 + M, "WINDOWEND": T0 + 2 * M, "N": 1}]
    assert _pull(q, out, f"SELECT n FROM per_min WHERE card = 'c1' AND WINDOWSTART >= {T0 + M}") == [{"N": 1}]
    assert _pull(q, out, f"SELECT n FROM per_min WHERE card = 'c1' AND WINDOWSTART >= {T0} "
                         f"AND WINDOWSTART < {T0 + M}") == [{"N": 2}]
    assert _pull(q, out, f"SELECT n FROM per_min WHERE card = 'c1' AND WINDOWEND BETWEEN {T0} AND {T0 + M}") == [
        {"N": 2}]
    iso = "2023-11-14T22:15:00Z"  # == T0 + M
    assert _pull(q, out, f"SELECT n FROM per_min WHERE card = 'c1' AND WINDOWSTART = '{iso}'") == [{"N": 1}]
    assert _pull(q, out, "SELECT n FROM per_min WHERE card = 'c1' LIMIT 1") == [{"N": 2}]


@pytest.mark.parametrize("text, message", [
    ("SELECT * FROM tot", "a pull query looks up keys"),
    ("SELECT * FROM tot WHERE total > 3", "needs CARD = <value>"),
    ("SELECT * FROM tot WHERE card = 'a' OR card = 'b'", "a pull query looks up keys"),
    ("SELECT * FROM tot WHERE card > 'a'", "a pull query looks up keys"),
    ("SELECT * FROM tot WHERE card = 'a' AND WINDOWSTART > 5", "not windowed"),
    ("SELECT nope FROM tot WHERE card = 'a'", "NOPE is not a column of TOT"),
])
def test_pull_refusals_say_why_and_what_to_write(text: str, message: str) -> None:
    q, out = _table("CREATE TABLE tot AS SELECT card, SUM(amount) AS total FROM pay GROUP BY card EMIT CHANGES",
                    [("a", {"amount": 1, "ts": T0})])
    with pytest.raises(QueryError, match=message) as info:
        _pull(q, out, text)
    assert info.value.hint


@pytest.mark.parametrize("text, message", [
    ("SELECT card, COUNT(*) FROM tot GROUP BY card", "pull queries do not support GROUP BY"),
    ("SELECT * FROM tot t JOIN x ON t.a = x.a", "pull queries do not support JOIN"),
    ("SELECT * FROM pay EMIT FINAL", "EMIT FINAL is only supported for windowed aggregations"),
    ("SELECT * FROM pay EMIT CHANGES LIMIT 0", "LIMIT takes a positive"),
    ("SELECT * FROM pay EMIT CHANGES LIMIT 2 garbage", "unexpected text"),
])
def test_transient_parse_refusals(text: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse_transient(text)


def test_transient_kinds_and_sources() -> None:
    assert isinstance(parse_transient("SELECT * FROM t WHERE k = 1;"), PullQuery)
    p = parse_transient("SELECT a FROM s EMIT CHANGES LIMIT 5;")
    assert isinstance(p, PushQuery) and p.limit == 5
    assert source_of("SELECT * FROM (SELECT 1) x") is None
    assert source_of("WITH x AS (SELECT 1) SELECT * FROM x") is None


def _raw(topic: str, recs: list[tuple[str, dict[str, Any]]], start: int = 0) -> RawBatch:
    return RawBatch(topic, [orjson.dumps(v) for _, v in recs], [k.encode() for k, _ in recs], [0] * len(recs),
                    list(range(start, start + len(recs))), [0] * len(recs))


def _push(text: str) -> tuple[Query, Any]:
    cat = Catalog()
    cat.execute(DDL)
    q = transient_query(parse_push(text), cat)
    assert cat.queries == {}  # a push query is not a persistent query of the session
    return q, batch_rows(q)


def test_push_over_a_stream_filters_and_projects_each_record() -> None:
    q, rows = _push("SELECT card, amount * 10 AS big FROM pay WHERE country = 'FR' EMIT CHANGES")
    got = rows(_raw("payments", [("a", {"amount": 1, "ts": T0, "country": "FR"}),
                                 ("b", {"amount": 2, "ts": T0, "country": "DE"}),
                                 ("c", {"amount": 3, "ts": T0, "COUNTRY": "FR"})])).to_dicts()
    assert got == [{"CARD": "a", "BIG": 10.0}, {"CARD": "c", "BIG": 30.0}]


def test_push_emit_final_emits_each_window_once_when_it_closes() -> None:
    q, rows = _push("SELECT card, COUNT(*) AS n FROM pay WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 0 SECONDS) "
                    "GROUP BY card EMIT FINAL")
    assert rows(_raw("payments", [("a", {"ts": T0}), ("a", {"ts": T0 + 5})])).height == 0
    closed = rows(_raw("payments", [("a", {"ts": T0 + M})], 2))
    assert closed.select("CARD", "WINDOWSTART", "N").rows() == [("a", T0, 2)]


def test_push_aggregation_emits_every_update_and_keeps_state_across_batches() -> None:
    q, rows = _push("SELECT card, COUNT(*) AS n, SUM(amount) AS s FROM pay WINDOW TUMBLING (SIZE 1 MINUTE) "
                    "GROUP BY card EMIT CHANGES")
    first = rows(_raw("payments", [("a", {"amount": 1, "ts": T0}), ("a", {"amount": 2, "ts": T0 + 5})]))
    second = rows(_raw("payments", [("a", {"amount": 4, "ts": T0 + 9}), ("b", {"amount": 1, "ts": T0 + M})], 2))
    cols = ["CARD", "WINDOWSTART", "N", "S"]
    assert first.select(cols).rows() == [("a", T0, 1, 1.0), ("a", T0, 2, 3.0)]
    assert second.select(cols).rows() == [("a", T0, 3, 7.0), ("b", T0 + M, 1, 1.0)]
    assert not any(second["_tombstone"].to_list())


class _Msg:
    """The two methods of a Kafka message the table decoders read."""

    def __init__(self, key: bytes | None, value: bytes | None) -> None:
        self._k, self._v = key, value

    def key(self) -> bytes | None:
        return self._k

    def value(self) -> bytes | None:
        return self._v


def _tables() -> Catalog:
    cat = Catalog()
    cat.execute(DDL + "CREATE TABLE cards (id VARCHAR PRIMARY KEY, lim DOUBLE, owner VARCHAR) "
                      "WITH (kafka_topic='cards');"
                      "CREATE TABLE tot AS SELECT card, SUM(amount) AS total FROM pay GROUP BY card EMIT CHANGES;")
    return cat


def test_pull_on_a_declared_table_is_its_topics_latest_value_per_key() -> None:
    from streamml.query.ksql_pull import source_rows

    cat = _tables()
    src = cat.sources["CARDS"]
    recs = [(b"c1", b'{"lim": 10, "owner": "ann"}'), (b"c2", b'{"LIM": 5}'), (b"c1", b'{"lim": 20}'),
            (b"c3", b'{"lim": 1}'), (b"c3", None)]
    state = source_rows(src, recs)
    assert state.to_dicts() == [{"ID": "c1", "LIM": 20.0, "OWNER": None}, {"ID": "c2", "LIM": 5.0, "OWNER": None}]
    assert answer(parse_pull("SELECT lim FROM cards WHERE id IN ('c2', 'c3')"), src, state).to_dicts() == [
        {"LIM": 5.0}]


def test_push_over_tables_follows_their_changes() -> None:
    from streamml.query.ksql_compile import encode_key
    from streamml.query.ksql_push import _follow

    cat = _tables()
    decode = _follow(parse_push("SELECT id, lim FROM cards WHERE lim > 3 EMIT CHANGES"), cat.sources["CARDS"])
    got = decode([_Msg(b"c1", b'{"lim": 10}'), _Msg(b"c2", b'{"lim": 1}'), _Msg(b"c1", None)])  # type: ignore[list-item]
    assert got.to_dicts() == [{"ID": "c1", "LIM": 10.0, "_tombstone": False},
                              {"ID": "c1", "LIM": None, "_tombstone": True}]
    q = cat.queries["TOT"]
    k = encode_key(pl.Series(["a"]), "VARCHAR")[0]
    decode = _follow(parse_push("SELECT * FROM tot EMIT CHANGES"), q)
    got = decode([_Msg(k, b'{"TOTAL": 1.0}'), _Msg(k, b'{"TOTAL": 4.0}'), _Msg(k, None)])  # type: ignore[list-item]
    assert got.to_dicts() == [{"CARD": "a", "TOTAL": 1.0, "_tombstone": False},
                              {"CARD": "a", "TOTAL": 4.0, "_tombstone": False},
                              {"CARD": "a", "TOTAL": None, "_tombstone": True}]
    with pytest.raises(QueryError, match="takes WHERE only"):
        _follow(parse_push("SELECT card, COUNT(*) FROM tot GROUP BY card EMIT CHANGES"), q)
