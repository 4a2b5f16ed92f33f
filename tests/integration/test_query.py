"""The query API against a real broker: snapshots, SQL vs DuckDB over Parquet, tail, deploy."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import duckdb
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import streamml.query as q
from streamml.config import Settings
from streamml.errors import QueryError
from streamml.kafka import clients, ensure_topic
from streamml.kafka.transactions import TransactionalSession


def _payment(i: int) -> dict[str, Any]:
    return {"card_id": f"c{i % 7}", "amount": round((i * 37) % 500 + 0.25, 2), "country": ["FR", "DE", "US"][i % 3],
            "n": i}


def produce(settings: Settings, topic: str, rows: list[dict[str, Any]], key: str | None = "card_id",
            timestamps: list[int] | None = None) -> None:
    p = clients.producer(settings)
    for j, r in enumerate(rows):
        kw: dict[str, Any] = {"timestamp": timestamps[j]} if timestamps else {}
        p.produce(topic, orjson.dumps(r), str(r[key]).encode() if key else None, **kw)
    assert p.flush(30) == 0


@pytest.fixture
def payments(settings: Settings) -> tuple[str, list[dict[str, Any]]]:
    """<ns>.raw.payments (3 partitions) with 300 committed records and one aborted transaction."""
    topic = settings.topic("raw", "payments")
    ensure_topic(settings, topic, 3)
    rows = [_payment(i) for i in range(300)]
    produce(settings, topic, rows[:150])
    p = clients.producer(settings, transactional_id=f"{settings.namespace}-abort")
    tx = TransactionalSession(p)
    with pytest.raises(RuntimeError):
        with tx.transaction():
            for _ in range(40):
                p.produce(topic, orjson.dumps({"card_id": "ghost", "amount": 1e6, "country": "XX", "n": -1}), b"ghost")
            p.flush(10)
            raise RuntimeError("aborted on purpose")
    with tx.transaction():
        for r in rows[150:]:
            p.produce(topic, orjson.dumps(r), r["card_id"].encode())
    q.use(settings)
    return topic, rows


def test_topic_views_read_committed_records_with_metadata(settings: Settings, payments: Any) -> None:
    topic, rows = payments
    t = q.topic("payments")
    assert t.name == topic and t.partitions() == 3
    df = t.to_polars()
    assert df.height == 300 and "ghost" not in df["card_id"].to_list()
    assert sorted(df["n"].to_list()) == list(range(300))
    assert df.columns[-5:] == ["_topic", "_partition", "_offset", "_timestamp", "_key"]
    assert (df["_key"] == df["card_id"]).all()
    for _, part in df.group_by("_partition"):
        assert part["_offset"].to_list() == sorted(part["_offset"].to_list())
    assert t.to_pandas().shape == df.shape and t.to_arrow().num_rows == 300
    head = t.head(5)
    assert head.height == 5 and head["_timestamp"].is_sorted()
    last2 = t.range(start=-2).to_polars()  # the last two offsets of each partition (markers included)
    ends = {p: e for p, (_, e) in t.offsets().items()}
    assert last2.height <= 6 and all(o >= ends[p] - 2 for p, o in zip(last2["_partition"], last2["_offset"]))
    first = t.range(start={0: 0, 1: 0, 2: 0}, end=3).to_polars()
    assert first.height == 9 and set(first["_offset"].to_list()) == {0, 1, 2}


def test_range_by_time(settings: Settings, new_topic: Callable[..., str]) -> None:
    topic = new_topic("timed", partitions=2)
    base = int(datetime(2026, 1, 1, 12, tzinfo=timezone.utc).timestamp() * 1000)
    rows = [{"card_id": f"c{i}", "i": i} for i in range(20)]
    produce(settings, topic, rows, timestamps=[base + i * 60_000 for i in range(20)])
    t = q.topic(topic, settings=settings)
    got = t.range(start="2026-01-01T12:05:00Z", end=datetime(2026, 1, 1, 12, 10, tzinfo=timezone.utc)).to_polars()
    assert sorted(got["i"].to_list()) == [5, 6, 7, 8, 9]
    assert t.range(start="2026-01-01T13:00:00Z").to_polars().height == 0


def test_short_names_resolve_and_ambiguity_is_an_error(settings: Settings, payments: Any) -> None:
    ensure_topic(settings, settings.topic("features", "payments"), 1)
    assert q.topic("payments").name == settings.topic("raw", "payments")  # raw before features
    assert q.topic("features.payments").to_polars().height == 0
    ensure_topic(settings, settings.topic("labels", "fraud"), 1)
    assert q.topic("fraud").name == settings.topic("labels", "fraud")
    ensure_topic(settings, settings.topic("metrics", "fraud"), 1)
    with pytest.raises(QueryError, match="ambiguous") as err:
        q.topic("fraud")
    assert settings.topic("metrics", "fraud") in str(err.value)
    assert q.topic("metrics.fraud").name == settings.topic("metrics", "fraud")
    with pytest.raises(QueryError, match="no topic named"):
        q.topic("nothing_here")


def _parquet(tmp_path: Path, name: str, rows: list[dict[str, Any]]) -> str:
    path = tmp_path / f"{name}.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def _same(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert a.columns == b.columns
    assert a.height == b.height
    key = a.columns
    a_s, b_s = a.sort(key, nulls_last=True), b.sort(key, nulls_last=True)
    for col in key:
        x, y = a_s[col].to_list(), b_s[col].to_list()
        if a_s[col].dtype.is_float() or b_s[col].dtype.is_float():
            assert x == pytest.approx(y, rel=1e-9), col
        else:
            assert x == y, col


def test_sql_equals_duckdb_over_parquet_of_the_same_records(settings: Settings, payments: Any,
                                                            tmp_path: Path) -> None:
    topic, rows = payments
    cards = [{"card_id": f"c{i}", "holder": f"h{i}", "limit_": 100 * (i + 1)} for i in range(7)]
    ensure_topic(settings, settings.topic("raw", "cards"), 1)
    produce(settings, settings.topic("raw", "cards"), cards)
    pay_pq, cards_pq = _parquet(tmp_path, "payments", rows), _parquet(tmp_path, "cards", cards)
    statements = [
        "SELECT card_id, avg(amount) AS avg_amount, count(*) AS n FROM {payments} GROUP BY card_id",
        "SELECT country, sum(amount) AS total, max(n) AS last_n FROM {payments} WHERE amount > 100 GROUP BY country",
        "SELECT p.card_id, c.holder, sum(p.amount) AS spent, any_value(c.limit_) AS lim FROM {payments} p "
        "JOIN {cards} c ON p.card_id = c.card_id GROUP BY p.card_id, c.holder HAVING sum(p.amount) > 5000",
        "SELECT n, amount * 100 AS cents FROM {payments} WHERE country = 'FR' AND amount BETWEEN 50 AND 300",
        "WITH big AS (SELECT * FROM {payments} WHERE amount > 400) SELECT card_id, count(*) AS k FROM big GROUP BY 1",
    ]
    for template in statements:
        ours = q.sql(template.format(payments="payments", cards="raw.cards"))
        theirs = duckdb.connect().sql(template.format(payments=f"read_parquet('{pay_pq}')",
                                                      cards=f"read_parquet('{cards_pq}')")).pl()
        _same(ours, theirs)
    assert len(q.sql("SELECT * FROM payments LIMIT 7")) == 7
    assert isinstance(q.sql("SELECT count(*) AS n FROM payments", output="pandas")["n"][0].item(), int)
    full = q.sql(f'SELECT count(*) AS n, count(DISTINCT _partition) AS parts FROM "{topic}"').row(0)
    assert full == (300, 3)


def test_sql_errors_are_clear(settings: Settings, payments: Any, new_topic: Callable[..., str]) -> None:
    with pytest.raises(QueryError, match="does not parse"):
        q.sql("SELEC card_id FROM payments")
    with pytest.raises(QueryError, match="SQL failed") as err:
        q.sql("SELECT no_such_column FROM payments")
    assert "no_such_column" in str(err.value)
    empty = new_topic("empty")
    with pytest.raises(QueryError) as err:
        q.sql(f'SELECT amount FROM "{empty}"')
    assert err.value.hint and "no records" in err.value.hint
    assert q.sql(f'SELECT count(*) AS n FROM "{empty}"').row(0) == (0,)


def test_tail_delivers_new_records_in_partition_order_and_stops(settings: Settings, payments: Any) -> None:
    topic, _ = payments
    live = q.tail("payments", max_records=60, timeout=60)
    assert live.start_offsets and all(o > 0 for o in live.start_offsets.values())
    new = [{"card_id": f"c{i % 5}", "amount": 1000 + i, "country": "FR", "n": 1000 + i} for i in range(60)]
    threading.Timer(0.5, produce, args=(settings, topic, new)).start()
    got = list(live)
    assert sorted(r["n"] for r in got) == [r["n"] for r in new]  # none of the 300 older records
    by_key: dict[str, list[int]] = {}
    for r in got:
        by_key.setdefault(r["_key"], []).append(r["n"])
    for ns in by_key.values():  # one key, one partition: production order
        assert ns == sorted(ns)
    for p in {r["_partition"] for r in got}:
        offs = [r["_offset"] for r in got if r["_partition"] == p]
        assert offs == sorted(offs) and offs[0] == live.start_offsets[p]
    assert repr(live).endswith("closed, 60 delivered>")


def test_tail_filters_and_stops_on_close_and_idle(settings: Settings, payments: Any) -> None:
    topic, _ = payments
    with q.tail("payments", where=pl.col("amount") > 2000, timeout=30) as live:
        produce(settings, topic, [{"card_id": "c1", "amount": a, "country": "DE", "n": 0} for a in (10, 2500, 3000)])
        seen = []
        for rec in live:
            seen.append(rec["amount"])
            if len(seen) == 2:
                live.close()
    assert seen == [2500, 3000]
    started = time.monotonic()
    quiet = q.tail("payments", where="country = 'nowhere'", idle_timeout=1.0)
    produce(settings, topic, [{"card_id": "c1", "amount": 1, "country": "FR", "n": 0}])
    assert list(quiet) == [] and time.monotonic() - started < 20
    with pytest.raises(QueryError, match="closed"):
        list(quiet)
    with pytest.raises(QueryError, match="cannot parse the filter"):
        q.tail("payments", where="amount >>> 3")
    early = q.tail("payments", from_="beginning", where="amount > 400", max_records=5)
    assert [r["amount"] > 400 for r in early] == [True] * 5
    ends = q.topic("payments").offsets()
    recent = q.tail("payments", from_=-3, timeout=2).collect()  # the last 3 offsets of each partition, then stop
    assert recent.height >= 1 and all(o >= ends[p][1] - 3 for p, o in zip(recent["_partition"], recent["_offset"]))


CONTINUOUS = ("SELECT card_id, amount * 100 AS cents, upper(country) AS cc, CASE WHEN amount > 400 THEN 'high' "
              "ELSE 'normal' END AS band FROM payments WHERE amount > 150 AND country <> 'US' EMIT CHANGES")


def test_deployed_statement_writes_the_rows_the_notebook_query_shows(settings: Settings, payments: Any) -> None:
    topic, rows = payments
    preview = q.sql(CONTINUOUS)
    assert preview.columns == ["card_id", "cents", "cc", "band"]
    expected = [r for r in rows if r["amount"] > 150 and r["country"] != "US"]
    assert preview.height == len(expected) > 50
    with q.deploy(CONTINUOUS, to="big_payments", max_batch=40) as d:
        assert d.sink == settings.topic("features", "big_payments")
        d.wait(preview.height, timeout=90)
    assert d.stats["batches"] > 1  # batch by batch, not in one go
    out = q.topic("features.big_payments").to_polars()
    _same(out.select(preview.columns), preview)
    assert (out["_key"] == out["card_id"]).all()  # each output keyed like its input record
    again = q.sql("SELECT card_id, cents, cc, band FROM features.big_payments")
    _same(again, preview)

    # a restarted deployment resumes where it committed: new records only, nothing twice
    produce(settings, topic, [_payment(i) for i in range(2000, 2060)])
    preview2 = q.sql(CONTINUOUS)
    assert preview2.height > preview.height
    with q.deploy(CONTINUOUS, to="big_payments", max_batch=40) as d2:
        d2.wait(preview2.height - preview.height, timeout=90)
    assert d2.stats["in"] == 60
    _same(q.topic("features.big_payments").to_polars().select(preview.columns), preview2)


def test_changes_yields_the_statement_over_live_records(settings: Settings, payments: Any) -> None:
    topic, _ = payments
    new = [_payment(i) for i in range(1000, 1100)]
    with q.changes(CONTINUOUS, max_records=200, idle_timeout=3) as live:
        threading.Timer(0.3, produce, args=(settings, topic, new)).start()
        got = live.collect()
    expected = [r for r in new if r["amount"] > 150 and r["country"] != "US"]
    assert sorted(got["cents"].to_list()) == pytest.approx(sorted(r["amount"] * 100 for r in expected))
    assert got.columns == ["card_id", "cents", "cc", "band"]


def test_statements_that_cannot_run_batch_by_batch_are_refused(settings: Settings, payments: Any) -> None:
    with pytest.raises(QueryError, match="GROUP BY over a stream needs a window"):
        q.deploy("SELECT card_id, count(*) FROM payments GROUP BY card_id EMIT CHANGES", to="x")
    with pytest.raises(QueryError, match="would write to the topic it reads"):
        q.deploy("SELECT * FROM raw.payments EMIT CHANGES", to="raw.payments")
    with pytest.raises(QueryError, match="cannot deploy: aggregate"):
        q.sql("SELECT sum(amount) FROM payments EMIT CHANGES")
    assert settings.topic("features", "x") not in __import__("streamml.kafka", fromlist=["list_topics"]) \
        .list_topics(settings)
