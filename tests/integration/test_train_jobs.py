"""Training jobs through Kafka: deterministic artifacts, champion/challenger, retraining triggers."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import orjson
import pytest

from streamml.config import Settings
from streamml.kafka import clients
from streamml.kafka.admin import ensure_topic
from streamml.registry import Registry
from streamml.train import (
    AutoencoderTrainer,
    Dataset,
    IsolationForestTrainer,
    Retrainer,
    SklearnClassifier,
    Trained,
    TrainingJob,
    reproduce,
    request_retrain,
)

# two days ago, hour-aligned: record timestamps must stay inside the topics' retention (7 days)
T0 = (int(time.time()) // 3600 - 48) * 3_600_000
FEATS = ["amount", "velocity", "distance", "hour"]


def fraud_data(n: int, seed: int = 0) -> tuple[list[dict], list[tuple[dict, int]]]:
    """Events whose fraud probability rises with amount, velocity and distance; labels 5-60 s later."""
    rng = np.random.default_rng(seed)
    events, labels = [], []
    for i in range(n):
        amount, velocity, distance = rng.gamma(2, 40), rng.poisson(2), rng.exponential(10)
        logit = -6 + 0.02 * amount + 0.6 * velocity + 0.08 * distance
        fraud = int(rng.random() < 1 / (1 + np.exp(-logit)))
        et = T0 + i * 1000
        events.append({"event_id": f"e{i}", "event_time": et, "amount": round(float(amount), 2),
                       "velocity": int(velocity), "distance": round(float(distance), 3), "hour": int(i // 60 % 24)})
        labels.append(({"event_id": f"e{i}", "label": fraud}, et + int(rng.integers(5_000, 60_000))))
    return events, labels


def load_topics(settings: Settings, n: int = 2000, seed: int = 0) -> tuple[str, str]:
    feats, labels = settings.topic("features", "pay"), settings.topic("labels", "pay")
    ensure_topic(settings, feats, 2)
    ensure_topic(settings, labels, 2)
    events, labs = fraud_data(n, seed)
    p = clients.producer(settings)
    for e in events:
        p.produce(feats, orjson.dumps(e), e["event_id"].encode(), timestamp=e["event_time"])
    for rec, ts in labs:
        p.produce(labels, orjson.dumps(rec), rec["event_id"].encode(), timestamp=ts)
    assert p.flush(30) == 0
    return feats, labels


def noise_trainer(ds: Dataset) -> Any:
    """A deliberately bad trainer: learns from the hour of day only."""
    from sklearn.linear_model import LogisticRegression

    X, y = ds.with_features(["hour"]).to_numpy()
    model = LogisticRegression(random_state=ds.seed).fit(X.astype(np.float32), y)
    return Trained(model, ("hour",))


noise_trainer.name = "noise"  # type: ignore[attr-defined]


@pytest.mark.parametrize("trainer", [SklearnClassifier(), IsolationForestTrainer(n_estimators=40),
                                     AutoencoderTrainer(max_iter=80)], ids=["classifier", "iforest", "autoencoder"])
def test_same_manifest_and_seed_give_byte_identical_artifacts(settings: Settings, trainer: Callable) -> None:
    load_topics(settings, 1500)
    job = TrainingJob("fraud", "pay", trainer, labels_topic="pay", features=FEATS, seed=11)
    res = job.run(settings)
    d = res.descriptor
    assert res.promoted and d.stage == "production" and d.decision["production"] is None
    assert d.manifest["train"]["seed"] == 11 and d.manifest["train"]["rows"] > 1000
    again = reproduce(settings, d.manifest, trainer)
    assert again.sha256 == d.sha256 and again.data == Registry(settings).fetch(d)
    other_seed = dict(d.manifest["train"], spec={**d.manifest["train"]["spec"], "seed": 12})
    if not isinstance(trainer, SklearnClassifier):  # logistic regression has no randomness to vary
        assert reproduce(settings, other_seed, trainer).sha256 != d.sha256
    # the model scores its held-out window as its recorded metric says
    held = Dataset.from_manifest(settings, d.manifest["holdout"]).with_features(FEATS).to_polars()
    from streamml.train import score_metric

    assert score_metric("roc_auc", held["label"].to_numpy(), Registry(settings).load(d).score(held)) == \
        pytest.approx(d.metrics["roc_auc"], abs=1e-9)


def test_retrain_command_publishes_and_only_better_candidates_are_promoted(settings: Settings) -> None:
    load_topics(settings, 2000)
    reg = Registry(settings)
    bad = TrainingJob("fraud", "pay", noise_trainer, labels_topic="pay", features=FEATS, margin=0.01)
    first = bad.run(settings, reg)
    assert first.promoted and first.version == 1
    good = TrainingJob("fraud", "pay", SklearnClassifier(), labels_topic="pay", features=FEATS, margin=0.01)
    retrainer = Retrainer(settings, good, registry=reg)
    assert retrainer.run_once(timeout=0.5) == []          # no trigger yet
    request_retrain(settings, "fraud", reason="drift alert")
    request_retrain(settings, "unknown-model")
    (res,) = retrainer.run(max_runs=1, timeout=60)
    assert res.version == 2 and res.promoted and res.reason.startswith("control")
    assert res.candidate_score > res.production_score + 0.01 and res.production_version == 1
    assert reg.latest("fraud").version == 2
    # now a worse candidate arrives through an alert on the control topic: published, not promoted
    worse = Retrainer(settings, bad, registry=reg)
    p = clients.producer(settings)
    p.produce(settings.topic("control"), orjson.dumps({"type": "alert", "model": "fraud", "alert": "quality"}))
    p.flush(10)
    (res3,) = worse.run(max_runs=1, timeout=60)
    d3 = reg.get("fraud", 3)
    assert not res3.promoted and d3.stage == "candidate" and reg.latest("fraud").version == 2
    assert d3.decision["promoted"] is False and d3.decision["production_version"] == 2
    assert d3.decision["candidate"] < d3.decision["production"]
    assert d3.decision["candidate"] == d3.metrics["roc_auc"] and d3.decision["reason"].startswith("alert")
    retrainer.close()
    worse.close()


def test_schedule_and_new_label_triggers(settings: Settings) -> None:
    feats, labels = load_topics(settings, 50)
    job = TrainingJob("fraud", "pay", SklearnClassifier(), labels_topic="pay")
    r = Retrainer(settings, job, control=False, every_s=3600, new_labels=20)
    assert r.due() == []
    p = clients.producer(settings)
    for i in range(19):
        p.produce(labels, orjson.dumps({"event_id": f"x{i}", "label": 0}))
    p.flush(10)
    assert r.due() == []
    p.produce(labels, orjson.dumps({"event_id": "x19", "label": 1}))
    p.flush(10)
    assert r.due() == [("fraud", "labels: 20 new labelled records")]
    s = Retrainer(settings, job, control=False, every_s=0.2)
    time.sleep(0.3)
    assert s.due() == [("fraud", "schedule: every 0.2s")]
