"""The Spark bridge on local Spark (local[2]) against the session's Kafka broker.

One SparkSession for the whole module (its start, ~10-20 s, is paid once); Spark's Kafka
connector comes from the streamml cache (fetched from Maven Central the first time).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import orjson
import polars as pl
import pytest

pytest.importorskip("pyspark", reason="the Spark bridge tests need PySpark: pip install 'streamml[spark]'")

from streamml import headers as H  # noqa: E402
from streamml.config import Settings  # noqa: E402
from streamml.errors import ModelError  # noqa: E402
from streamml.kafka import clients  # noqa: E402
from streamml.kafka.admin import ensure_topic  # noqa: E402
from streamml.registry import Registry  # noqa: E402
from streamml.registry.formats import export_model  # noqa: E402
from streamml.spark import publish_spark_ml, score_stream, session, to_spark  # noqa: E402
from streamml.train import Dataset, SklearnClassifier, TrainingJob  # noqa: E402

T0 = (int(time.time()) // 3600 - 48) * 3_600_000
FEATS = ["amount", "velocity", "distance", "hour"]


def fraud_data(n: int, seed: int = 0, start: int = 0) -> tuple[list[dict], list[tuple[dict, int]]]:
    rng = np.random.default_rng(seed)
    events, labels = [], []
    for i in range(start, start + n):
        amount, velocity, distance = rng.gamma(2, 40), rng.poisson(2), rng.exponential(10)
        logit = -6 + 0.02 * amount + 0.6 * velocity + 0.08 * distance
        fraud = int(rng.random() < 1 / (1 + np.exp(-logit)))
        et = T0 + i * 1000
        events.append({"event_id": f"e{i}", "event_time": et, "amount": round(float(amount), 2),
                       "velocity": int(velocity), "distance": round(float(distance), 3), "hour": int(i // 60 % 24)})
        labels.append(({"event_id": f"e{i}", "label": fraud}, et + int(rng.integers(5_000, 60_000))))
    return events, labels


def produce(settings: Settings, topic: str, events: list[dict]) -> None:
    p = clients.producer(settings)
    for e in events:
        p.produce(topic, orjson.dumps(e), e["event_id"].encode(), timestamp=e["event_time"])
    assert p.flush(30) == 0


def load_topics(settings: Settings, n: int) -> tuple[str, str]:
    feats, labels = settings.topic("features", "pay"), settings.topic("labels", "pay")
    ensure_topic(settings, feats, 2)
    ensure_topic(settings, labels, 2)
    events, labs = fraud_data(n)
    produce(settings, feats, events)
    p = clients.producer(settings)
    for rec, ts in labs:
        # some labels arrive after the cut-off and one event gets a correction: the rule must pick
        p.produce(labels, orjson.dumps(rec), rec["event_id"].encode(), timestamp=ts)
    p.produce(labels, orjson.dumps({"event_id": "e3", "label": 1}), b"e3", timestamp=T0 + 3000 + 70_000)
    assert p.flush(30) == 0
    return feats, labels


@pytest.fixture(scope="module")
def spark(bootstrap: str) -> Iterator[Any]:
    t0 = time.monotonic()
    s = session(Settings.load(config_file=None), app_name="streamml-tests",
                conf={"spark.sql.execution.arrow.maxRecordsPerBatch": "500"})
    print(f"SparkSession started in {time.monotonic() - t0:.1f}s")
    yield s
    s.stop()


def test_to_spark_rows_equal_streamml_rows_label_join_included(settings: Settings, spark: Any) -> None:
    feats, labels = load_topics(settings, 1200)
    # as_of cuts labels that arrived late: rows near the end are unlabelled and dropped by both readers
    ds = Dataset.from_topics(settings, feats, labels=labels, as_of_ms=T0 + 1100 * 1000)
    ours = ds.to_polars(with_metadata=True).sort("_partition", "_offset")
    sds = ds.to_spark(spark)
    theirs = sds.collect(with_metadata=True)
    assert set(theirs["_topic"].to_list()) == {feats}
    theirs = theirs.drop("_topic").select(ours.columns)
    assert 800 < ours.height < 1200 and theirs.height == ours.height
    assert theirs.to_dicts() == ours.to_dicts()           # same values, same order key, same labels
    assert ours.filter(pl.col("event_id") == "e3")["label"].to_list() == [1]  # the correction won
    assert sds.df.rdd.getNumPartitions() == 2               # one Spark partition per Kafka partition
    assert sds.manifest() == Dataset.from_manifest(settings, ds.manifest()).manifest()
    # a split pins the same rule and window on the Spark side too
    train, held = ds.split(by="time", fractions=(0.7, 0.3))
    assert to_spark(held, spark).collect().to_dicts() == held.to_polars().to_dicts()


def test_sklearn_on_spark_rows_is_byte_identical_to_training_job(settings: Settings, spark: Any) -> None:
    load_topics(settings, 1500)
    job = TrainingJob("fraud", "pay", SklearnClassifier(), labels_topic="pay", features=FEATS, seed=11)
    d = job.run(settings).descriptor
    sds = Dataset.from_manifest(settings, d.manifest["train"]).to_spark(spark)
    model = SklearnClassifier()(sds)
    art = export_model(model, sds.features)
    assert art.sha256 == d.sha256 and art.data == Registry(settings).fetch(d)
    assert sds.manifest()["fingerprint"] == d.manifest["train"]["fingerprint"]
    assert sds.manifest()["rows"] == d.manifest["train"]["rows"]
    # a different seed or fewer rows would give other bytes: the comparison can fail
    fewer = Dataset.from_manifest(settings, d.manifest["train"]).split(by="offset", fractions=(0.5, 0.5))[0]
    assert export_model(SklearnClassifier()(to_spark(fewer, spark)), FEATS).sha256 != d.sha256


def test_spark_ml_model_is_refused_with_the_reason(settings: Settings, spark: Any) -> None:
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import VectorAssembler

    load_topics(settings, 400)
    sds = Dataset.from_topics(settings, "pay", labels="pay", features=FEATS).to_spark(spark)
    frame = VectorAssembler(inputCols=FEATS, outputCol="features").transform(sds.df)
    lr = LogisticRegression(maxIter=5).fit(frame)
    with pytest.raises(ModelError) as err:
        publish_spark_ml(Registry(settings), lr, name="fraud", features=FEATS, spark=spark,
                         manifest=sds.manifest())
    assert "onnxmltools" in str(err.value) and "LogisticRegressionModel" in str(err.value)
    assert Registry(settings).latest("fraud", None) is None  # nothing was published


def _predictions(settings: Settings, topic: str) -> list[Any]:
    from streamml.kafka.read import pin, read_ranges

    return [m for b in read_ranges(settings, pin(settings, topic)) for m in b]


def test_structured_streaming_scores_and_swaps_without_restart(settings: Settings, spark: Any,
                                                               tmp_path: Path) -> None:
    feats = settings.topic("features", "live")
    ensure_topic(settings, feats, 2)
    events, labs = fraud_data(600, seed=3)
    reg = Registry(settings)
    rows = pl.DataFrame(events)
    y = np.array([lab["label"] for lab, _ in labs])
    from sklearn.linear_model import LogisticRegression

    m1 = LogisticRegression(max_iter=200).fit(rows.select(FEATS).to_numpy().astype(np.float32), y)
    reg.publish(m1, name="fraud", features=FEATS, stage="production")
    produce(settings, feats, events[:300])
    q = score_stream(spark, settings, "fraud", feats, checkpoint=str(tmp_path / "ckpt"), trigger_s=0.5)
    out = settings.topic("predictions", "fraud")
    try:
        _wait(lambda: len({m.key() for m in _predictions(settings, out)}) >= 300, 120, q)
        qid = q.id
        m2 = LogisticRegression(max_iter=200, C=0.01).fit(rows.select(FEATS).to_numpy().astype(np.float32), y)
        d2 = reg.publish(m2, name="fraud", features=FEATS, stage="production")
        assert d2.version == 2
        produce(settings, feats, events[300:])
        _wait(lambda: len({m.key() for m in _predictions(settings, out)}) >= 600, 120, q)
        assert q.isActive and q.id == qid and q.exception() is None   # the same query, never restarted
    finally:
        q.stop()
    preds = _predictions(settings, out)
    seen: dict[str, list[int]] = {}
    last: dict[int, int] = {}
    for m in preds:                                                   # read_committed, in offset order
        v = orjson.loads(m.value())
        h = H.as_dict(m.headers())
        assert h[H.MODEL] == "fraud" and int(h[H.MODEL_VERSION]) == v["model_version"]
        assert h[H.EVENT_ID] == v["event_id"] == m.key().decode() and h[H.COMPONENT] == "spark.serve.fraud"
        assert v["model_version"] >= last.get(m.partition(), 0), "a version went backwards"
        last[m.partition()] = v["model_version"]
        seen.setdefault(v["event_id"], []).append(v["model_version"])
    assert set(seen) == {e["event_id"] for e in events}              # every event scored at least once
    late = [e["event_id"] for e in events[300:]]
    assert all(max(seen[i]) == 2 for i in late)                      # produced after the promotion: v2
    assert all(min(seen[e["event_id"]]) == 1 for e in events[:50])   # scored before it: v1


def _wait(cond: Any, timeout: float, q: Any) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if not q.isActive:
            raise AssertionError(f"the query stopped: {q.exception()}")
        time.sleep(0.5)
    raise AssertionError(f"timed out; last progress: {q.lastProgress}")


