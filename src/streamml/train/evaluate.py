"""Metrics, all oriented so that higher is better, and scoring a model on a held-out window.

>>> import numpy as np
>>> score_metric("roc_auc", np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
0.75
>>> score_metric("accuracy", np.array([0, 1]), np.array([0.2, 0.9]))
1.0
>>> score_metric("neg_log_loss", np.array([0, 1]), np.array([0.5, 0.5])) < 0
True
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from streamml.errors import ConfigError, ModelError

__all__ = ["METRICS", "score_metric", "evaluate"]


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s))


def _ap(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, s))


def _acc(y: np.ndarray, s: np.ndarray) -> float:
    return float(np.mean((s >= 0.5).astype(int) == y.astype(int)))


def _f1(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y.astype(int), (s >= 0.5).astype(int), zero_division=0))


def _nll(y: np.ndarray, s: np.ndarray) -> float:
    p = np.clip(s, 1e-7, 1 - 1e-7)
    return float(np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _nmse(y: np.ndarray, s: np.ndarray) -> float:
    return -float(np.mean((y.astype(float) - s) ** 2))


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "roc_auc": _auc, "average_precision": _ap, "accuracy": _acc, "f1": _f1, "neg_log_loss": _nll,
    "neg_mse": _nmse,
}


def score_metric(metric: str, y: Any, scores: Any) -> float:
    """``metric`` of ``scores`` against labels ``y`` (higher is better for every metric)."""
    fn = METRICS.get(metric)
    if fn is None:
        raise ConfigError(f"unknown metric {metric!r}", hint="use one of " + ", ".join(METRICS))
    y = np.asarray(y)
    if y.dtype == bool:
        y = y.astype(int)
    s = np.asarray(scores, dtype=np.float64)
    if len(y) == 0:
        raise ModelError(f"cannot compute {metric} on an empty held-out window",
                         hint="the held-out window has no labelled rows; widen it or wait for labels")
    if metric in ("roc_auc", "average_precision") and len(np.unique(y)) < 2:
        raise ModelError(f"cannot compute {metric}: the held-out window has only one class")
    return round(fn(y, s), 12)


def evaluate(model: Any, frame: Any, y: Any, metric: str) -> float:
    """Score a :class:`~streamml.registry.base.LoadedModel` (anything with ``score(X)``) on ``frame`` against ``y``."""
    return score_metric(metric, y, model.score(frame))
