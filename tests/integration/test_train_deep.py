"""Deep learning from topics through Kafka: PyTorch and Keras models trained by a TrainingJob,
published as ONNX, served by the registry's loader unchanged, and warm-started retraining."""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
torch = pytest.importorskip("torch")
pytest.importorskip("keras")

from streamml.config import Settings  # noqa: E402
from streamml.kafka import clients  # noqa: E402
from streamml.kafka.admin import ensure_topic  # noqa: E402
from streamml.registry import Registry  # noqa: E402
from streamml.registry.formats import export_model  # noqa: E402
from streamml.serve.testing import FRAUD_FEATURES, fraud_frame  # noqa: E402
from streamml.train import (  # noqa: E402
    Dataset,
    KerasAutoencoderTrainer,
    Retrainer,
    TorchAutoencoderTrainer,
    TorchClassifierTrainer,
    TrainingJob,
    reproduce,
)
from streamml.train.job import NoNewData  # noqa: E402

FEATS = list(FRAUD_FEATURES)


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def produce_payments(settings: Settings, n: int, *, seed: int, start_ms: int, prefix: str) -> str:
    """Card payments with ~3 % injected fraud; each record carries its ``label`` (is_fraud)."""
    from streamml.schema.batch import encode_json

    topic = settings.topic("features", "pay")
    ensure_topic(settings, topic, 2)
    df = fraud_frame(n, seed=seed, start_ms=start_ms, prefix=prefix).rename({"is_fraud": "label"})
    p = clients.producer(settings)
    for key, value in zip(df["card_id"].to_list(), encode_json(df)):
        p.produce(topic, value, key.encode())
    assert p.flush(30) == 0
    return topic


def check_served_like_framework(settings: Settings, d: Any, trainer: Callable[[Dataset], Any]) -> None:
    """The registry's model scores the held-out rows as the framework's own model does (same weights)."""
    model = trainer(Dataset.from_manifest(settings, d.manifest["train"]))  # the same data and seed
    assert export_model(model, FEATS).sha256 == d.sha256  # deterministic through Kafka too
    held = Dataset.from_manifest(settings, d.manifest["holdout"]).with_features(FEATS).to_polars()
    served = Registry(settings).load(d).score(held)
    own = model.score_samples(held.select(FEATS).to_numpy().astype(np.float32))
    np.testing.assert_allclose(served, own, rtol=1e-5, atol=1e-5)


AUTOENCODERS = {
    "torch": lambda: TorchAutoencoderTrainer(epochs=15, threads=1),
    "keras": lambda: KerasAutoencoderTrainer(epochs=15, threads=1),
}


@pytest.mark.parametrize("kind", list(AUTOENCODERS))
def test_autoencoder_from_topics_separates_fraud_and_serves_unchanged(settings: Settings, kind: str) -> None:
    produce_payments(settings, 3000, seed=4, start_ms=int(time.time() * 1000) - 3_600_000, prefix="a")
    trainer = AUTOENCODERS[kind]()
    res = TrainingJob("fraud-ae", "pay", trainer, features=FEATS, seed=2).run(settings)
    d = res.descriptor
    print(f"\n{kind} autoencoder from topics: holdout ROC AUC {res.candidate_score:.4f} "
          f"({d.metrics['holdout_rows']} rows)")
    assert res.candidate_score > 0.8
    assert res.promoted and d.stage == "production" and d.format == "onnx" and d.task == "anomaly"
    assert d.trainer == trainer.name and d.manifest["train"]["rows"] > 2000 and "parent" not in d.manifest
    assert [o["name"] for o in d.output_schema] == ["score", "reconstruction"]
    reg = Registry(settings)
    assert reg.latest("fraud-ae").version == d.version and reg.fetch(d)[:2]  # on the models topic
    check_served_like_framework(settings, d, trainer)


def test_torch_classifier_from_topics(settings: Settings) -> None:
    produce_payments(settings, 3000, seed=5, start_ms=int(time.time() * 1000) - 3_600_000, prefix="c")
    trainer = TorchClassifierTrainer(epochs=10, threads=1)
    res = TrainingJob("fraud-mlp", "pay", trainer, features=FEATS, seed=3).run(settings)
    d = res.descriptor
    print(f"\ntorch classifier from topics: holdout ROC AUC {res.candidate_score:.4f}")
    assert res.candidate_score > 0.9 and res.promoted and d.task == "classifier"
    assert [o["name"] for o in d.output_schema] == ["score", "label", "probabilities"]
    check_served_like_framework(settings, d, trainer)
    held = Dataset.from_manifest(settings, d.manifest["holdout"]).with_features(FEATS).to_polars()
    labels = Registry(settings).load(d).predict(held.select(FEATS).to_numpy().astype(np.float32)).label
    assert labels is not None and set(np.unique(labels)) <= {0, 1}
    assert (labels == held["label"].to_numpy()).mean() > 0.9


def test_warm_started_retrain_covers_only_new_offsets_and_names_its_parent(settings: Settings) -> None:
    now = int(time.time() * 1000)
    produce_payments(settings, 2000, seed=6, start_ms=now - 3_600_000, prefix="w")
    reg = Registry(settings)
    job = TrainingJob("fraud-ae", "pay", TorchAutoencoderTrainer(epochs=8, threads=1), features=FEATS, seed=4,
                      warm_start=True)
    first = job.run(settings, reg)
    v1 = first.descriptor
    assert v1.version == 1 and first.promoted and "parent" not in v1.manifest  # no production yet: from scratch
    with pytest.raises(NoNewData, match="no new records since"):
        job.run(settings, reg)
    produce_payments(settings, 1200, seed=7, start_ms=now - 1_800_000, prefix="x")
    second = job.run(settings, reg, reason="new data")
    v2 = second.descriptor
    print(f"\nwarm-started retrain: v2 ROC AUC {second.candidate_score:.4f} vs parent v1 "
          f"{second.production_score:.4f} on the new holdout")
    assert v2.version == 2 and v2.manifest["parent"] == {"name": "fraud-ae", "version": 1, "sha256": v1.sha256}
    assert second.production_version == 1 and second.candidate_score > 0.8
    ends = {}
    for part in ("train", "holdout"):
        for r in v1.manifest[part]["spec"]["ranges"]:
            ends[(r["topic"], r["partition"])] = max(ends.get((r["topic"], r["partition"]), 0), r["end"])
    assert len(ends) == 2
    for part in ("train", "holdout"):
        ranges = v2.manifest[part]["spec"]["ranges"]
        assert {(r["topic"], r["partition"]): r["start"] for r in ranges} == ends
        assert all(r["end"] > r["start"] for r in ranges)
    assert v2.manifest["train"]["rows"] + v2.metrics["holdout_rows"] == 1200  # only the new records
    # the new weights were fine-tuned from v1's, in v1's units: v1's standardisation is kept
    from streamml.train.deep_models import onnx_weights

    w1, w2 = onnx_weights(reg.fetch(v1)), onnx_weights(reg.fetch(v2))
    assert np.array_equal(w1["mean"], w2["mean"]) and not np.array_equal(w1["net.0.weight"], w2["net.0.weight"])
    # the manifest (with its parent, fetched from the registry) rebuilds the same bytes
    assert reproduce(settings, v2.manifest, TorchAutoencoderTrainer(epochs=8, threads=1)).sha256 == v2.sha256
    # a retrainer skips a warm-started run that has nothing new, without failing
    if not second.promoted:
        reg.promote("fraud-ae", 2)
    r = Retrainer(settings, job, registry=reg, control=False, every_s=0.0)
    assert r.run_once() == [] and r.skipped and "no new records" in r.skipped[0][1]
    r.close()
