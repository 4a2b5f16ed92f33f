"""The predictive-maintenance sequence model: a small 1-D CNN over the last N windows of a machine.

A feature row is flat: ``N * F`` columns, time-major (the oldest window's ``F`` features
first, the newest last), which is what the stream scorer hands a model. The network
standardises each feature, reshapes the row to ``[batch, N, F]``, convolves over time and
outputs the probability of a failure within the horizon. :meth:`SequenceClassifier.to_onnx`
exports the whole thing (standardisation and reshape included) with
``torch.onnx.export`` as one graph with the contract of :mod:`streamml.registry.formats`:
input ``input`` float32 ``[batch, N*F]``, output ``score`` float32 ``[batch]``.

Training is deterministic: seeded from the dataset, deterministic algorithms, one thread.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(400, 4 * 3)).astype(np.float32)
>>> y = (X[:, -3] > 0.5).astype(np.int64)           # the newest window's first feature decides
>>> m = SequenceClassifier(steps=4, n_features=3, epochs=15, seed=1).fit(X, y)
>>> p = m.predict_proba(X)
>>> bool(((p > 0.5) == y).mean() > 0.9), p.shape
(True, (400,))
>>> import onnxruntime as ort
>>> s = ort.InferenceSession(m.to_onnx(12).SerializeToString(), providers=["CPUExecutionProvider"])
>>> bool(np.allclose(s.run(["score"], {"input": X[:5]})[0], p[:5], atol=1e-5))
True
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

import numpy as np

from streamml.train.deep_models import fit_torch, seeded_torch

__all__ = ["SequenceClassifier", "best_threshold"]


def _network(steps: int, n_features: int, channels: int, mean: np.ndarray, scale: np.ndarray) -> Any:
    import torch
    from torch import nn

    class Net(nn.Module):
        """``[B, N*F]`` -> standardise -> ``[B, F, N]`` -> two convolutions -> pooled -> logit ``[B]``."""

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
            self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))
            k = 3 if steps >= 3 else 1
            self.conv = nn.Sequential(nn.Conv1d(n_features, channels, k, padding=k // 2), nn.ReLU(),
                                      nn.Conv1d(channels, channels, k, padding=k // 2), nn.ReLU())
            self.head = nn.Linear(2 * channels, 1)

        def logits(self, x: Any) -> Any:
            z = (x.reshape(-1, steps, n_features) - self.mean) / self.scale   # [B, N, F]
            h = self.conv(z.transpose(1, 2))                                   # [B, C, N]
            pooled = torch.cat([h.mean(dim=2), h[:, :, -1]], dim=1)            # everything, and the newest
            return self.head(pooled).reshape(-1)

        def forward(self, x: Any) -> Any:
            return torch.sigmoid(self.logits(x))

    return Net()


class SequenceClassifier:
    """A 1-D CNN classifier over ``steps`` windows of ``n_features`` features (flattened, time-major).

    ``task = "classifier"`` and :meth:`to_onnx` make it publishable with
    :meth:`~streamml.registry.registry.Registry.publish` like any other model.
    """

    task = "classifier"

    def __init__(self, steps: int, n_features: int, *, channels: int = 16, epochs: int = 20,
                 batch_size: int = 256, lr: float = 5e-3, seed: int = 0, pos_weight: float | None = None) -> None:
        self.steps, self.n_features, self.channels = steps, n_features, channels
        self.epochs, self.batch_size, self.lr, self.seed = epochs, batch_size, lr, seed
        self.pos_weight = pos_weight
        self.net_: Any = None
        self.losses_: list[float] = []

    def fit(self, X: np.ndarray, y: np.ndarray) -> "SequenceClassifier":
        """Train on rows ``X`` ``[n, steps * n_features]`` and binary labels ``y`` (deterministic)."""
        import torch

        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.float32).reshape(-1)
        if X.ndim != 2 or X.shape[1] != self.steps * self.n_features:
            raise ValueError(f"X has shape {X.shape}, expected [n, {self.steps * self.n_features}]")
        switch = sys.getswitchinterval()
        # each small torch op gives up the GIL; with other busy threads in the process (the
        # demo's pipelines) the default 5 ms hand-back makes every step wait many times over
        sys.setswitchinterval(min(switch, 0.0002))
        try:
            with seeded_torch(self.seed, 1):
                per_step = X.reshape(-1, self.steps, self.n_features)
                mean = per_step.mean(axis=(0, 1))
                scale = per_step.std(axis=(0, 1))
                scale = np.where(scale > 1e-6, scale, 1.0).astype(np.float32)
                net = _network(self.steps, self.n_features, self.channels, mean.astype(np.float32), scale)
                pos = float(y.sum())
                weight = self.pos_weight if self.pos_weight is not None else (
                    float(np.sqrt((y.size - pos) / pos)) if pos > 0 else 1.0)
                loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(weight))
                self.losses_ += fit_torch(torch, net, lambda m, x, t: loss_fn(m.logits(x), t),
                                          [torch.from_numpy(X), torch.from_numpy(y)], epochs=self.epochs,
                                          batch_size=self.batch_size, lr=self.lr, weight_decay=0.0, seed=self.seed)
                self.net_ = net
        finally:
            sys.setswitchinterval(switch)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(failure within the horizon) per row, shape ``[n]``."""
        import torch

        if self.net_ is None:
            raise ValueError("fit the model first")
        with torch.no_grad():
            out: np.ndarray = self.net_(torch.from_numpy(np.asarray(X, dtype=np.float32))).numpy()
        return out.astype(np.float64)

    def to_onnx(self, n_features: int) -> Any:
        """The network as an ONNX graph: ``input`` float32 ``[batch, N*F]`` -> ``score`` float32 ``[batch]``."""
        import onnx
        import torch

        if self.net_ is None:
            raise ValueError("fit the model first")
        if n_features != self.steps * self.n_features:
            raise ValueError(f"the model takes {self.steps * self.n_features} features, not {n_features}")
        dummy = torch.zeros(2, n_features, dtype=torch.float32)
        with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
            path = os.path.join(tmp, "model.onnx")
            torch.onnx.export(self.net_, (dummy,), path, input_names=["input"], output_names=["score"],
                              dynamic_axes={"input": {0: "batch"}, "score": {0: "batch"}}, opset_version=17,
                              dynamo=False, do_constant_folding=True)
            model = onnx.load(path)
        for i, node in enumerate(model.graph.node):
            node.name = f"seq_{i}"
        return model


def best_threshold(y: np.ndarray, score: np.ndarray) -> float:
    """The score threshold with the best F1 on ``(y, score)`` (0.5 when there is no positive).

    >>> best_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.9]))
    0.35
    """
    y = np.asarray(y).astype(np.int64).reshape(-1)
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    if y.sum() == 0 or y.size == 0:
        return 0.5
    best, best_f1 = 0.5, -1.0
    for t in np.unique(np.round(s, 4)):
        pred = s >= t
        tp = float((pred & (y == 1)).sum())
        f1 = 2 * tp / (float(pred.sum()) + float(y.sum()))
        if f1 > best_f1 + 1e-12:
            best, best_f1 = float(t), f1
    return round(best, 4)
