"""Feature rows -> the float32 matrix a model takes, with the same validation everywhere.

The stream scorer and the HTTP endpoint both go through :func:`to_matrix`: columns are
taken in the model's input order, cast to float32, and a row with a missing, null or
non-numeric feature is rejected with a reason instead of being scored.

>>> import polars as pl
>>> df = pl.DataFrame({"b": [1.0, None, 3.0], "a": ["1", "2", "x"]})
>>> fm = to_matrix(df, ("a", "b"))
>>> fm.x.tolist(), fm.rows.tolist()
([[1.0, 1.0]], [0])
>>> fm.rejected
{1: 'feature b is null', 2: "feature a is not a number: 'x'"}
>>> to_matrix(df, ("a", "c")).rejected[0]
'missing feature c'
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

__all__ = ["FeatureMatrix", "to_matrix", "missing_columns"]


@dataclass
class FeatureMatrix:
    """``x`` holds the valid rows (in order); ``rows`` their indexes in the input; ``rejected`` the rest."""

    x: np.ndarray
    rows: np.ndarray
    rejected: dict[int, str] = field(default_factory=dict)

    @property
    def all_valid(self) -> bool:
        return not self.rejected


def missing_columns(columns: list[str] | tuple[str, ...], required: tuple[str, ...]) -> list[str]:
    """The ``required`` columns not among ``columns``, in order."""
    have = set(columns)
    return [c for c in required if c not in have]


def to_matrix(df: pl.DataFrame, columns: tuple[str, ...]) -> FeatureMatrix:
    """Select ``columns`` of ``df`` in order as float32, rejecting rows that cannot be scored."""
    n = df.height
    missing = missing_columns(df.columns, columns)
    if missing:
        reason = f"missing feature {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        return FeatureMatrix(np.zeros((0, len(columns)), dtype=np.float32), np.zeros(0, dtype=np.int64),
                             {i: reason for i in range(n)})
    if all(df.schema[c].is_numeric() for c in columns) and not any(df[c].null_count() for c in columns):
        x = df.select(columns).to_numpy().astype(np.float32, copy=False)  # the common case: clean numbers
        return FeatureMatrix(np.ascontiguousarray(x), np.arange(n, dtype=np.int64))
    numeric = df.select([pl.col(c).cast(pl.Float32, strict=False) for c in columns])
    nulls = numeric.select(pl.any_horizontal([pl.col(c).is_null() for c in columns]).alias("bad"))["bad"]
    if not nulls.any():
        return FeatureMatrix(numeric.to_numpy().astype(np.float32, copy=False), np.arange(n, dtype=np.int64))
    bad = np.flatnonzero(nulls.to_numpy())
    rejected: dict[int, str] = {}
    for i in bad.tolist():
        for c in columns:
            if numeric[c][i] is None:
                raw = df[c][i]
                rejected[i] = f"feature {c} is null" if raw is None else f"feature {c} is not a number: {raw!r}"
                break
    good = np.flatnonzero(~nulls.to_numpy())
    x = numeric[good.tolist()].to_numpy().astype(np.float32, copy=False) if good.size else \
        np.zeros((0, len(columns)), dtype=np.float32)
    return FeatureMatrix(x, good.astype(np.int64), rejected)
