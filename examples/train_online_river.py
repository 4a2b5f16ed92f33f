"""Online learning with River from a features stream and a delayed labels stream.

Run: ``python examples/train_online_river.py`` (uses STREAMML_BOOTSTRAP_SERVERS, or starts the local cluster).

Each payment waits for its label; when both have arrived the model predicts it first, the
metric is updated, then the model learns it (prequential, test-then-train). Every 500
examples the model is published to the registry as a *signed* pickle: River models are
Python objects, so they load only when their descriptor carries a valid HMAC signature by a
trusted key (``STREAMML_MODEL_SIGNING_KEY``); nothing unsigned is ever unpickled.
"""

import os
import uuid

import numpy as np
import orjson
from river import compose, evaluate, linear_model, metrics, preprocessing

import streamml
from streamml.kafka import clients
from streamml.kafka.admin import ensure_topic
from streamml.registry import Registry
from streamml.train import OnlineLearner

os.environ.setdefault("STREAMML_MODEL_SIGNING_KEY", "example-signing-key-change-me")
settings = streamml.connect()
settings = settings.with_(namespace=f"{settings.namespace}-online-{uuid.uuid4().hex[:6]}")
features, labels = settings.topic("features", "payments"), settings.topic("labels", "payments")
ensure_topic(settings, features, 1)
ensure_topic(settings, labels, 1)

rng = np.random.default_rng(3)
rows = []
p = clients.producer(settings)
for i in range(2000):
    x = {"amount": float(rng.gamma(2, 40)), "velocity": float(rng.poisson(2)), "distance": float(rng.exponential(10))}
    y = bool(rng.random() < 1 / (1 + np.exp(6 - 0.02 * x["amount"] - 0.6 * x["velocity"] - 0.08 * x["distance"])))
    rows.append((x, y))
    p.produce(features, orjson.dumps({"event_id": f"p{i}", **x}), f"p{i}".encode())
    p.produce(labels, orjson.dumps({"event_id": f"p{i}", "label": y}), f"p{i}".encode())
p.flush(30)


def model():  # type: ignore[no-untyped-def]
    return compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())


learner = OnlineLearner(settings, model(), name="fraud-online", features_topic="payments", labels_topic="payments",
                        features=["amount", "velocity", "distance"], metric=metrics.ROCAUC(), snapshot_every=500,
                        keep_order=True)
report = learner.run(until_end=True, timeout=120)
print(f"learnt {report.examples} examples online, prequential ROC AUC {report.value:.4f}")

# River's own progressive validation over the same examples in the same order agrees exactly
by_id = {f"p{i}": r for i, r in enumerate(rows)}
ref = evaluate.progressive_val_score(((by_id[i][0], by_id[i][1]) for i in report.order), model(), metrics.ROCAUC())
print(f"river.evaluate.progressive_val_score: {ref.get():.4f}")
assert ref.get() == report.value

registry = Registry(settings)
for d in registry.list("fraud-online"):
    print(f"  snapshot v{d.version}: {d.format}, signed by {d.signer}, metrics {d.metrics}")
latest = registry.load(registry.latest("fraud-online", stage=None))
print("score of one payment:", latest.score([rows[0][0]])[0])
