"""Train a fraud model from topics, publish it as data, and retrain on a control command.

Run: ``python examples/train_fraud.py`` (uses STREAMML_BOOTSTRAP_SERVERS, or starts the local cluster).

1. card payments go to ``<ns>.features.payments``; the chargeback verdicts arrive later on
   ``<ns>.labels.payments`` (label record timestamps = when the verdict arrived);
2. a :class:`Dataset` pins both topics to exact offsets and joins features to labels
   point-in-time (a label counts only once it had arrived);
3. a :class:`TrainingJob` trains a classifier, evaluates it on the newest 20 % (by event
   time), publishes it to ``<ns>.models`` as ONNX and, there being no production model yet,
   promotes it;
4. a :class:`Retrainer` waits on ``<ns>.control``; ``{"command": "retrain", "model": "fraud"}``
   makes it train an IsolationForest challenger, which is scored against production on the
   same held-out window and published — but not promoted, since it is not better.
"""

import time
import uuid

import numpy as np
import orjson

import streamml
from streamml.kafka import clients
from streamml.kafka.admin import ensure_topic
from streamml.registry import Registry
from streamml.train import (
    Dataset,
    IsolationForestTrainer,
    Retrainer,
    SklearnClassifier,
    TrainingJob,
    reproduce,
    request_retrain,
)

settings = streamml.connect()
settings = settings.with_(namespace=f"{settings.namespace}-train-{uuid.uuid4().hex[:6]}")  # a clean run each time
features, labels = settings.topic("features", "payments"), settings.topic("labels", "payments")
ensure_topic(settings, features, 3)
ensure_topic(settings, labels, 3)

# 1. events and their delayed labels (fraud is likelier for big, fast, far-away payments)
rng = np.random.default_rng(7)
t0 = int(time.time() * 1000) - 6 * 3_600_000  # six hours ago (inside the topics' retention)
p = clients.producer(settings)
for i in range(3000):
    amount, velocity, distance = rng.gamma(2, 40), rng.poisson(2), rng.exponential(10)
    fraud = rng.random() < 1 / (1 + np.exp(6 - 0.02 * amount - 0.6 * velocity - 0.08 * distance))
    event = {"event_id": f"p{i}", "event_time": t0 + i * 1000, "amount": round(float(amount), 2),
             "velocity": int(velocity), "distance": round(float(distance), 2)}
    p.produce(features, orjson.dumps(event), event["event_id"].encode(), timestamp=event["event_time"])
    p.produce(labels, orjson.dumps({"event_id": event["event_id"], "label": int(fraud)}), event["event_id"].encode(),
              timestamp=event["event_time"] + int(rng.integers(10_000, 300_000)))  # verdict 10 s .. 5 min later
p.flush(30)

# 2. a pinned, replayable dataset
ds = Dataset.from_topics(settings, "payments", labels="payments")
train, test = ds.split(by="time", fractions=(0.8, 0.2))
X, y = train.to_numpy()
print(f"pinned {ds}: {X.shape[0]} labelled training rows, fraud rate {y.mean():.3f}, features {train.features}")

# 3. train, evaluate, publish, promote
registry = Registry(settings)
job = TrainingJob("fraud", "payments", SklearnClassifier(), labels_topic="payments", metric="roc_auc", margin=0.005)
first = job.run(settings, registry)
print(f"{first.descriptor.ref}: roc_auc={first.candidate_score:.4f} promoted={first.promoted}")
# the manifest and seed rebuild the same bytes
assert reproduce(settings, first.descriptor.manifest, SklearnClassifier()).sha256 == first.descriptor.sha256

# 4. a retrain command on the control topic: an IsolationForest challenger
challenger = TrainingJob("fraud", "payments", IsolationForestTrainer(), labels_topic="payments", margin=0.005)
retrainer = Retrainer(settings, challenger, registry=registry)
request_retrain(settings, "fraud", reason="example")
(second,) = retrainer.run(max_runs=1, timeout=60)
retrainer.close()
print(f"{second.descriptor.ref}: roc_auc={second.candidate_score:.4f} vs production {second.production_score:.4f}"
      f" -> promoted={second.promoted}")
for d in registry.list("fraud"):
    print(f"  v{d.version} {d.stage:<10} {d.format} {d.size:>8,} B  sha256 {d.sha256[:12]}  {d.metrics}")
assert registry.latest("fraud").version == first.version
