"""River online learning through Kafka agrees with River's own progressive_val_score."""

from __future__ import annotations

import orjson
from river import compose, evaluate, linear_model, metrics, preprocessing
from test_train_jobs import FEATS, fraud_data  # noqa: E402  (same folder, on sys.path)

from streamml.config import Settings
from streamml.kafka import clients
from streamml.kafka.admin import ensure_topic
from streamml.registry import Registry
from streamml.train import OnlineLearner


def _model() -> compose.Pipeline:
    return compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())


def _x(e: dict) -> dict:
    return {f: e[f] for f in FEATS}


def test_prequential_metric_equals_progressive_val_score(settings: Settings) -> None:
    events, labels = fraud_data(800, seed=3)
    topic = settings.topic("features", "paylab")
    ensure_topic(settings, topic, 1)
    p = clients.producer(settings)
    for e, (lab, _) in zip(events, labels):
        p.produce(topic, orjson.dumps({**e, "label": bool(lab["label"])}), e["event_id"].encode())
    assert p.flush(30) == 0
    learner = OnlineLearner(settings, _model(), name="river", features_topic=topic, features=FEATS,
                            metric=metrics.ROCAUC())
    report = learner.run(until_end=True, timeout=60)
    expected = evaluate.progressive_val_score(
        ((_x(e), bool(lab["label"])) for e, (lab, _) in zip(events, labels)), _model(), metrics.ROCAUC())
    assert report.examples == 800
    assert report.value == expected.get()
    # an accuracy metric (predict_one path) agrees too
    acc = OnlineLearner(settings, _model(), name="river", features_topic=topic, features=FEATS,
                        metric=metrics.Accuracy()).run(until_end=True, timeout=60)
    ref = evaluate.progressive_val_score(((_x(e), bool(lab["label"])) for e, (lab, _) in zip(events, labels)),
                                         _model(), metrics.Accuracy())
    assert acc.value == ref.get()


def test_joined_labels_stream_with_signed_snapshots(settings: Settings) -> None:
    events, labels = fraud_data(600, seed=4)
    feats, labs = settings.topic("features", "pay"), settings.topic("labels", "pay")
    ensure_topic(settings, feats, 2)
    ensure_topic(settings, labs, 2)
    p = clients.producer(settings)
    for e in events:
        p.produce(feats, orjson.dumps(e), e["event_id"].encode())
    for lab, _ in labels:
        p.produce(labs, orjson.dumps({**lab, "label": bool(lab["label"])}), lab["event_id"].encode())
    assert p.flush(30) == 0
    reg = Registry(settings, signing_key="online-signing-key")
    learner = OnlineLearner(settings, _model(), name="river", features_topic="pay", labels_topic="pay",
                            features=FEATS, snapshot_every=250, registry=reg, keep_order=True)
    report = learner.run(until_end=True, timeout=60)
    assert report.examples == 600 and sorted(report.order) == sorted(e["event_id"] for e in events)
    by_id = {e["event_id"]: e for e in events}
    y = {lab["event_id"]: bool(lab["label"]) for lab, _ in labels}
    expected = evaluate.progressive_val_score(((_x(by_id[i]), y[i]) for i in report.order), _model(),
                                              metrics.ROCAUC())
    assert report.value == expected.get()
    assert [d.version for d in report.snapshots] == [1, 2]
    assert report.snapshots[1].metrics["examples"] == 500
    loaded = reg.load("river@2")
    assert loaded.format == "pickle" and 0.0 <= loaded.score([_x(events[0])])[0] <= 1.0
