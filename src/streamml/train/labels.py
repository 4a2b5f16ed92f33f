"""Delayed labels, joined to features point-in-time correctly.

Ground truth arrives late, on ``<ns>.labels.<stream>``: one JSON record per label with the
event's id (``event_id``, also used as the record key) and the label value (``label``).
A label's **arrival time** is the Kafka timestamp of its record.

The rule. A label counts for an event if and only if

1. it lies in the dataset's pinned label offset ranges (pinned at ``as_of``);
2. it arrived at or before ``as_of`` — the moment the training data is taken to be
   "known" (by default the time the dataset was pinned; for a time split, the end of that
   split's window, so a training window never sees labels from its future);
3. it arrived no earlier than the event itself (``arrival >= event_time``), since a label
   that predates its event is a clock or key error; and
4. when ``max_delay_ms`` is set, it arrived within ``max_delay_ms`` of the event
   (a chargeback after the window is not a label the model could have learnt from).

When several labels of one event qualify, the last to arrive wins (corrections replace
earlier verdicts; equal times fall back to the higher offset). Events with no qualifying
label are *unlabelled*: dropped, kept with a null label, or filled with a default.

>>> import polars as pl
>>> feats = pl.DataFrame({"event_id": ["a", "b", "c"], "event_time": [100, 100, 100], "x": [1.0, 2.0, 3.0]})
>>> labels = pl.DataFrame({"event_id": ["a", "a", "b", "c"], "_label": [0, 1, 1, 1],
...                        "_arrival": [150, 160, 400, 90], "_loff": [0, 1, 2, 3]})
>>> rule = LabelRule(as_of_ms=300)
>>> join_labels(feats, labels, rule, label="label").to_dicts()  # doctest: +NORMALIZE_WHITESPACE
[{'event_id': 'a', 'event_time': 100, 'x': 1.0, 'label': 1},
 {'event_id': 'b', 'event_time': 100, 'x': 2.0, 'label': None},
 {'event_id': 'c', 'event_time': 100, 'x': 3.0, 'label': None}]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

__all__ = ["LabelRule", "join_labels", "labels_frame"]


@dataclass(frozen=True)
class LabelRule:
    """When a label counts (see the module docstring)."""

    as_of_ms: int
    max_delay_ms: int | None = None
    key: str = "event_id"
    time_field: str = "event_time"

    def with_as_of(self, as_of_ms: int) -> "LabelRule":
        return LabelRule(min(self.as_of_ms, as_of_ms), self.max_delay_ms, self.key, self.time_field)

    def as_dict(self) -> dict[str, Any]:
        return {"as_of_ms": self.as_of_ms, "max_delay_ms": self.max_delay_ms, "key": self.key,
                "time_field": self.time_field}


def labels_frame(df: pl.DataFrame, *, key: str, field: str, arrival: list[int], offsets: list[int]) -> pl.DataFrame:
    """Decoded label records -> ``key, _label, _arrival, _loff`` (the shape :func:`join_labels` takes)."""
    if df.height == 0 or key not in df.columns or field not in df.columns:
        return pl.DataFrame(schema={key: pl.String, "_label": pl.Int64, "_arrival": pl.Int64, "_loff": pl.Int64})
    return df.select(pl.col(key).cast(pl.String), pl.col(field).alias("_label")).with_columns(
        pl.Series("_arrival", arrival, dtype=pl.Int64), pl.Series("_loff", offsets, dtype=pl.Int64))


def join_labels(features: pl.DataFrame, labels: pl.DataFrame, rule: LabelRule, *, label: str) -> pl.DataFrame:
    """``features`` with a ``label`` column from ``labels`` under ``rule``; row order is kept."""
    key, tcol = rule.key, rule.time_field
    if features.height == 0:
        return features.with_columns(pl.lit(None, dtype=labels.schema.get("_label", pl.Int64)).alias(label))
    left = features.with_row_index("_row")
    cand = left.select("_row", pl.col(key).cast(pl.String), pl.col(tcol).cast(pl.Int64).alias("_et")).join(
        labels, on=key, how="inner")
    cond = (pl.col("_arrival") <= rule.as_of_ms) & (pl.col("_arrival") >= pl.col("_et"))
    if rule.max_delay_ms is not None:
        cond = cond & (pl.col("_arrival") - pl.col("_et") <= rule.max_delay_ms)
    best = (cand.filter(cond).sort(["_row", "_arrival", "_loff"])
            .group_by("_row", maintain_order=True).agg(pl.col("_label").last().alias(label)))
    out = left.drop(label, strict=False).join(best, on="_row", how="left", maintain_order="left")
    return out.drop("_row")
