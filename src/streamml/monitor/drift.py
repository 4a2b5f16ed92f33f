"""Feature and prediction drift: PSI and KS per feature over sliding windows.

A :class:`Reference` summarises the training data of the production model, feature by
feature: for numeric features the decile bin edges, the share of training rows in each
bin and a sample (for the KS test); for categorical ones the share of each category.
It is small and JSON-able, so it travels inside the model descriptor (``metrics`` or the
training manifest, under ``"reference"``) and the monitor compares the live stream with
exactly what the model was trained on.

A :class:`DriftDetector` keeps the last ``window`` values of each feature in a ring
buffer and scores them against the reference:

* **PSI** (population stability index), ``sum((a - e) * ln(a / e))`` over the reference
  bins: < 0.1 stable, 0.1-0.2 moderate, > 0.2 a shift worth acting on.
* **KS**, the two-sample Kolmogorov-Smirnov statistic (max distance between the CDFs),
  against the reference sample.

A feature drifts when its PSI exceeds ``psi_threshold`` or its KS statistic exceeds
``ks_threshold``.

>>> import numpy as np, polars as pl
>>> rng = np.random.default_rng(0)
>>> train = pl.DataFrame({"amount": rng.normal(50, 10, 5000), "country": rng.choice(["FR", "DE"], 5000)})
>>> ref = Reference.from_frame(train)
>>> det = DriftDetector(ref, window=2000, min_samples=500)
>>> det.update(pl.DataFrame({"amount": rng.normal(50, 10, 2000), "country": rng.choice(["FR", "DE"], 2000)}))
>>> det.evaluate().drifted
[]
>>> det.update(pl.DataFrame({"amount": rng.normal(80, 10, 2000), "country": rng.choice(["FR", "DE"], 2000)}))
>>> report = det.evaluate()
>>> report.drifted, report.features["amount"].psi > 1.0
(['amount'], True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import polars as pl

__all__ = ["Reference", "FeatureRef", "DriftDetector", "DriftReport", "FeatureDrift", "psi", "ks_statistic"]

_EPS = 1e-4


def psi(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray, eps: float = _EPS) -> float:
    """Population stability index between two distributions over the same bins.

    Both inputs are counts or shares; they are normalised, and empty bins are floored at
    ``eps`` so the logarithm stays finite.

    >>> psi([0.5, 0.5], [0.5, 0.5])
    0.0
    >>> round(psi([0.5, 0.5], [0.9, 0.1]), 3)
    0.879
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    e = np.maximum(e / max(e.sum(), 1e-12), eps)
    a = np.maximum(a / max(a.sum(), 1e-12), eps)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_statistic(reference: np.ndarray, sample: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic (vectorised, no p-value).

    >>> ks_statistic(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]))
    0.0
    >>> ks_statistic(np.array([1.0, 2.0]), np.array([5.0, 6.0]))
    1.0
    """
    r = np.sort(np.asarray(reference, dtype=np.float64))
    s = np.sort(np.asarray(sample, dtype=np.float64))
    if r.size == 0 or s.size == 0:
        return 0.0
    grid = np.concatenate([r, s])
    cdf_r = np.searchsorted(r, grid, side="right") / r.size
    cdf_s = np.searchsorted(s, grid, side="right") / s.size
    return float(np.max(np.abs(cdf_r - cdf_s)))


@dataclass(frozen=True)
class FeatureRef:
    """The reference of one feature (numeric: ``edges``/``shares``/``sample``; categorical: ``categories``)."""

    name: str
    kind: str                                   # "numeric" | "categorical"
    edges: tuple[float, ...] = ()               # inner bin edges (len = bins - 1)
    shares: tuple[float, ...] = ()              # share per bin (len = bins), or per category
    categories: tuple[str, ...] = ()
    sample: tuple[float, ...] = ()
    mean: float | None = None
    std: float | None = None

    def histogram(self, values: np.ndarray) -> np.ndarray:
        """Counts of ``values`` in this feature's bins (or categories, plus one "other")."""
        if self.kind == "numeric":
            v = values.astype(np.float64, copy=False)
            v = v[np.isfinite(v)]
            return np.bincount(np.searchsorted(np.asarray(self.edges), v, side="right"),
                               minlength=len(self.edges) + 1).astype(np.float64)
        cats = np.asarray(self.categories, dtype=object)
        vals = values.astype(str)
        idx = {c: i for i, c in enumerate(cats.tolist())}
        uniq, counts = np.unique(vals, return_counts=True)
        out = np.zeros(len(cats) + 1)
        for u, k in zip(uniq.tolist(), counts.tolist()):
            out[idx.get(u, len(cats))] += k
        return out

    def expected(self) -> np.ndarray:
        shares = np.asarray(self.shares, dtype=np.float64)
        return np.append(shares, 0.0) if self.kind == "categorical" else shares

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind, "shares": list(self.shares)}
        if self.kind == "numeric":
            d.update(edges=list(self.edges), sample=list(self.sample), mean=self.mean, std=self.std)
        else:
            d["categories"] = list(self.categories)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FeatureRef":
        return cls(name=str(d["name"]), kind=str(d.get("kind", "numeric")),
                   edges=tuple(float(x) for x in d.get("edges", ())),
                   shares=tuple(float(x) for x in d.get("shares", ())),
                   categories=tuple(str(x) for x in d.get("categories", ())),
                   sample=tuple(float(x) for x in d.get("sample", ())),
                   mean=d.get("mean"), std=d.get("std"))


@dataclass(frozen=True)
class Reference:
    """What the production model was trained on, feature by feature (see the module doc)."""

    features: dict[str, FeatureRef]
    rows: int = 0
    model: str | None = None
    version: int | str | None = None

    @classmethod
    def from_frame(cls, df: pl.DataFrame, features: Sequence[str] | None = None, *, bins: int = 10,
                   sample: int = 1000, seed: int = 0, max_categories: int = 50,
                   model: str | None = None, version: int | str | None = None) -> "Reference":
        """Summarise ``df`` (training features, or a ``score`` column for prediction drift)."""
        cols = list(features) if features is not None else [
            c for c, t in df.schema.items() if t.is_numeric() or t in (pl.String, pl.Categorical, pl.Boolean)]
        rng = np.random.default_rng(seed)
        out: dict[str, FeatureRef] = {}
        for name in cols:
            s = df.get_column(name).drop_nulls()
            dtype = s.dtype
            if dtype.is_numeric() and dtype != pl.Boolean:
                v = s.cast(pl.Float64).to_numpy()
                v = v[np.isfinite(v)]
                if v.size == 0:
                    continue
                uniq = np.unique(v)
                if uniq.size <= 2 * bins:      # few distinct values (flags, counts): one bin per value,
                    half = float(np.min(np.diff(uniq))) / 2.0 if uniq.size > 1 else 0.5
                    inner = (uniq[:-1] + uniq[1:]) / 2.0   # plus one bin each side for unseen values
                    edges = np.concatenate([[uniq[0] - half], inner, [uniq[-1] + half]])
                else:
                    edges = np.unique(np.quantile(v, np.linspace(0, 1, bins + 1)[1:-1]))
                counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1)
                pick = v if v.size <= sample else rng.choice(v, sample, replace=False)
                out[name] = FeatureRef(name, "numeric", tuple(edges.tolist()), tuple((counts / v.size).tolist()),
                                       sample=tuple(np.round(np.sort(pick), 6).tolist()),
                                       mean=float(v.mean()), std=float(v.std()))
            else:
                vc = s.cast(pl.String).value_counts(sort=True).head(max_categories)
                total = max(s.len(), 1)
                cats = vc.get_column(name).to_list()
                shares = (vc.get_column("count").to_numpy() / total).tolist()
                out[name] = FeatureRef(name, "categorical", shares=tuple(shares), categories=tuple(cats))
        return cls(out, rows=df.height, model=model, version=version)

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "model": self.model, "version": self.version,
                "features": {k: v.as_dict() for k, v in self.features.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Reference":
        feats = d.get("features", {})
        if isinstance(feats, list):
            feats = {f["name"]: f for f in feats}
        return cls({k: FeatureRef.from_dict({"name": k, **v}) for k, v in feats.items()},
                   rows=int(d.get("rows", 0)), model=d.get("model"), version=d.get("version"))

    @classmethod
    def coerce(cls, ref: "Reference | Mapping[str, Any] | pl.DataFrame") -> "Reference":
        """A Reference from a Reference, its dict form, or a training DataFrame."""
        if isinstance(ref, Reference):
            return ref
        if isinstance(ref, pl.DataFrame):
            return cls.from_frame(ref)
        return cls.from_dict(ref)


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    psi: float
    ks: float | None
    n: int
    drifted: bool
    mean: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "psi": round(self.psi, 6), "ks": None if self.ks is None else round(self.ks, 6),
                "n": self.n, "drifted": self.drifted, "mean": self.mean}


@dataclass(frozen=True)
class DriftReport:
    """Drift of every feature of one window."""

    features: dict[str, FeatureDrift] = field(default_factory=dict)
    psi_threshold: float = 0.2
    ks_threshold: float | None = None

    @property
    def drifted(self) -> list[str]:
        return sorted(n for n, f in self.features.items() if f.drifted)

    def worst(self) -> FeatureDrift | None:
        return max(self.features.values(), key=lambda f: f.psi, default=None)

    def reason(self) -> str:
        """One line naming the drifted features, e.g. ``psi(amount)=0.41>0.2``."""
        parts = []
        for n in self.drifted:
            f = self.features[n]
            if f.psi > self.psi_threshold:
                parts.append(f"psi({n})={f.psi:.2f}>{self.psi_threshold:g}")
            elif f.ks is not None and self.ks_threshold is not None:
                parts.append(f"ks({n})={f.ks:.2f}>{self.ks_threshold:g}")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"drifted": self.drifted, "psi_threshold": self.psi_threshold, "ks_threshold": self.ks_threshold,
                "features": {k: v.as_dict() for k, v in self.features.items()}}


class DriftDetector:
    """Sliding-window drift of live features against a :class:`Reference`.

    Parameters
    ----------
    reference:
        A :class:`Reference`, its dict form, or a training DataFrame.
    window:
        How many most recent values per feature are compared.
    min_samples:
        Features with fewer values in the window are not judged.
    psi_threshold, ks_threshold:
        A feature drifts above either (``ks_threshold=None`` disables the KS rule).
    """

    def __init__(self, reference: Reference | Mapping[str, Any] | pl.DataFrame, *, window: int = 5000,
                 min_samples: int = 500, psi_threshold: float = 0.2, ks_threshold: float | None = 0.3) -> None:
        self.reference = Reference.coerce(reference)
        self.window = int(window)
        self.min_samples = int(min_samples)
        self.psi_threshold = float(psi_threshold)
        self.ks_threshold = ks_threshold
        self._buf: dict[str, np.ndarray] = {}
        self._n: dict[str, int] = {}
        self._pos: dict[str, int] = {}
        self.seen = 0

    def reset(self, reference: Reference | Mapping[str, Any] | pl.DataFrame | None = None) -> None:
        """Empty the windows (and switch to a new reference, e.g. after a promotion)."""
        if reference is not None:
            self.reference = Reference.coerce(reference)
        self._buf.clear()
        self._n.clear()
        self._pos.clear()

    def update(self, batch: pl.DataFrame | Mapping[str, np.ndarray]) -> None:
        """Append a batch (columns named like the reference's features; others are ignored)."""
        cols = batch.columns if isinstance(batch, pl.DataFrame) else list(batch)
        for name, ref in self.reference.features.items():
            if name not in cols:
                continue
            col = batch[name]
            if isinstance(col, pl.Series):
                col = col.drop_nulls()
                v = col.cast(pl.Float64).to_numpy() if ref.kind == "numeric" else col.cast(pl.String).to_numpy()
            else:
                v = np.asarray(col)
            self._push(name, v, ref.kind)
        self.seen += len(batch) if isinstance(batch, pl.DataFrame) else 0

    def _push(self, name: str, v: np.ndarray, kind: str) -> None:
        w = self.window
        buf = self._buf.get(name)
        if buf is None:
            buf = self._buf[name] = np.empty(w, dtype=np.float64 if kind == "numeric" else object)
            self._n[name], self._pos[name] = 0, 0
        v = v[-w:]
        k = v.size
        pos = self._pos[name]
        end = pos + k
        if end <= w:
            buf[pos:end] = v
        else:
            first = w - pos
            buf[pos:] = v[:first]
            buf[: k - first] = v[first:]
        self._pos[name] = end % w
        self._n[name] = min(w, self._n[name] + k)

    def values(self, name: str) -> np.ndarray:
        """The current window of one feature (unordered)."""
        buf = self._buf.get(name)
        return np.empty(0) if buf is None else buf[: self._n[name]]

    def evaluate(self) -> DriftReport:
        """PSI and KS of every feature with at least ``min_samples`` values in the window."""
        out: dict[str, FeatureDrift] = {}
        for name, ref in self.reference.features.items():
            v = self.values(name)
            if v.size < self.min_samples:
                continue
            p = psi(ref.expected(), ref.histogram(v))
            ks = None
            mean = None
            if ref.kind == "numeric":
                finite = v[np.isfinite(v)]
                mean = float(finite.mean()) if finite.size else None
                if ref.sample:
                    ks = ks_statistic(np.asarray(ref.sample), finite)
            drifted = p > self.psi_threshold or (
                ks is not None and self.ks_threshold is not None and ks > self.ks_threshold)
            out[name] = FeatureDrift(name, p, ks, int(v.size), bool(drifted), mean)
        return DriftReport(out, self.psi_threshold, self.ks_threshold)
