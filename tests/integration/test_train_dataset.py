"""Dataset against a real broker: pinning, committed reads, label join, splits, manifest, epochs."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import orjson
import polars as pl
import pytest

from streamml import headers as H
from streamml.config import Settings
from streamml.kafka import clients
from streamml.kafka.transactions import TransactionalSession
from streamml.train import Dataset, TopicRange

# two days ago, hour-aligned: record timestamps must stay inside the topics' retention (7 days)
T0 = (int(time.time()) // 3600 - 48) * 3_600_000


def produce(settings: Settings, topic: str, records: list[dict], *, partition: int | None = None,
            timestamps: list[int] | None = None, hdrs: list | None = None) -> None:
    p = clients.producer(settings, linger_ms=1)
    for i, r in enumerate(records):
        kw = {} if partition is None else {"partition": partition}
        if timestamps is not None:
            kw["timestamp"] = timestamps[i]
        p.produce(topic, orjson.dumps(r), str(r.get("event_id", i)).encode(), headers=hdrs, **kw)
    assert p.flush(30) == 0


def events(n: int, start: int = 0) -> list[dict]:
    rng = np.random.default_rng(start)
    return [{"event_id": f"e{i}", "event_time": T0 + i * 1000, "amount": float(rng.gamma(2.0, 30.0)),
             "hour": int(i % 24), "merchant": f"m{i % 7}"} for i in range(start, start + n)]


def test_aborted_transaction_records_never_appear(settings: Settings, new_topic: Callable[..., str]) -> None:
    topic = new_topic("feat", partitions=2)
    p = clients.producer(settings, transactional_id=f"tx-{time.time_ns()}")
    tx = TransactionalSession(p)
    committed = events(40)
    with tx.transaction():
        for r in committed[:20]:
            p.produce(topic, orjson.dumps(r), r["event_id"].encode())
    with pytest.raises(RuntimeError):
        with tx.transaction():
            for r in events(30, start=1000):
                p.produce(topic, orjson.dumps({**r, "aborted": True}), r["event_id"].encode())
            p.flush(10)
            raise RuntimeError("abort this batch")
    with tx.transaction():
        for r in committed[20:]:
            p.produce(topic, orjson.dumps(r), r["event_id"].encode())
    ds = Dataset.from_topics(settings, topic)
    df = ds.to_polars(with_metadata=True)
    assert sorted(df["event_id"].to_list()) == sorted(r["event_id"] for r in committed)
    assert "aborted" not in df.columns
    # the aborted records did reach the log: the ranges cover their offsets
    assert len(ds) > 40
    # order is (partition, offset)
    keys = list(zip(df["_partition"].to_list(), df["_offset"].to_list()))
    assert keys == sorted(keys)


def test_pinned_ranges_replay_identically_and_ignore_later_writes(settings: Settings,
                                                                  new_topic: Callable[..., str]) -> None:
    topic = new_topic("feat", partitions=3)
    produce(settings, topic, events(300))
    ds = Dataset.from_topics(settings, topic, batch_rows=64)
    first = ds.to_polars()
    produce(settings, topic, events(50, start=300))
    again = Dataset.from_manifest(settings, ds.manifest()).to_polars()
    assert first.height == 300 and first.equals(again)
    assert set(ds.features) == {"amount", "hour"}
    batches = list(ds.iter_batches(batch_rows=64))
    assert all(b.height <= 64 for b in batches) and sum(b.height for b in batches) == 300
    assert pl.concat(batches).equals(first)
    # to Arrow, pandas, NumPy agree
    X, y = ds.to_numpy()
    assert y is None and X.shape == (300, 2)
    assert ds.to_arrow().num_rows == 300 and len(ds.to_pandas()) == 300
    np.testing.assert_allclose(np.sort(X[:, 0]), np.sort([r["amount"] for r in events(300)]))
    # a fixed schema: only those columns, those types, every batch alike; it survives the manifest
    typed = Dataset.from_topics(settings, topic, schema={"event_id": "String", "event_time": "Int64",
                                                         "amount": pl.Float32}, end_time_ms=None)
    tdf = Dataset.from_manifest(settings, typed.manifest()).to_polars()
    assert tdf.schema == pl.Schema({"event_id": pl.String, "event_time": pl.Int64, "amount": pl.Float32})
    assert tdf.height == 350 and set(first["event_id"]) < set(tdf["event_id"])


def test_time_range_resolves_to_exact_offsets(settings: Settings, new_topic: Callable[..., str]) -> None:
    topic = new_topic("feat", partitions=1)
    recs = events(100)
    produce(settings, topic, recs, timestamps=[r["event_time"] for r in recs])
    ds = Dataset.from_topics(settings, topic, start_time_ms=T0 + 10_000, end_time_ms=T0 + 40_000)
    assert ds.ranges == (TopicRange(topic, 0, 10, 40),)
    assert ds.to_polars()["event_id"].to_list() == [f"e{i}" for i in range(10, 40)]


def test_labels_join_point_in_time(settings: Settings, new_topic: Callable[..., str]) -> None:
    feats, labels = new_topic("feat", partitions=2), new_topic("labels", partitions=2)
    recs = events(60)
    produce(settings, feats, recs)
    # label arrival = record timestamp; event i gets its label (i % 3 == 0) 5 s after the event,
    # except: e1 gets a correction later, e2's label predates the event, e4's arrives after as_of
    arrivals, lab = [], []
    for r in recs:
        i = int(r["event_id"][1:])
        lab.append({"event_id": r["event_id"], "label": int(i % 3 == 0)})
        arrivals.append(r["event_time"] + 5_000)
    lab.append({"event_id": "e1", "label": 1})
    arrivals.append(T0 + 1000 + 9_000)
    arrivals[2] = T0 + 2000 - 1
    arrivals[4] = T0 + 10 ** 8
    produce(settings, labels, lab, timestamps=arrivals)
    as_of = T0 + 10 ** 7
    ds = Dataset.from_topics(settings, feats, labels=labels, as_of_ms=as_of, unlabelled="keep")
    got = dict(zip(*ds.to_polars().select("event_id", "label").to_dict(as_series=False).values()))
    assert got["e1"] == 1 and got["e2"] is None and got["e3"] == 1 and got["e0"] == 1 and got["e5"] == 0
    # e4's label arrived after as_of
    assert got["e4"] is None
    expected_labelled = 60 - 2
    assert sum(v is not None for v in got.values()) == expected_labelled
    # a max label delay of 6 s drops e1's late correction but keeps its first label
    ds6 = Dataset.from_topics(settings, feats, labels=labels, as_of_ms=as_of, max_label_delay_ms=6_000)
    got6 = dict(zip(*ds6.to_polars().select("event_id", "label").to_dict(as_series=False).values()))
    assert got6["e1"] == 0 and "e2" not in got6 and len(got6) == expected_labelled
    # splits by time: point-in-time labels for the train window end at its upper bound
    train, test = ds.split(by="time", at=[T0 + 30_000])
    tr = train.to_polars()
    assert tr["event_time"].max() < T0 + 30_000
    # e27's label arrives at T0+32s > window end: unlabelled in train (kept as null)
    assert tr.filter(pl.col("event_id") == "e27")["label"].to_list() == [None]
    assert tr.filter(pl.col("event_id") == "e24")["label"].to_list() == [1]
    assert test.to_polars()["event_time"].min() >= T0 + 30_000


def test_offset_split_epochs_manifest_headers(settings: Settings, new_topic: Callable[..., str]) -> None:
    topic = new_topic("feat", partitions=2)
    hdrs = [(H.SCHEMA, b"payments"), (H.SCHEMA_VERSION, b"3"), ("sm.pipeline_hash", b"abc123")]
    produce(settings, topic, events(200), hdrs=hdrs)
    ds = Dataset.from_topics(settings, topic, seed=7)
    a, b = ds.split(by="offset", fractions=(0.75, 0.25))
    assert sum(len(r) for r in a.ranges) + sum(len(r) for r in b.ranges) == 200
    assert a.to_polars().height + b.to_polars().height == 200
    assert set(a.to_polars()["event_id"]).isdisjoint(b.to_polars()["event_id"])
    seen = []
    for _epoch, batches in ds.epochs(2, batch_rows=50):
        rows = pl.concat(list(batches))
        seen.append(rows["event_id"].to_list())
    assert sorted(seen[0]) == sorted(seen[1]) and len(seen[0]) == 200 and seen[0] != seen[1]
    m = ds.manifest()
    assert m["schema_versions"] == ["payments:3"] and m["pipeline_hash"] == "abc123"
    assert m["seed"] == 7 and m["rows"] == 200 and m["topics"] == [topic]
    assert {r["partition"] for r in m["spec"]["ranges"]} == {0, 1}
    assert "scikit-learn" in m["libraries"] and "polars" in m["libraries"]
