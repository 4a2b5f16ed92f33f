"""The point-in-time label rule and the built-in trainers' determinism, without a broker."""

from __future__ import annotations

import numpy as np
import polars as pl

from streamml.train import LabelRule, score_metric
from streamml.train.labels import join_labels


def _labels(rows: list[tuple[str, int, int]]) -> pl.DataFrame:
    return pl.DataFrame({"event_id": [r[0] for r in rows], "_label": [r[1] for r in rows],
                         "_arrival": [r[2] for r in rows], "_loff": list(range(len(rows)))})


def test_rule_cutoff_order_delay_and_corrections() -> None:
    feats = pl.DataFrame({"event_id": ["a", "b", "c", "d"], "event_time": [100, 200, 300, 400]})
    labels = _labels([("a", 0, 150), ("a", 1, 180), ("b", 1, 199), ("c", 1, 900), ("d", 1, 420),
                      ("d", 0, 420)])
    got = join_labels(feats, labels, LabelRule(as_of_ms=500), label="y")["y"].to_list()
    # a: correction wins; b: predates its event; c: after as_of; d: same arrival -> higher offset wins
    assert got == [1, None, None, 0]
    got = join_labels(feats, labels, LabelRule(as_of_ms=1000, max_delay_ms=60), label="y")["y"].to_list()
    assert got == [0, None, None, 0]
    assert join_labels(feats, labels, LabelRule(as_of_ms=1000), label="y")["y"].to_list() == [1, None, 1, 0]


def test_join_keeps_row_order_and_duplicates() -> None:
    feats = pl.DataFrame({"event_id": ["b", "a", "b"], "event_time": [1, 1, 1], "x": [1, 2, 3]})
    out = join_labels(feats, _labels([("a", 1, 5), ("b", 0, 5)]), LabelRule(as_of_ms=10), label="y")
    assert out["x"].to_list() == [1, 2, 3] and out["y"].to_list() == [0, 1, 0]


def test_metrics_are_higher_is_better() -> None:
    y = np.array([0, 1, 1, 0, 1])
    good, bad = np.array([0.1, 0.9, 0.8, 0.2, 0.7]), np.array([0.9, 0.1, 0.2, 0.8, 0.3])
    for m in ("roc_auc", "average_precision", "accuracy", "f1", "neg_log_loss", "neg_mse"):
        assert score_metric(m, y, good) > score_metric(m, y, bad), m
