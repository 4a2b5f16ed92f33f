"""Deep learning trainers: PyTorch and Keras 3 models exported to ONNX, served like any other model.

* :class:`TorchAutoencoderTrainer` -> :class:`TorchAutoencoder` — unsupervised (fraud as
  anomalies): inputs standardised inside the model, an MLP encoder/decoder, score = mean
  squared reconstruction error per row; ONNX outputs ``score`` ``[N]`` and ``reconstruction``.
* :class:`TorchClassifierTrainer` -> :class:`TorchClassifier` — supervised binary MLP; ONNX
  outputs ``score`` (P(positive)), ``label`` (int64) and ``probabilities`` ``[N, 2]``, like
  the scikit-learn export.
* :class:`KerasAutoencoderTrainer` -> :class:`KerasAutoencoder` — the same autoencoder as a
  Keras 3 functional model on the torch backend (input named ``input``, the score computed
  inside the model), exported through ``torch.onnx`` (a Keras model is a ``torch.nn.Module``).

Every export has the contract of :mod:`streamml.registry.formats` (float input ``input``
``[N, n_features]``, dynamic batch), so the registry and the scorer serve it unchanged.

Determinism: weights are initialised and batches shuffled from the dataset's seed only, with
``torch.use_deterministic_algorithms(True)``; the global RNGs and torch settings are restored
afterwards. The same manifest and seed give the same weights and the same ONNX bytes (on one
machine with one thread count: pass ``threads=1`` to pin it).

Warm start: ``trainer.warm_start(parent_onnx_bytes)`` makes the next fits start from a parent's
weights, read back from the ONNX initializers by name (the export keeps the parameter names);
the standardisation of the parent is kept, so the weights keep their meaning. ``None`` clears it.

torch and keras are imported only when a model is built or loaded (``pip install 'streamml[deep]'``).
"""

from __future__ import annotations

import io
import os
import random
import warnings
from contextlib import contextmanager
from functools import cache
from typing import Any, Iterator, Sequence

import numpy as np

from streamml.errors import ConfigError, ModelError

__all__ = ["TorchAutoencoder", "TorchAutoencoderTrainer", "TorchClassifier", "TorchClassifierTrainer",
           "KerasAutoencoder", "KerasAutoencoderTrainer", "onnx_weights", "seeded_torch", "fit_torch"]

_HINT = "pip install 'streamml[deep]'"
_ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity")
_OPSET = 17


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ConfigError("PyTorch is not installed: the deep-learning trainers need it", hint=_HINT) from None
    return torch


def _keras() -> Any:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    _torch()
    try:
        import keras
    except ImportError:
        raise ConfigError("Keras 3 is not installed: the Keras trainers need it", hint=_HINT) from None
    if keras.backend.backend() != "torch":
        raise ConfigError(f"Keras runs on the {keras.backend.backend()!r} backend; the Keras trainers need torch",
                          hint="set KERAS_BACKEND=torch before keras is first imported")
    return keras


@contextmanager
def seeded_torch(seed: int, threads: int | None) -> Iterator[Any]:
    """Seed every RNG torch/keras may draw from and make torch deterministic; restore it all after."""
    torch = _torch()
    det, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    n_threads = torch.get_num_threads()
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.use_deterministic_algorithms(True)
            if threads:
                torch.set_num_threads(int(threads))
            yield torch
        finally:
            torch.use_deterministic_algorithms(det, warn_only=warn_only)
            if threads:
                torch.set_num_threads(n_threads)
            random.setstate(py_state)
            np.random.set_state(np_state)


def _hidden(hidden: Sequence[int] | None, n: int, default: tuple[int, ...]) -> tuple[int, ...]:
    h = tuple(int(v) for v in (hidden if hidden is not None else default))
    if not h or min(h) < 1:
        raise ConfigError(f"hidden layer sizes must be positive integers, got {h}", hint="e.g. hidden=(8, 3, 8)")
    return h


def _check_activation(activation: str) -> str:
    if activation not in _ACTIVATIONS:
        raise ConfigError(f"unknown activation {activation!r}", hint="use one of " + ", ".join(_ACTIVATIONS))
    return activation


def _scaler(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    return mean.astype(np.float32), np.where(scale > 0, scale, 1.0).astype(np.float32)


def _matrix(ds: Any, who: str) -> tuple[np.ndarray, np.ndarray | None]:
    X, y = ds.to_numpy()
    if X.shape[0] == 0:
        raise ModelError(f"{who}: the dataset has no rows to train on", hint="check the dataset's ranges and filters")
    return np.asarray(X, dtype=np.float32), y


# -- ONNX ---------------------------------------------------------------------------------------
def onnx_weights(data: bytes) -> dict[str, np.ndarray]:
    """The initializers of an ONNX model, by name (the parameter names for the models of this module)."""
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # onnx raises DecodeError and others on bytes that are not a model
        raise ModelError(f"cannot read the parent model as ONNX: {exc}", hint="warm start needs an ONNX artifact") \
            from None
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _export(module: Any, n_features: int, outputs: Sequence[str]) -> Any:
    """``torch.onnx`` export (TorchScript path: fast, parameters keep their names, dynamic batch)."""
    import onnx

    torch = _torch()
    buf = io.BytesIO()
    was_training = getattr(module, "training", False)
    module.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            # keep_initializers_as_inputs: no de-duplication of equal tensors, so every parameter keeps its name
            torch.onnx.export(module, (torch.zeros(1, n_features),), buf, input_names=["input"],
                              output_names=list(outputs), dynamic_axes={k: {0: "N"} for k in ["input", *outputs]},
                              opset_version=_OPSET, dynamo=False, do_constant_folding=False,
                              keep_initializers_as_inputs=True)
    finally:
        module.train(was_training)
    model = onnx.load_from_string(buf.getvalue())
    params = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in params]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    model.producer_name = "streamml"
    return model


def _load_state(module: Any, weights: dict[str, np.ndarray], what: str) -> None:
    """Load ``weights`` (ONNX initializers by name) into a torch module, checking names and shapes."""
    torch = _torch()
    state = module.state_dict()
    missing = [k for k in state if k not in weights]
    if missing:
        raise ModelError(f"the parent model has no weight {missing[0]!r}: it is not a {what}",
                         hint="warm-start from a model trained by the same trainer")
    for k, v in state.items():
        if tuple(weights[k].shape) != tuple(v.shape):
            raise ModelError(f"the parent's {k!r} has shape {tuple(weights[k].shape)}, this {what} {tuple(v.shape)}",
                             hint="use the parent's architecture (hidden sizes and features) to warm-start")
    module.load_state_dict({k: torch.as_tensor(np.array(weights[k])) for k in state})


# -- torch modules (defined on first use, so importing this module does not import torch) ---------
@cache
def _modules() -> Any:
    torch = _torch()
    nn = torch.nn

    def mlp(sizes: Sequence[int], activation: str) -> Any:
        act = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "identity": nn.Identity}[activation]
        layers: list[Any] = []
        for i in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                layers.append(act())
        return nn.Sequential(*layers)

    class Standardised(nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self, n: int) -> None:
            super().__init__()
            self.register_buffer("mean", torch.zeros(n))
            self.register_buffer("scale", torch.ones(n))

        def standardise(self, x: Any) -> Any:
            return (x - self.mean) / self.scale

    class AE(Standardised):
        def __init__(self, n: int, hidden: Sequence[int], activation: str) -> None:
            super().__init__(n)
            self.net = mlp([n, *hidden, n], activation)

        def forward(self, x: Any) -> Any:
            z = self.standardise(x)
            r = self.net(z)
            return ((z - r) ** 2).mean(dim=1), r

    class Classifier(Standardised):
        def __init__(self, n: int, hidden: Sequence[int], activation: str) -> None:
            super().__init__(n)
            self.net = mlp([n, *hidden, 1], activation)

        def logits(self, x: Any) -> Any:
            return self.net(self.standardise(x)).reshape(-1)

        def forward(self, x: Any) -> Any:
            p = torch.sigmoid(self.logits(x))
            return p, (p >= 0.5).to(torch.int64), torch.stack([1.0 - p, p], dim=1)

    class NS:
        pass

    ns = NS()
    ns.AE, ns.Classifier = AE, Classifier  # type: ignore[attr-defined]
    return ns


def fit_torch(torch: Any, module: Any, loss_of: Any, tensors: Sequence[Any], *, epochs: int, batch_size: int,
               lr: float, weight_decay: float, seed: int) -> list[float]:
    """Adam over seeded shuffled mini-batches; returns the mean loss of each epoch."""
    from torch.utils.data import DataLoader, TensorDataset

    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=True, generator=gen)
    opt = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
    history = []
    module.train()
    for _ in range(epochs):
        total, rows = 0.0, 0
        for batch in loader:
            opt.zero_grad()
            loss = loss_of(module, *batch)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(batch[0])
            rows += len(batch[0])
        history.append(total / max(rows, 1))
    module.eval()
    return history


class _TorchModel:
    """A fitted torch module with the ``task``/``to_onnx`` protocol of
    :func:`~streamml.registry.formats.export_model`."""

    task = "anomaly"
    outputs: tuple[str, ...] = ("score",)

    def __init__(self, module: Any, hidden: Sequence[int], activation: str, history: Sequence[float] = ()) -> None:
        self.module = module
        self.hidden = tuple(hidden)
        self.activation = activation
        self.history = list(history)

    @property
    def n_features(self) -> int:
        return int(self.module.mean.shape[0])

    def _run(self, X: np.ndarray) -> Any:
        torch = _torch()
        with torch.no_grad():
            return self.module(torch.as_tensor(np.asarray(X, dtype=np.float32)))

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """The ``score`` output, as the framework computes it (float32 math, returned as float64)."""
        out: np.ndarray = self._run(X)[0].numpy().astype(np.float64)
        return out

    def state(self) -> dict[str, np.ndarray]:
        """Parameters and buffers by name (the names of the ONNX initializers)."""
        return {k: v.detach().numpy().copy() for k, v in self.module.state_dict().items()}

    def to_onnx(self, n_features: int) -> Any:
        if n_features != self.n_features:
            raise ModelError(f"the model takes {self.n_features} features, not {n_features}")
        return _export(self.module, n_features, self.outputs)


class TorchAutoencoder(_TorchModel):
    """A fitted PyTorch autoencoder: ``score`` = mean squared reconstruction error of the standardised row."""

    task = "anomaly"
    outputs = ("score", "reconstruction")

    def reconstruct(self, X: np.ndarray) -> np.ndarray:
        """The reconstruction, in standardised units."""
        out: np.ndarray = self._run(X)[1].numpy()
        return out


class TorchClassifier(_TorchModel):
    """A fitted PyTorch binary classifier: ``score`` = P(label 1)."""

    task = "classifier"
    outputs = ("score", "label", "probabilities")

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        out: np.ndarray = self._run(X)[2].numpy().astype(np.float64)
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        out: np.ndarray = self._run(X)[1].numpy()
        return out


class _TorchTrainer:
    """Shared configuration and warm start of the torch trainers."""

    name = "torch"
    _what = "torch model"

    def __init__(self, hidden: Sequence[int] | None = None, activation: str = "relu", epochs: int = 20,
                 batch_size: int = 128, lr: float = 5e-3, weight_decay: float = 0.0,
                 threads: int | None = None) -> None:
        self.hidden = None if hidden is None else tuple(hidden)
        self.activation = _check_activation(activation)
        if epochs < 0 or batch_size < 1 or lr <= 0:
            raise ConfigError(f"epochs >= 0, batch_size >= 1 and lr > 0 needed, got {epochs}, {batch_size}, {lr}")
        self.epochs, self.batch_size, self.lr, self.weight_decay = int(epochs), int(batch_size), float(lr), weight_decay
        self.threads = threads
        self.parent: dict[str, np.ndarray] | None = None

    def warm_start(self, parent: bytes | None) -> None:
        """Start the next fits from the weights (and standardisation) of ``parent`` (ONNX bytes); None clears it."""
        self.parent = None if parent is None else onnx_weights(parent)

    def _default_hidden(self, n: int) -> tuple[int, ...]:
        raise NotImplementedError

    def _build(self, torch: Any, X: np.ndarray) -> tuple[Any, tuple[int, ...]]:
        n = X.shape[1]
        hidden = _hidden(self.hidden, n, self._default_hidden(n))
        module = self._module(n, hidden)
        if self.parent is not None:
            _load_state(module, self.parent, self._what)
        else:
            mean, scale = _scaler(X)
            module.mean.copy_(torch.as_tensor(mean))
            module.scale.copy_(torch.as_tensor(scale))
        return module, hidden

    def _module(self, n: int, hidden: tuple[int, ...]) -> Any:
        raise NotImplementedError


class TorchAutoencoderTrainer(_TorchTrainer):
    """Unsupervised: a :class:`TorchAutoencoder`; ``hidden`` defaults to ``(n, n // 2, n)`` (at least 4, 2, 4)."""

    name = "torch-autoencoder"
    _what = "torch autoencoder"

    def _default_hidden(self, n: int) -> tuple[int, ...]:
        return max(4, n), max(2, n // 2), max(4, n)

    def _module(self, n: int, hidden: tuple[int, ...]) -> Any:
        return _modules().AE(n, hidden, self.activation)

    def __call__(self, ds: Any) -> TorchAutoencoder:
        X, _ = _matrix(ds, self.name)
        with seeded_torch(ds.seed, self.threads) as torch:
            module, hidden = self._build(torch, X)
            history = fit_torch(torch, module, lambda m, x: m(x)[0].mean(), [torch.as_tensor(X)],
                                 epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                                 weight_decay=self.weight_decay, seed=ds.seed)
        return TorchAutoencoder(module, hidden, self.activation, history)


class TorchClassifierTrainer(_TorchTrainer):
    """Supervised binary (labels 0/1): a :class:`TorchClassifier`; ``hidden`` defaults to ``(2n, n)``
    (at least 8, 4)."""

    name = "torch-classifier"
    _what = "torch classifier"

    def _default_hidden(self, n: int) -> tuple[int, ...]:
        return max(8, 2 * n), max(4, n)

    def _module(self, n: int, hidden: tuple[int, ...]) -> Any:
        return _modules().Classifier(n, hidden, self.activation)

    def __call__(self, ds: Any) -> TorchClassifier:
        X, y = _matrix(ds, self.name)
        if y is None:
            raise ModelError(f"{self.name} needs labels", hint="give the dataset a labels topic")
        y = np.asarray(y, dtype=np.float64)
        if not np.isin(y, (0.0, 1.0)).all():
            raise ModelError(f"{self.name} takes labels 0 and 1, got {sorted(set(np.unique(y).tolist()))[:5]}")
        if len(np.unique(y)) < 2 and self.parent is None:
            raise ModelError(f"only one class in {len(y)} labelled rows: cannot train a classifier")
        with seeded_torch(ds.seed, self.threads) as torch:
            module, hidden = self._build(torch, X)
            bce = torch.nn.BCEWithLogitsLoss()
            history = fit_torch(torch, module, lambda m, x, t: bce(m.logits(x), t),
                                 [torch.as_tensor(X), torch.as_tensor(y.astype(np.float32))],
                                 epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                                 weight_decay=self.weight_decay, seed=ds.seed)
        return TorchClassifier(module, hidden, self.activation, history)


# -- Keras 3 (torch backend) ----------------------------------------------------------------------
_PREFIX = "_torch_params."  # how a Keras model on the torch backend names its variables in state_dict()


@cache
def _keras_layers() -> Any:
    keras = _keras()

    class Standardise(keras.layers.Layer):  # type: ignore[misc, name-defined]
        """``(x - mean) / scale`` with the statistics as (non-trainable) weights, so they are exported."""

        def build(self, shape: Any) -> None:
            n = int(shape[-1])
            self.mean = self.add_weight(shape=(n,), initializer="zeros", trainable=False, name="mean")
            self.scale = self.add_weight(shape=(n,), initializer="ones", trainable=False, name="scale")

        def call(self, x: Any) -> Any:
            return (x - self.mean) / self.scale

    class ReconstructionError(keras.layers.Layer):  # type: ignore[misc, name-defined]
        def call(self, z: Any, r: Any) -> Any:
            return keras.ops.mean(keras.ops.square(z - r), axis=1)

    class NS:
        pass

    ns = NS()
    ns.Standardise, ns.ReconstructionError = Standardise, ReconstructionError  # type: ignore[attr-defined]
    return ns


class KerasAutoencoder:
    """A fitted Keras 3 autoencoder (``model``: input ``input`` -> ``[score, reconstruction]``)."""

    task = "anomaly"

    def __init__(self, model: Any, hidden: Sequence[int], activation: str, history: Sequence[float] = ()) -> None:
        self.model = model
        self.hidden = tuple(hidden)
        self.activation = activation
        self.history = list(history)

    @property
    def n_features(self) -> int:
        return int(self.model.inputs[0].shape[-1])

    def _run(self, X: np.ndarray) -> Any:
        keras = _keras()
        torch = _torch()
        with torch.no_grad():
            out = self.model(np.asarray(X, dtype=np.float32), training=False)
        return [keras.ops.convert_to_numpy(o) for o in out]

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """The model's ``score`` output (float32 math, returned as float64)."""
        out: np.ndarray = self._run(X)[0].astype(np.float64)
        return out

    def reconstruct(self, X: np.ndarray) -> np.ndarray:
        out: np.ndarray = self._run(X)[1]
        return out

    def state(self) -> dict[str, np.ndarray]:
        """Variables by ONNX initializer name (``_torch_params.<layer>/<variable>``)."""
        return {_PREFIX + v.path: np.array(v.numpy()) for v in self.model.variables}

    def to_onnx(self, n_features: int) -> Any:
        if n_features != self.n_features:
            raise ModelError(f"the model takes {self.n_features} features, not {n_features}")
        return _export(self.model, n_features, ("score", "reconstruction"))


class KerasAutoencoderTrainer:
    """Unsupervised: a :class:`KerasAutoencoder` (Dense layers, Adam, MSE on the standardised inputs)."""

    name = "keras-autoencoder"

    def __init__(self, hidden: Sequence[int] | None = None, activation: str = "relu", epochs: int = 20,
                 batch_size: int = 128, lr: float = 5e-3, threads: int | None = None) -> None:
        self.hidden = None if hidden is None else tuple(hidden)
        self.activation = _check_activation(activation)
        if epochs < 0 or batch_size < 1 or lr <= 0:
            raise ConfigError(f"epochs >= 0, batch_size >= 1 and lr > 0 needed, got {epochs}, {batch_size}, {lr}")
        self.epochs, self.batch_size, self.lr, self.threads = int(epochs), int(batch_size), float(lr), threads
        self.parent: dict[str, np.ndarray] | None = None

    def warm_start(self, parent: bytes | None) -> None:
        """Start the next fits from the weights (and standardisation) of ``parent`` (ONNX bytes); None clears it."""
        self.parent = None if parent is None else onnx_weights(parent)

    def _build(self, keras: Any, n: int, hidden: tuple[int, ...], seed: int) -> tuple[Any, Any]:
        layers = _keras_layers()
        act = None if self.activation == "identity" else self.activation
        inp = keras.Input(shape=(n,), name="input")
        z = layers.Standardise(name="standardise")(inp)
        h = z
        for i, width in enumerate(hidden):
            h = keras.layers.Dense(width, activation=act, name=f"dense{i}",
                                   kernel_initializer=keras.initializers.GlorotUniform(seed=seed + i))(h)
        r = keras.layers.Dense(n, name="reconstruction",
                               kernel_initializer=keras.initializers.GlorotUniform(seed=seed + len(hidden)))(h)
        score = layers.ReconstructionError(name="score")(z, r)
        return keras.Model(inp, [score, r], name="streamml_autoencoder"), keras.Model(inp, r)

    def __call__(self, ds: Any) -> KerasAutoencoder:
        keras = _keras()
        X, _ = _matrix(ds, self.name)
        n = X.shape[1]
        hidden = _hidden(self.hidden, n, (max(4, n), max(2, n // 2), max(4, n)))
        with seeded_torch(ds.seed, self.threads):
            keras.utils.set_random_seed(ds.seed)  # restored by seeded_torch
            model, core = self._build(keras, n, hidden, ds.seed)
            std = model.get_layer("standardise")
            if self.parent is not None:
                self._load(model)
            else:
                mean, scale = _scaler(X)
                std.mean.assign(mean)
                std.scale.assign(scale)
            Z = (X - np.array(std.mean.numpy())) / np.array(std.scale.numpy())
            core.compile(optimizer=keras.optimizers.Adam(learning_rate=self.lr), loss="mse")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = core.fit(X, Z.astype(np.float32), epochs=self.epochs, batch_size=self.batch_size,
                               shuffle=True, verbose=0) if self.epochs else None
        history = [float(v) for v in fit.history.get("loss", [])] if fit is not None else []
        return KerasAutoencoder(model, hidden, self.activation, history)

    def _load(self, model: Any) -> None:
        parent = self.parent or {}
        for v in model.variables:
            key = _PREFIX + v.path
            if key not in parent:
                raise ModelError(f"the parent model has no weight {key!r}: it is not a Keras autoencoder",
                                 hint="warm-start from a model trained by the same trainer")
            if tuple(parent[key].shape) != tuple(v.shape):
                raise ModelError(f"the parent's {key!r} has shape {tuple(parent[key].shape)}, this model "
                                 f"{tuple(v.shape)}", hint="use the parent's architecture to warm-start")
            v.assign(parent[key])
