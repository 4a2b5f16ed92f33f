"""ksqlDB stream-stream joins (WITHIN) on the offline driver, expected rows from ksqlDB's documented semantics.

The first test is the "Join Event Streams with ksqlDB" example (orders joined with shipments
WITHIN 7 DAYS: orders 1 and 2 ship within a week, order 3 twelve days later, order 4 never).
The others follow the documented rules: a pair is written once, when the later record arrives;
records outside the window do not join; an out-of-order record within the grace period still
joins; one later than the grace is dropped and counted; LEFT/FULL write a record that matched
nothing with nulls once its window closed (ksqlDB >= 0.25), 24 hours of stream time after the
window when no GRACE PERIOD is given.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson
import pytest

from streamml.errors import PipelineError, QueryError
from streamml.query.ksql_compile import Catalog, Query, decode_record
from streamml.stream import TestDriver
from streamml.stream.engine import Engine, RawBatch, state_from_records

S = 1000
H = 3_600_000


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() * 1000)


DOCS_DDL = ("CREATE STREAM orders (id INT KEY, order_ts BIGINT, total_amount DOUBLE, customer_name VARCHAR) "
            "WITH (kafka_topic='_orders', value_format='JSON', timestamp='order_ts');"
            "CREATE STREAM shipments (id VARCHAR KEY, ship_ts BIGINT, order_id INT, warehouse VARCHAR) "
            "WITH (kafka_topic='_shipments', value_format='JSON', timestamp='ship_ts');")
DOCS_QUERY = ("CREATE STREAM shipped_orders AS SELECT o.id AS order_id, o.total_amount, o.customer_name, "
              "s.id AS shipment_id, s.warehouse, s.ship_ts - o.order_ts AS ship_time_ms "
              "FROM orders o INNER JOIN shipments s WITHIN 7 DAYS ON o.id = s.order_id EMIT CHANGES;")

DDL = ("CREATE STREAM l (k VARCHAR KEY, a INT, ts BIGINT) WITH (kafka_topic='lt', timestamp='ts');"
       "CREATE STREAM r (k VARCHAR KEY, b INT, ts BIGINT) WITH (kafka_topic='rt', timestamp='ts');")


def _query(stmt: str, ddl: str = DDL, partitions: Any = None) -> Query:
    cat = Catalog(partitions=partitions)
    cat.execute(ddl)
    return cat.compile(stmt)


def _join(how: str, within: str = "5 SECONDS", grace: str | None = "10 SECONDS") -> Query:
    g = f" GRACE PERIOD {grace}" if grace else ""
    return _query(f"CREATE STREAM j AS SELECT l.k, l.a, r.b FROM l {how} r WITHIN {within}{g} ON l.k = r.k "
                  "EMIT CHANGES;")


def _run(q: Query, records: list[tuple[str, str, dict[str, Any]]], *, one_batch: bool = False,
         driver: TestDriver | None = None) -> tuple[list[dict[str, Any]], TestDriver]:
    """Send (side 'l'|'r', key, value) records (one per batch, or all in one mixed batch); the rows written."""
    d = driver or TestDriver(q.pipeline)
    start = len(d.results)
    topics = {"l": q.pipeline.source_topic(), "r": q.pipeline.join_op.right_topic}
    if one_batch:
        raw = RawBatch(topics["l"], [orjson.dumps(v) for _s, _k, v in records], [k.encode() for _s, k, _v in records],
                       [0] * len(records), list(range(len(records))), [0] * len(records), None,
                       [topics[s] for s, _k, _v in records])
        res = d.engine.process(raw)
        d.engine.commit(res)
        d.results.append(res)
        d.late += res.n_late
    else:
        for side, k, v in records:
            d.send(v, key=k, topic=topics[side])
    out = [decode_record(q, k, v) for r in d.results[start:] for k, v in zip(r.keys, r.values)]
    return out, d


def test_docs_orders_shipments_inner_within_7_days() -> None:
    q = _query(DOCS_QUERY, DOCS_DDL)
    orders = [(1, "2021-03-29T06:01:18", 133.84, "Ricardo Ferreira"),
              (2, "2021-03-29T17:02:20", 164.31, "Tim Berglund"),
              (3, "2021-03-29T13:44:10", 90.66, "Robin Moffatt"), (4, "2021-03-29T11:58:25", 33.11, "Viktor Gamov")]
    ships = [("ship-ch83360", "2021-03-31T18:13:39", 1, "UPS"), ("ship-xf72808", "2021-03-31T02:04:13", 2, "UPS"),
             ("ship-kr47454", "2021-04-10T04:12:03", 3, "DHL")]
    d = TestDriver(q.pipeline)
    for i, ts, amount, name in orders:
        assert d.send({"order_ts": _ms(ts), "total_amount": amount, "customer_name": name},
                      key=i.to_bytes(4, "big")) == []
    for sid, ts, oid, wh in ships:
        d.send({"ship_ts": _ms(ts), "order_id": oid, "warehouse": wh}, key=sid, topic="_shipments")
    got = [decode_record(q, k, v) for r in d.results for k, v in zip(r.keys, r.values)]
    assert got == [
        {"ORDER_ID": 1, "TOTAL_AMOUNT": 133.84, "CUSTOMER_NAME": "Ricardo Ferreira", "SHIPMENT_ID": "ship-ch83360",
         "WAREHOUSE": "UPS", "SHIP_TIME_MS": 216_741_000, "_tombstone": False},
        {"ORDER_ID": 2, "TOTAL_AMOUNT": 164.31, "CUSTOMER_NAME": "Tim Berglund", "SHIPMENT_ID": "ship-xf72808",
         "WAREHOUSE": "UPS", "SHIP_TIME_MS": 118_913_000, "_tombstone": False}]
    assert [k for r in d.results for k in r.keys] == [(1).to_bytes(4, "big"), (2).to_bytes(4, "big")]
    assert d.late == 0


def test_inner_pairs_once_when_later_arrives_and_outside_window_none() -> None:
    q = _join("JOIN")
    out, d = _run(q, [("l", "x", {"a": 1, "ts": 100 * S}), ("r", "x", {"b": 10, "ts": 104 * S}),
                      ("r", "x", {"b": 11, "ts": 95 * S}),    # within 5 s before: joins
                      ("r", "x", {"b": 12, "ts": 106 * S}),   # 6 s after: outside the window
                      ("l", "x", {"a": 2, "ts": 107 * S}),    # joins b=10 (3 s) and b=12 (1 s)
                      ("l", "y", {"a": 3, "ts": 107 * S})])   # another key: nothing
    assert [(r["K"], r["A"], r["B"]) for r in out] == [("x", 1, 10), ("x", 1, 11), ("x", 2, 10), ("x", 2, 12)]
    assert d.late == 0


def test_out_of_order_within_grace_joins_late_beyond_grace_dropped_and_counted() -> None:
    q = _join("JOIN")
    out, d = _run(q, [("l", "x", {"a": 1, "ts": 100 * S}),
                      ("r", "z", {"b": 0, "ts": 108 * S}),     # stream time 108 s
                      ("r", "x", {"b": 1, "ts": 98 * S})])     # 10 s out of order, window open until 113 s
    assert [(r["K"], r["A"], r["B"]) for r in out] == [("x", 1, 1)]
    assert d.late == 0
    out, d = _run(q, [("l", "z", {"a": 9, "ts": 120 * S}),     # stream time 120 s
                      ("r", "x", {"b": 2, "ts": 99 * S}),      # retained until 99 + 5 + 5 + 10 = 119 s: late
                      ("l", "x", {"a": 3, "ts": 99 * S + 500})], driver=d)  # retained until 119.5 s: late
    assert out == [] and d.late == 2


def test_left_join_writes_unmatched_once_window_closed() -> None:
    q = _join("LEFT JOIN")
    out, _ = _run(q, [("l", "a", {"a": 1, "ts": 100 * S}),
                      ("l", "b", {"a": 2, "ts": 101 * S}), ("r", "b", {"b": 20, "ts": 102 * S}),
                      ("r", "c", {"b": 30, "ts": 115 * S})])   # a closes at 100 + 5 + 10 = 115 s: still open
    assert [(r["K"], r["A"], r["B"]) for r in out] == [("b", 2, 20)]
    q = _join("LEFT OUTER JOIN")
    out, _ = _run(q, [("l", "a", {"a": 1, "ts": 100 * S}),
                      ("l", "b", {"a": 2, "ts": 101 * S}), ("r", "b", {"b": 20, "ts": 102 * S}),
                      ("r", "c", {"b": 30, "ts": 115 * S}), ("r", "c", {"b": 31, "ts": 115 * S + 1}),
                      ("l", "d", {"a": 4, "ts": 200 * S})])
    # a: written with a null right side once stream time passed 115 s; b matched: never null-joined;
    # the right-only c records are not written by a LEFT join
    assert [(r["K"], r["A"], r["B"]) for r in out] == [("b", 2, 20), ("a", 1, None)]


def test_left_join_without_grace_uses_24_hour_default() -> None:
    q = _join("LEFT JOIN", grace=None)
    out, d = _run(q, [("l", "a", {"a": 1, "ts": 100 * S}), ("l", "z", {"a": 0, "ts": 100 * S + 5 * S + 24 * H})])
    assert out == []
    out, d = _run(q, [("r", "x", {"b": 2, "ts": 101 * S}),     # 24 h out of order: still joins nothing, not late
                      ("l", "z", {"a": 0, "ts": 100 * S + 5 * S + 24 * H + 1})], driver=d)
    assert [(r["K"], r["A"], r["B"]) for r in out] == [("a", 1, None)] and d.late == 0


def test_full_outer_join_writes_both_unmatched_sides() -> None:
    q = _query("CREATE STREAM j AS SELECT l.k AS k, l.a, r.b FROM l FULL OUTER JOIN r WITHIN 5 SECONDS "
               "GRACE PERIOD 0 SECONDS ON l.k = r.k EMIT CHANGES;")
    out, d = _run(q, [("l", "a", {"a": 1, "ts": 100 * S}), ("r", "b", {"b": 2, "ts": 101 * S}),
                      ("r", "c", {"b": 3, "ts": 102 * S}), ("l", "c", {"a": 4, "ts": 103 * S}),
                      ("l", "z", {"a": 9, "ts": 120 * S})])
    assert [(r["K"], r["A"], r["B"]) for r in out] == [("c", 4, 3), ("a", 1, None), ("b", None, 2)]
    assert [k for r in d.results for k in r.keys] == [b"c", b"a", b"b"]


@pytest.mark.parametrize("how", ["JOIN", "LEFT JOIN", "FULL JOIN"])
def test_batch_boundaries_do_not_change_the_rows(how: str) -> None:
    q = _join(how, grace="2 SECONDS")
    recs = [("l", "a", {"a": 1, "ts": 100 * S}), ("r", "a", {"b": 1, "ts": 103 * S}),
            ("r", "b", {"b": 2, "ts": 99 * S}), ("l", "b", {"a": 2, "ts": 110 * S}),
            ("l", "a", {"a": 3, "ts": 90 * S}), ("r", "c", {"b": 3, "ts": 130 * S})]
    one, d1 = _run(q, recs, one_batch=True)
    each, d2 = _run(q, recs)
    assert one == each and d1.late == d2.late == 1


def test_restart_restores_join_buffers_from_the_changelog() -> None:
    q = _join("LEFT JOIN")
    first = [("l", "a", {"a": 1, "ts": 100 * S}), ("l", "b", {"a": 2, "ts": 101 * S}),
             ("r", "b", {"b": 20, "ts": 102 * S})]
    second = [("r", "a", {"b": 10, "ts": 103 * S}), ("l", "c", {"a": 3, "ts": 104 * S}),
              ("r", "z", {"b": 0, "ts": 130 * S})]
    whole, _ = _run(q, first + second)
    before, d = _run(q, first)
    store: dict[bytes, bytes] = {}  # the compacted changelog of partition 0, as the state store holds it
    for res in d.results:
        for _p, k, v in res.changelog:
            if v is None:
                store.pop(k, None)
            else:
                store[k] = v
    rows, stream_time = state_from_records(store.items(), 0)
    fresh = TestDriver(q.pipeline)
    fresh.engine.assign(rows, stream_time)
    after, _ = _run(q, second, driver=fresh)
    assert before + after == whole
    assert [(r["K"], r["A"], r["B"]) for r in whole] == [("b", 2, 20), ("a", 1, 10), ("c", 3, None)]


def test_refusals() -> None:
    with pytest.raises(QueryError, match="co-partitioned"):
        _query("CREATE STREAM j AS SELECT l.k, l.a, r.b FROM l JOIN r WITHIN 1 SECOND ON l.k = r.k EMIT CHANGES;",
               partitions=lambda t: 2 if t == "lt" else 3)
    with pytest.raises(QueryError, match="not the key of L"):
        _query("CREATE STREAM j AS SELECT l.k, r.b FROM l JOIN r WITHIN 1 SECOND ON l.a = r.b EMIT CHANGES;",
               ddl=DDL.replace("a INT", "a INT"), partitions=lambda t: 2)
    with pytest.raises(QueryError, match="needs WITHIN"):
        _query("CREATE STREAM j AS SELECT l.k, r.b FROM l JOIN r ON l.k = r.k EMIT CHANGES;")
    with pytest.raises(QueryError, match="differ in type"):
        _query("CREATE STREAM j AS SELECT l.k, r.b FROM l JOIN r WITHIN 1 SECOND ON l.k = r.b EMIT CHANGES;")
    with pytest.raises(QueryError, match="RIGHT joins are not supported"):
        _query("CREATE STREAM j AS SELECT l.k FROM l RIGHT JOIN r WITHIN 1 SECOND ON l.k = r.k EMIT CHANGES;")
    with pytest.raises(QueryError, match="WITHIN joins two streams"):
        _query("CREATE STREAM j AS SELECT l.k, t.v FROM l JOIN t WITHIN 1 SECOND ON l.k = t.id EMIT CHANGES;",
               ddl=DDL + "CREATE TABLE t (id VARCHAR PRIMARY KEY, v INT) WITH (kafka_topic='tt');")


def test_parse_before_after() -> None:
    q = _query("CREATE STREAM j AS SELECT l.k, l.a, r.b FROM l AS x JOIN r AS y WITHIN (BEFORE 1 SECOND, "
               "AFTER 2 SECONDS) GRACE PERIOD 0 MILLISECONDS ON x.k = y.k EMIT CHANGES;".replace("l.", "x.")
               .replace("r.b", "y.b"))
    op = q.pipeline.join_op
    assert (op.before, op.after, op.grace, op.how) == (1000, 2000, 0, "inner")
    out, _ = _run(q, [("l", "a", {"a": 1, "ts": 100 * S}), ("r", "a", {"b": 1, "ts": 102 * S}),
                      ("r", "a", {"b": 2, "ts": 99 * S}), ("r", "a", {"b": 3, "ts": 98 * S + 999})])
    assert [(r["K"], r["A"], r["B"]) for r in out] == [("a", 1, 1), ("a", 1, 2)]


def test_a_stream_join_is_the_first_step() -> None:
    q = _join("JOIN")
    with pytest.raises(PipelineError, match="first step"):
        q.pipeline.__class__.source("x").filter(True).stream_join(q.pipeline.join_op)  # type: ignore[arg-type]
    assert Engine(q.pipeline).join is q.pipeline.join_op


def test_where_and_unqualified_columns_over_the_joined_rows() -> None:
    q = _query("CREATE STREAM j AS SELECT l.k, a, b, a + b AS s FROM l JOIN r WITHIN 5 SECONDS ON l.k = r.k "
               "WHERE b > 1 EMIT CHANGES;")
    out, _ = _run(q, [("l", "x", {"a": 1, "ts": 100 * S}), ("r", "x", {"b": 1, "ts": 101 * S}),
                      ("r", "x", {"b": 5, "ts": 102 * S})])
    assert out == [{"K": "x", "A": 1, "B": 5, "S": 6, "_tombstone": False}]
    assert q.columns == ("A", "B", "S") and [c.name for c in q.derived.columns] == ["K", "A", "B", "S"]


def test_a_push_query_over_a_stream_stream_join_is_refused() -> None:
    from streamml.query.ksql_push import parse_push, transient_query

    cat = Catalog()
    cat.execute(DDL)
    with pytest.raises(QueryError, match="push query over a stream-stream join"):
        transient_query(parse_push("SELECT l.k, r.b FROM l JOIN r WITHIN 1 SECOND ON l.k = r.k EMIT CHANGES;"), cat)
