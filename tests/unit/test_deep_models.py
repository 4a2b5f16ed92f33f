"""PyTorch and Keras trainers (no Kafka): ONNX equals the framework, determinism, warm start."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
torch = pytest.importorskip("torch")
pytest.importorskip("keras")

from streamml.errors import ConfigError, ModelError  # noqa: E402
from streamml.registry.formats import export_model  # noqa: E402
from streamml.registry.models import OnnxModel  # noqa: E402
from streamml.train import (  # noqa: E402
    BUILTIN_TRAINERS,
    KerasAutoencoderTrainer,
    TorchAutoencoderTrainer,
    TorchClassifierTrainer,
)
from streamml.train.deep_models import onnx_weights  # noqa: E402

FEATS = [f"f{i}" for i in range(5)]


class Frame:
    """A dataset already in memory: what a trainer reads from a :class:`~streamml.train.Dataset`."""

    def __init__(self, X: np.ndarray, y: np.ndarray | None = None, seed: int = 0) -> None:
        self.X, self.y, self.seed = X, y, seed

    def to_numpy(self) -> tuple[np.ndarray, np.ndarray | None]:
        return self.X, self.y


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def data(n: int = 1200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5)) * [1.0, 10.0, 100.0, 0.1, 3.0] + [0.0, 50.0, -20.0, 1.0, 7.0]
    y = (X[:, 0] + 0.1 * X[:, 1] + rng.normal(size=n) > 5.0).astype(np.int64)
    return X, y


TRAINERS = {
    "torch_autoencoder": lambda: TorchAutoencoderTrainer(epochs=4),
    "torch_classifier": lambda: TorchClassifierTrainer(epochs=4),
    "keras_autoencoder": lambda: KerasAutoencoderTrainer(epochs=4),
}


def frame(kind: str, seed: int = 3, n: int = 1200) -> Frame:
    X, y = data(n)
    return Frame(X, y if kind == "torch_classifier" else None, seed=seed)


@pytest.mark.parametrize("kind", list(TRAINERS))
def test_onnx_scores_equal_the_framework(kind: str) -> None:
    model = TRAINERS[kind]()(frame(kind))
    art = export_model(model, FEATS)
    assert art.format == "onnx" and art.task == ("classifier" if kind == "torch_classifier" else "anomaly")
    loaded = OnnxModel.from_bytes(art.data, name="m", version=1, input_columns=tuple(FEATS), task=art.task)
    X, _ = data(300, seed=9)  # rows the model never saw, any batch size
    own = model.score_samples(X)
    served = loaded.predict(X.astype(np.float32)).score
    np.testing.assert_allclose(served, own, rtol=1e-5, atol=1e-5)
    assert own.shape == (300,) and np.isfinite(own).all() and own.std() > 0
    if kind == "torch_classifier":
        import onnxruntime as ort

        score, label, probs = ort.InferenceSession(art.data).run(["score", "label", "probabilities"],
                                                                 {"input": X.astype(np.float32)})
        np.testing.assert_allclose(probs, model.predict_proba(X), atol=1e-5)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
        assert label.dtype == np.int64 and (label == (score >= 0.5)).all()
        assert 0.6 < ((score >= 0.5) == data(300, seed=9)[1]).mean()  # it learnt something
    else:
        import onnxruntime as ort

        score, rec = ort.InferenceSession(art.data).run(["score", "reconstruction"], {"input": X.astype(np.float32)})
        assert rec.shape == X.shape
        np.testing.assert_allclose(rec, model.reconstruct(X), rtol=1e-5, atol=1e-5)
        assert model.history[-1] < model.history[0]  # the reconstruction error went down


@pytest.mark.parametrize("kind", list(TRAINERS))
def test_same_seed_same_weights_and_onnx_bytes(kind: str) -> None:
    a, b, c = (TRAINERS[kind]()(frame(kind, seed=s)) for s in (5, 5, 6))
    sa, sb, sc = a.state(), b.state(), c.state()
    assert sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)
    assert any(not np.array_equal(sa[k], sc[k]) for k in sa)
    ea, eb, ec = (export_model(m, FEATS) for m in (a, b, c))
    assert ea.data == eb.data and ea.sha256 == eb.sha256
    assert ec.sha256 != ea.sha256
    # the ONNX initializers are the parameters, by name
    w = onnx_weights(ea.data)
    assert set(sa) <= set(w) and all(np.array_equal(sa[k], w[k]) for k in sa)


@pytest.mark.parametrize("kind", list(TRAINERS))
def test_warm_start_resumes_from_the_parents_weights(kind: str) -> None:
    parent = TRAINERS[kind]()(frame(kind))
    data_bytes = export_model(parent, FEATS).data
    X2, y2 = data(400, seed=21)
    new_rows = Frame(X2 * 1.5 + 2.0, y2 if kind == "torch_classifier" else None, seed=8)
    frozen = TRAINERS[kind]()
    frozen.epochs = 0
    frozen.warm_start(data_bytes)
    same = frozen(new_rows)  # no training: exactly the parent, standardisation included
    ps, ss = parent.state(), same.state()
    assert ps.keys() == ss.keys() and all(np.array_equal(ps[k], ss[k]) for k in ps)
    assert export_model(same, FEATS).sha256 == export_model(parent, FEATS).sha256
    cont = TRAINERS[kind]()
    cont.warm_start(data_bytes)
    moved = cont(new_rows).state()
    fresh = TRAINERS[kind]()(new_rows).state()
    assert any(not np.array_equal(ps[k], moved[k]) for k in ps)  # training went on ...
    std = [k for k in ps if k.endswith("mean") or k.endswith("scale")]
    assert len(std) == 2 and all(np.array_equal(ps[k], moved[k]) for k in std)  # ... in the parent's units
    assert any(not np.array_equal(fresh[k], moved[k]) for k in ps)  # and not from scratch
    cont.warm_start(None)
    again = cont(new_rows).state()
    assert all(np.array_equal(fresh[k], again[k]) for k in ps)


def test_warm_start_refuses_another_architecture() -> None:
    parent = export_model(TorchAutoencoderTrainer(hidden=(4, 2, 4), epochs=1)(frame("torch_autoencoder")), FEATS)
    t = TorchAutoencoderTrainer(hidden=(6, 3, 6), epochs=1)
    t.warm_start(parent.data)
    with pytest.raises(ModelError, match="shape"):
        t(frame("torch_autoencoder"))
    k = KerasAutoencoderTrainer(epochs=1)
    k.warm_start(parent.data)
    with pytest.raises(ModelError, match="not a Keras autoencoder"):
        k(frame("keras_autoencoder"))
    with pytest.raises(ModelError, match="ONNX"):
        t.warm_start(b"not a model")


def test_bad_options_and_labels() -> None:
    with pytest.raises(ConfigError, match="activation"):
        TorchAutoencoderTrainer(activation="swish")
    with pytest.raises(ConfigError):
        KerasAutoencoderTrainer(epochs=-1)
    X, y = data(100)
    with pytest.raises(ModelError, match="needs labels"):
        TorchClassifierTrainer(epochs=1)(Frame(X))
    with pytest.raises(ModelError, match="labels 0 and 1"):
        TorchClassifierTrainer(epochs=1)(Frame(X, y + 1))
    with pytest.raises(ModelError, match="no rows"):
        TorchAutoencoderTrainer(epochs=1)(Frame(X[:0]))


def test_registered_and_global_state_left_alone() -> None:
    for name in ("torch_autoencoder", "torch_classifier", "keras_autoencoder"):
        assert callable(BUILTIN_TRAINERS[name]().warm_start)
    torch.use_deterministic_algorithms(False)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    TorchAutoencoderTrainer(epochs=1, threads=2)(frame("torch_autoencoder"))
    KerasAutoencoderTrainer(epochs=1)(frame("keras_autoencoder"))
    assert torch.equal(torch.rand(3), expected)  # the caller's RNG stream is untouched
    assert not torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == 1
