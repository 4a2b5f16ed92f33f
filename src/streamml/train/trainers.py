"""Trainers: plain functions ``train(ds) -> model``, and built-ins for the common cases.

Any callable that takes a :class:`~streamml.train.Dataset` and returns a fitted model is a
trainer. The built-ins cover the literature's fraud and anomaly use cases:

* :class:`SklearnClassifier` — a supervised scikit-learn pipeline (scaler + logistic
  regression by default, any estimator you pass);
* :class:`IsolationForestTrainer` — unsupervised anomaly detection;
* :class:`AutoencoderTrainer` — an autoencoder-style MLP (``MLPRegressor`` reconstructing
  its scaled inputs); the anomaly score is the mean squared reconstruction error.

Randomness comes from the dataset's seed only, so the same manifest and seed give the same
fitted model and — through the deterministic ONNX export — the same bytes.

>>> import numpy as np
>>> X = np.random.default_rng(0).normal(size=(200, 4))
>>> ae = Autoencoder(hidden=(3,), seed=0, max_iter=50).fit(X)
>>> s = ae.score_samples(X)
>>> s.shape, bool((s >= 0).all())
((200,), True)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from streamml.errors import ModelError
from streamml.train.deep_models import KerasAutoencoderTrainer, TorchAutoencoderTrainer, TorchClassifierTrainer

__all__ = ["Trainer", "Trained", "SklearnClassifier", "IsolationForestTrainer", "AutoencoderTrainer", "Autoencoder",
           "trainer_name", "BUILTIN_TRAINERS"]


class Trainer(Protocol):
    """``train(ds) -> model``: fit and return a model from a dataset.

    The model is taken to use ``ds.features`` in order; a trainer that picks its own
    columns returns ``Trained(model, features)``.
    """

    def __call__(self, ds: Any) -> Any: ...


@dataclass(frozen=True)
class Trained:
    """A fitted model and the feature columns it takes, in order."""

    model: Any
    features: tuple[str, ...]


def unwrap(result: Any, ds: Any) -> tuple[Any, list[str]]:
    """``(model, features)`` from what a trainer returned."""
    if isinstance(result, Trained):
        return result.model, list(result.features)
    return result, ds.features


def trainer_name(trainer: Callable[..., Any]) -> str:
    return getattr(trainer, "name", None) or getattr(trainer, "__qualname__", None) or type(trainer).__name__


def _seeded(estimator: Any, seed: int) -> Any:
    from sklearn.base import clone

    est = clone(estimator)
    params = {k: seed for k in est.get_params(deep=True) if k == "random_state" or k.endswith("__random_state")}
    return est.set_params(**params) if params else est


class SklearnClassifier:
    """A supervised scikit-learn classifier (default: standard scaler + logistic regression).

    Every ``random_state`` in the estimator is set to the dataset's seed.
    """

    name = "sklearn-classifier"

    def __init__(self, estimator: Any = None) -> None:
        if estimator is None:
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        self.estimator = estimator

    def __call__(self, ds: Any) -> Any:
        X, y = ds.to_numpy()
        if y is None:
            raise ModelError("SklearnClassifier needs labels", hint="give the dataset a labels topic")
        if len(np.unique(y)) < 2:
            raise ModelError(f"only one class in {len(y)} labelled rows: cannot train a classifier")
        return _seeded(self.estimator, ds.seed).fit(X.astype(np.float32), y)


class IsolationForestTrainer:
    """Unsupervised: an IsolationForest over the feature columns (labels, if any, unused)."""

    name = "isolation-forest"

    def __init__(self, n_estimators: int = 100, max_samples: Any = "auto", contamination: Any = "auto") -> None:
        self.params = {"n_estimators": n_estimators, "max_samples": max_samples, "contamination": contamination}

    def __call__(self, ds: Any) -> Any:
        from sklearn.ensemble import IsolationForest

        X, _ = ds.to_numpy()
        return IsolationForest(random_state=ds.seed, **self.params).fit(X.astype(np.float32))


class Autoencoder:
    """Standard-scale, then an MLP trained to reproduce its input; score = mean squared error.

    ``to_onnx`` exports the whole thing as one graph whose ``score`` output is the
    reconstruction error, so it serves like any other anomaly model.
    """

    task = "anomaly"

    def __init__(self, hidden: Sequence[int] = (8, 3, 8), activation: str = "relu", seed: int = 0,
                 max_iter: int = 300, alpha: float = 1e-4) -> None:
        self.hidden = tuple(hidden)
        self.activation = activation
        self.seed = seed
        self.max_iter = max_iter
        self.alpha = alpha

    def fit(self, X: np.ndarray) -> "Autoencoder":
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPRegressor

        X = np.asarray(X, dtype=np.float64)
        self.mean_ = X.mean(axis=0)
        scale = X.std(axis=0)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        Z = (X - self.mean_) / self.scale_
        self.mlp_ = MLPRegressor(hidden_layer_sizes=self.hidden, activation=self.activation,
                                 random_state=self.seed, max_iter=self.max_iter, alpha=self.alpha)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.mlp_.fit(Z, Z)
        return self

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        Z = (np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_
        R = self.mlp_.predict(Z).reshape(Z.shape)
        err: np.ndarray = np.mean((Z - R) ** 2, axis=1)
        return err

    def to_onnx(self, n_features: int) -> Any:
        from onnx import TensorProto, helper, numpy_helper

        f32 = np.float32
        inits = [numpy_helper.from_array(self.mean_.astype(f32), "ae_mean"),
                 numpy_helper.from_array(self.scale_.astype(f32), "ae_scale")]
        nodes = [helper.make_node("Sub", ["input", "ae_mean"], ["ae_centered"]),
                 helper.make_node("Div", ["ae_centered", "ae_scale"], ["ae_z"])]
        act = {"relu": "Relu", "tanh": "Tanh", "logistic": "Sigmoid", "identity": "Identity"}[self.activation]
        cur = "ae_z"
        layers = list(zip(self.mlp_.coefs_, self.mlp_.intercepts_))
        for i, (W, b) in enumerate(layers):
            inits += [numpy_helper.from_array(W.astype(f32), f"ae_W{i}"),
                      numpy_helper.from_array(b.astype(f32), f"ae_b{i}")]
            nodes += [helper.make_node("MatMul", [cur, f"ae_W{i}"], [f"ae_mm{i}"]),
                      helper.make_node("Add", [f"ae_mm{i}", f"ae_b{i}"], [f"ae_h{i}"])]
            cur = f"ae_h{i}"
            if i < len(layers) - 1:
                nodes.append(helper.make_node(act, [cur], [f"ae_a{i}"]))
                cur = f"ae_a{i}"
        nodes += [helper.make_node("Identity", [cur], ["reconstruction"]),
                  helper.make_node("Sub", ["ae_z", "reconstruction"], ["ae_err"]),
                  helper.make_node("Mul", ["ae_err", "ae_err"], ["ae_sq"]),
                  helper.make_node("ReduceMean", ["ae_sq"], ["score"], axes=[1], keepdims=0)]
        for i, n in enumerate(nodes):
            n.name = f"ae_{i}"
        graph = helper.make_graph(
            nodes, "streamml", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, n_features])],
            [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None]),
             helper.make_tensor_value_info("reconstruction", TensorProto.FLOAT, [None, n_features])], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="streamml")
        model.ir_version = 8
        return model


class AutoencoderTrainer:
    """Unsupervised: an :class:`Autoencoder`; ``hidden`` defaults to a bottleneck of half the features."""

    name = "autoencoder"

    def __init__(self, hidden: Sequence[int] | None = None, activation: str = "relu", max_iter: int = 300) -> None:
        self.hidden = hidden
        self.activation = activation
        self.max_iter = max_iter

    def __call__(self, ds: Any) -> Autoencoder:
        X, _ = ds.to_numpy()
        n = X.shape[1]
        hidden = self.hidden or (max(2, n), max(1, n // 2), max(2, n))
        return Autoencoder(hidden, self.activation, ds.seed, self.max_iter).fit(X.astype(np.float32))


BUILTIN_TRAINERS: dict[str, Callable[[], Any]] = {
    "sklearn": SklearnClassifier,
    "isolation_forest": IsolationForestTrainer,
    "autoencoder": AutoencoderTrainer,
    "torch_autoencoder": TorchAutoencoderTrainer,
    "torch_classifier": TorchClassifierTrainer,
    "keras_autoencoder": KerasAutoencoderTrainer,
}
