"""Live model quality: predictions joined with delayed labels over a sliding window.

Predictions arrive on ``<ns>.predictions.<model>`` (``event_id``, ``score`` and the model
version); ground truth arrives later on ``<ns>.labels.<stream>`` keyed by ``event_id``.
:class:`QualityTracker` holds both sides in Polars frames, joins them batch-wise as labels
come in, and keeps the last ``window`` labelled predictions. Predictions whose label does
not arrive within ``max_pending`` stay unlabelled and are dropped.

For classification it reports precision, recall, F1, ROC AUC and the positive rate at
``threshold``; for regression MAE and RMSE. Figures are broken down per model version
too, so "before" and "after" a swap can be read side by side.

>>> q = QualityTracker(window=100, threshold=0.5)
>>> q.add_predictions(["a", "b", "c", "d"], [0.9, 0.2, 0.7, 0.1], version=1)
>>> q.add_labels(["a", "b", "c", "d"], [1, 0, 0, 1])
>>> r = q.evaluate()
>>> r["n"], r["precision"], r["recall"], r["auc"]
(4, 0.5, 0.5, 0.5)
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import polars as pl

__all__ = ["QualityTracker", "classification_report", "regression_report"]

_PRED_SCHEMA = {"event_id": pl.String, "score": pl.Float64, "version": pl.String, "_pt": pl.Int64}
_LABEL_SCHEMA = {"event_id": pl.String, "label": pl.Float64, "_lt": pl.Int64}


def classification_report(y: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Precision, recall, F1, ROC AUC and rates of binary labels ``y`` against ``score``.

    >>> classification_report(np.array([1, 0, 1, 0]), np.array([0.8, 0.1, 0.4, 0.3]))["recall"]
    0.5
    """
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    y = (np.asarray(y, dtype=np.float64) > 0.5).astype(np.int64)
    s = np.asarray(score, dtype=np.float64)
    pred = (s >= threshold).astype(np.int64)
    out: dict[str, Any] = {"n": int(y.size), "positives": int(y.sum()), "predicted_positive": int(pred.sum())}
    if y.size == 0:
        return {**out, "precision": None, "recall": None, "f1": None, "auc": None, "accuracy": None}
    out["precision"] = round(float(precision_score(y, pred, zero_division=0)), 6)
    out["recall"] = round(float(recall_score(y, pred, zero_division=0)), 6)
    out["f1"] = round(float(f1_score(y, pred, zero_division=0)), 6)
    out["accuracy"] = round(float((y == pred).mean()), 6)
    out["auc"] = round(float(roc_auc_score(y, s)), 6) if 0 < y.sum() < y.size else None
    return out


def regression_report(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """MAE and RMSE.

    >>> regression_report(np.array([1.0, 2.0]), np.array([1.5, 2.5]))
    {'n': 2, 'mae': 0.5, 'rmse': 0.5}
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    if y.size == 0:
        return {"n": 0, "mae": None, "rmse": None}
    err = p - y
    return {"n": int(y.size), "mae": round(float(np.abs(err).mean()), 6),
            "rmse": round(float(np.sqrt((err ** 2).mean())), 6)}


class QualityTracker:
    """Joins predictions with delayed labels and scores the last ``window`` joined rows.

    Parameters
    ----------
    window:
        How many most recent labelled predictions are scored.
    task:
        ``"classification"`` or ``"regression"``.
    threshold:
        Score at or above which a prediction counts as positive.
    max_pending:
        Predictions (and labels) older than this many seconds without a partner are dropped.
    """

    def __init__(self, *, window: int = 2000, task: str = "classification", threshold: float = 0.5,
                 max_pending: float = 600.0) -> None:
        self.window = int(window)
        self.task = task
        self.threshold = float(threshold)
        self.max_pending_ms = int(max_pending * 1000)
        self._preds = pl.DataFrame(schema=_PRED_SCHEMA)
        self._labels = pl.DataFrame(schema=_LABEL_SCHEMA)
        self._joined = pl.DataFrame(schema={"event_id": pl.String, "score": pl.Float64, "version": pl.String,
                                            "label": pl.Float64, "_lt": pl.Int64})
        self.labelled_total = 0

    def add_predictions(self, event_ids: Sequence[str] | pl.Series, scores: Sequence[float] | np.ndarray | pl.Series,
                        *, version: int | str | Sequence[Any] | pl.Series | None = None,
                        now_ms: int | None = None) -> None:
        """Add a batch of predictions (``version`` is one value or one per row)."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        n = len(event_ids)
        if n == 0:
            return
        if version is None or isinstance(version, (int, str)):
            ver: Any = pl.repeat("" if version is None else str(version), n, eager=True)
        else:
            ver = pl.Series(version).cast(pl.String)
        df = pl.DataFrame({"event_id": pl.Series(event_ids).cast(pl.String),
                           "score": pl.Series(scores).cast(pl.Float64), "version": ver,
                           "_pt": pl.repeat(now, n, dtype=pl.Int64, eager=True)})
        self._preds = pl.concat([self._preds, df], how="vertical_relaxed")
        self._match(now)

    def add_labels(self, event_ids: Sequence[str] | pl.Series, labels: Sequence[float] | np.ndarray | pl.Series,
                   *, now_ms: int | None = None) -> None:
        """Add a batch of ground-truth labels."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        n = len(event_ids)
        if n == 0:
            return
        df = pl.DataFrame({"event_id": pl.Series(event_ids).cast(pl.String),
                           "label": pl.Series(labels).cast(pl.Float64),
                           "_lt": pl.repeat(now, n, dtype=pl.Int64, eager=True)})
        self._labels = pl.concat([self._labels, df], how="vertical_relaxed")
        self._match(now)

    def _match(self, now: int) -> None:
        if self._preds.height == 0 or self._labels.height == 0:
            self._expire(now)
            return
        labels = self._labels.unique("event_id", keep="last", maintain_order=True)
        preds = self._preds.unique("event_id", keep="last", maintain_order=True)
        joined = preds.join(labels, on="event_id", how="inner")
        if joined.height:
            ids = joined.get_column("event_id")
            self._preds = self._preds.filter(~pl.col("event_id").is_in(ids.implode()))
            self._labels = self._labels.filter(~pl.col("event_id").is_in(ids.implode()))
            self._joined = pl.concat([self._joined, joined.select(self._joined.columns)],
                                     how="vertical_relaxed").tail(self.window)
            self.labelled_total += joined.height
        self._expire(now)

    def _expire(self, now: int) -> None:
        cut = now - self.max_pending_ms
        if self._preds.height:
            self._preds = self._preds.filter(pl.col("_pt") >= cut)
        if self._labels.height:
            self._labels = self._labels.filter(pl.col("_lt") >= cut)

    @property
    def pending(self) -> int:
        """Predictions still waiting for their label."""
        return self._preds.height

    def reset(self) -> None:
        """Forget the scored window (pending predictions are kept)."""
        self._joined = self._joined.clear()

    def joined(self) -> pl.DataFrame:
        """The window of labelled predictions (``event_id, score, version, label``)."""
        return self._joined.drop("_lt")

    def evaluate(self, version: int | str | None = None) -> dict[str, Any]:
        """Quality over the window (only ``version``'s rows when given), with per-version figures."""
        df = self._joined if version is None else self._joined.filter(pl.col("version") == str(version))
        out = self._report(df)
        out["pending"] = self.pending
        out["labelled_total"] = self.labelled_total
        if version is None:
            out["by_version"] = {v: self._report(self._joined.filter(pl.col("version") == v))
                                 for v in sorted(self._joined.get_column("version").unique().to_list())}
        return out

    def _report(self, df: pl.DataFrame) -> dict[str, Any]:
        y = df.get_column("label").to_numpy()
        s = df.get_column("score").to_numpy()
        if self.task == "regression":
            return regression_report(y, s)
        return classification_report(y, s, self.threshold)
