"""Train a PyTorch fraud autoencoder from topics, publish it as ONNX, and score payments live with it.

Run: ``python examples/train_torch_fraud.py`` (uses STREAMML_BOOTSTRAP_SERVERS, or starts the local cluster;
needs ``pip install 'streamml[deep]'``).

1. card payments with ~3 % injected fraud go to ``<ns>.features.payments`` (each record carries
   its ground-truth ``label``, used only to evaluate: the autoencoder never sees it);
2. a :class:`TrainingJob` with :class:`TorchAutoencoderTrainer` pins the topic, trains an MLP
   autoencoder in PyTorch on the older 80 % (standardisation inside the model; the anomaly score
   is the mean squared reconstruction error), exports it to ONNX, evaluates it on the newest
   20 %, publishes it to ``<ns>.models`` and promotes it;
3. more payments arrive; a warm-started job fine-tunes production on the new offsets only and
   publishes v2, whose manifest names its parent;
4. a scorer follows the registry and scores fresh payments with the ONNX model — the same
   scorer that serves scikit-learn models, unchanged.
"""

import threading
import time
import uuid

import numpy as np
import orjson
import torch
from sklearn.metrics import roc_auc_score

import streamml
from streamml.kafka.admin import ensure_topic
from streamml.registry import Registry
from streamml.schema.batch import encode_json
from streamml.serve import Role, Scorer, ServeOptions, Single
from streamml.serve.registry_source import RegistrySource
from streamml.serve.testing import FRAUD_FEATURES, fraud_frame, produce_events, read_topic
from streamml.train import TorchAutoencoderTrainer, TrainingJob

torch.set_num_threads(1)
settings = streamml.connect()
settings = settings.with_(namespace=f"{settings.namespace}-torch-{uuid.uuid4().hex[:6]}")  # a clean run each time
features = settings.topic("features", "payments")
ensure_topic(settings, features, 3)


def payments(n: int, seed: int, prefix: str, start_ms: int) -> list[tuple[bytes, bytes]]:
    """Feature records (key: card id) with their ``label`` (is_fraud) in the value."""
    df = fraud_frame(n, seed=seed, prefix=prefix, start_ms=start_ms).rename({"is_fraud": "label"})
    return [(k.encode(), v) for k, v in zip(df["card_id"].to_list(), encode_json(df))]


# 1. payments on the features topic
now = int(time.time() * 1000)
produce_events(settings, features, payments(3000, 1, "a", now - 3_600_000))

# 2. train in PyTorch, evaluate, publish as ONNX, promote
registry = Registry(settings)
trainer = TorchAutoencoderTrainer(epochs=15)
job = TrainingJob("fraud", "payments", trainer, features=list(FRAUD_FEATURES), metric="roc_auc", warm_start=True)
first = job.run(settings, registry)
d = first.descriptor
print(f"{d.ref}: torch autoencoder, holdout roc_auc={first.candidate_score:.4f} promoted={first.promoted} "
      f"({d.format}, {d.size:,} bytes, outputs {[o['name'] for o in d.output_schema]})")
assert first.promoted and first.candidate_score > 0.8

# 3. new payments: warm-started retraining on the new offsets only
produce_events(settings, features, payments(1000, 2, "b", now - 1_800_000))
second = job.run(settings, registry, reason="new payments")
d2 = second.descriptor
starts = {r["partition"]: r["start"] for r in d2.manifest["train"]["spec"]["ranges"]}
print(f"{d2.ref}: warm-started from v{d2.manifest['parent']['version']} on offsets from {starts}: "
      f"roc_auc={second.candidate_score:.4f} vs production {second.production_score:.4f} -> promoted={second.promoted}")
if not second.promoted:
    registry.promote("fraud", d2.version)  # the operator decides to take the fine-tuned model anyway
prod = registry.latest("fraud")
assert prod is not None and prod.version == d2.version

# 4. live scoring with the registry's production version, on a stream of fresh payments
live_topic = settings.topic("features", "live-payments")
ensure_topic(settings, live_topic, 3)
scorer = Scorer(settings, Single([Role("fraud")]), RegistrySource(settings), ServeOptions(live_topic))
scorer.start()
threading.Thread(target=scorer.run, daemon=True).start()
live = payments(2000, 3, "live", int(time.time() * 1000))
produce_events(settings, live_topic, live)
got = read_topic(settings, scorer.output_topic, expect=len(live))
truth = {rec["event_id"]: rec["label"] for rec in (orjson.loads(v) for _, v in live)}
s = np.array([r.value["score"] for r in got])
y = np.array([truth[r.value["event_id"]] for r in got])
print(f"live: {len(got)} predictions by versions {sorted({r.value['model_version'] for r in got})}, "
      f"roc_auc={roc_auc_score(y, s):.4f} on fresh payments")
print("one prediction:", got[-1].value)
assert len({r.value["event_id"] for r in got}) == len(live) and roc_auc_score(y, s) > 0.8
scorer.stop_event.set()
