"""ksqlDB's LATEST_BY_OFFSET, EARLIEST_BY_OFFSET, TOPK, COLLECT_LIST, and COUNT_DISTINCT/STDDEV_SAMP
under EMIT CHANGES, on the TestDriver.

Expected rows follow ksqlDB's aggregate function reference: LATEST_BY_OFFSET / EARLIEST_BY_OFFSET
return the value of the record with the largest / lowest offset, ignoring nulls unless
``ignoreNulls`` is FALSE; TOPK(col, k) the k largest values, largest first, nulls ignored;
COLLECT_LIST every value in arrival order (nulls included); STDDEV_SAMP the sample standard
deviation; EMIT CHANGES one row per record that updates the aggregate, whatever the batches.
"""

from __future__ import annotations

import random
import statistics
from typing import Any

import pytest

from streamml.errors import QueryError
from streamml.query.ksql_compile import Catalog
from streamml.stream import TestDriver

DDL = ("CREATE STREAM pay (card VARCHAR KEY, amount DOUBLE, ts BIGINT, country VARCHAR) "
       "WITH (kafka_topic='payments', value_format='JSON', timestamp='ts');")
T0 = 1_700_000_040_000
M = 60_000


def _driver(stmt: str) -> TestDriver:
    cat = Catalog()
    cat.execute(DDL)
    return TestDriver(cat.compile(stmt).pipeline)


CHANGES = ("CREATE TABLE agg AS SELECT card, LATEST_BY_OFFSET(amount) AS latest, "
           "LATEST_BY_OFFSET(amount, FALSE) AS latest_n, EARLIEST_BY_OFFSET(amount) AS earliest, "
           "EARLIEST_BY_OFFSET(amount, false) AS earliest_n, TOPK(amount, 2) AS top2, "
           "COLLECT_LIST(amount) AS amounts, COUNT_DISTINCT(country) AS countries, "
           "STDDEV_SAMP(amount) AS sd FROM pay GROUP BY card EMIT CHANGES")
AMOUNTS = [None, 5.0, None, 2.0, 9.0, 7.0]
COUNTRIES = ["FR", "DE", "FR", None, "IT", "DE"]


def _records() -> list[dict[str, Any]]:
    return [{"amount": a, "ts": T0 + i, "country": c} for i, (a, c) in enumerate(zip(AMOUNTS, COUNTRIES))]


def _expected() -> list[dict[str, Any]]:
    out = []
    for i in range(len(AMOUNTS)):
        seen = AMOUNTS[:i + 1]
        vals = [a for a in seen if a is not None]
        out.append({"LATEST": vals[-1] if vals else None, "LATEST_N": seen[-1],
                    "EARLIEST": vals[0] if vals else None, "EARLIEST_N": seen[0],
                    "TOP2": sorted(vals, reverse=True)[:2], "AMOUNTS": seen,
                    "COUNTRIES": len({c for c in COUNTRIES[:i + 1] if c is not None}),
                    "SD": statistics.stdev(vals) if len(vals) > 1 else None})
    return out


def _close(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert {k: v for k, v in g.items() if k != "SD"} == {k: v for k, v in w.items() if k != "SD"}
        assert (g["SD"] is None) == (w["SD"] is None)
        if w["SD"] is not None:
            assert g["SD"] == pytest.approx(w["SD"], rel=1e-9)


def test_emit_changes_one_row_per_record_one_record_per_batch() -> None:
    d = _driver(CHANGES)
    for r in _records():
        d.send(r, key="c1")
    _close(d.outputs, _expected())


@pytest.mark.parametrize("batch", [2, 4, 6])
def test_emit_changes_rows_are_the_same_in_bigger_batches(batch: int) -> None:
    d = _driver(CHANGES)
    d.send_many(_records(), batch_size=batch, key="c1")
    _close(d.outputs, _expected())


def test_emit_changes_random_batches_match_record_at_a_time() -> None:
    rnd = random.Random(11)
    recs = [{"amount": rnd.choice([None, *range(10)]), "ts": T0 + i, "country": rnd.choice("ABC")}
            for i in range(120)]
    keys = [rnd.choice(["a", "b"]) for _ in recs]
    stmt = ("CREATE TABLE x AS SELECT card, TOPK(amount, 3) AS t, COLLECT_LIST(amount) AS l, "
            "LATEST_BY_OFFSET(amount) AS last, EARLIEST_BY_OFFSET(amount) AS first, COUNT_DISTINCT(country) AS dc, "
            "STDDEV_SAMP(amount) AS sd FROM pay WINDOW HOPPING (SIZE 40 MILLISECONDS, ADVANCE BY 20 MILLISECONDS) "
            "GROUP BY card EMIT CHANGES")
    one = _driver(stmt)
    for r, k in zip(recs, keys):
        one.send(r, key=k)
    many = _driver(stmt)
    i = 0
    while i < len(recs):  # a batch holds one key (the driver keys a batch with one key)
        j = i
        while j < len(recs) and keys[j] == keys[i] and j - i < rnd.randint(1, 9):
            j += 1
        many.send(*recs[i:max(j, i + 1)], key=keys[i])
        i = max(j, i + 1)
    strip = [{k: v for k, v in r.items() if k != "SD"} for r in one.outputs]
    assert [{k: v for k, v in r.items() if k != "SD"} for r in many.outputs] == strip
    assert [r["SD"] for r in many.outputs] == pytest.approx([r["SD"] for r in one.outputs], nan_ok=True)


def test_emit_final_windows_hold_their_own_records() -> None:
    d = _driver("CREATE TABLE w AS SELECT card, TOPK(amount, 2) AS top2, COLLECT_LIST(amount) AS l, "
                "LATEST_BY_OFFSET(amount) AS last, EARLIEST_BY_OFFSET(amount) AS first FROM pay "
                "WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 0 SECONDS) GROUP BY card EMIT FINAL")
    d.send({"amount": 3, "ts": T0 + 10}, {"amount": 8, "ts": T0 + 20}, key="a")
    d.send({"amount": 1, "ts": T0 + 5}, key="a")  # out of order, same window: counted, latest by offset
    assert d.send({"amount": 4, "ts": T0 + M}, key="a") == [
        {"TOP2": [8.0, 3.0], "L": [3.0, 8.0, 1.0], "LAST": 1.0, "FIRST": 3.0}]
    assert d.send({"amount": 0, "ts": T0 + 2 * M}, key="a") == [
        {"TOP2": [4.0], "L": [4.0], "LAST": 4.0, "FIRST": 4.0}]


@pytest.mark.parametrize("expr, message", [
    ("TOPK(amount)", "TOPK takes a column and a positive whole k"),
    ("TOPK(amount, 0)", "TOPK takes a column and a positive whole k"),
    ("LATEST_BY_OFFSET(amount, 3)", "with an N"),
    ("EARLIEST_BY_OFFSET(amount, maybe)", "with an N"),
    ("COLLECT_LIST(amount, 2)", "COLLECT_LIST takes one argument"),
    ("COLLECT_SET(amount)", "aggregate COLLECT_SET is not supported yet"),
    ("TOPK(*, 2)", r"TOPK\(\*\) is not valid"),
])
def test_aggregate_argument_refusals(expr: str, message: str) -> None:
    cat = Catalog()
    cat.execute(DDL)
    with pytest.raises(QueryError, match=message) as info:
        cat.compile(f"CREATE TABLE x AS SELECT card, {expr} AS v FROM pay GROUP BY card EMIT CHANGES")
    assert info.value.hint
