"""The one model contract: what every loaded model offers, whoever loaded it.

A model version ready to score is a :class:`LoadedModel`: its ``name``, ``version``, the
ordered ``input_columns`` it reads, ``predict(x) -> Scores`` over a float32 matrix (one row
per event, columns in ``input_columns`` order: what the scorer calls once per batch), and
``score(X) -> ndarray`` over any table-like input (NumPy, Polars, pandas, Arrow, a list of
dicts: what training, evaluation and notebooks call). :meth:`Registry.load
<streamml.registry.Registry.load>` returns one, the scorer serves one, a training job
evaluates one.

:class:`Model` is the base class implementations derive from: they write ``predict`` and
inherit ``score`` (the input is turned into the matrix ``predict`` takes by
:func:`as_matrix`). The implementations are :class:`~streamml.registry.models.OnnxModel`
(ONNX Runtime), :class:`~streamml.registry.models.PythonModel` (signed pickles, e.g. River)
and, for serving, :class:`~streamml.serve.base.Constant` and :class:`~streamml.serve.base.Slow`.

>>> import numpy as np
>>> class Half(Model):
...     def __init__(self) -> None:
...         self.name, self.version, self.input_columns = "half", 1, ("a", "b")
...     def predict(self, x: np.ndarray) -> Scores:
...         return Scores(x[:, 0].astype(np.float64) / 2)
>>> m = Half()
>>> isinstance(m, LoadedModel), m.score([{"a": 1.0, "b": 0.0}, {"a": 3.0}]).tolist()
(True, [0.5, 1.5])
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from streamml.errors import ConfigError

__all__ = ["Scores", "LoadedModel", "Model", "as_matrix"]


@dataclass
class Scores:
    """A batch's answers: ``score`` (float64, one per row) and ``label`` (int64) when the model has one.

    >>> s = Scores(np.array([0.1, 0.9]), np.array([0, 1]))
    >>> len(s), s.take(np.array([1])).label.tolist()
    (2, [1])
    """

    score: np.ndarray
    label: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.score.shape[0])

    def take(self, rows: np.ndarray) -> "Scores":
        """The answers of ``rows`` only (an index or boolean mask)."""
        return Scores(self.score[rows], None if self.label is None else self.label[rows])


@runtime_checkable
class LoadedModel(Protocol):
    """A model version ready to score: the contract every loaded model honours.

    Attributes
    ----------
    name : str
        The model's name (the registry key).
    version : int
        Its version number.
    input_columns : tuple of str
        The feature columns it reads, in the order ``predict`` expects them.
    """

    name: str
    version: int
    input_columns: tuple[str, ...]

    def predict(self, x: np.ndarray) -> Scores:
        """Score a float32 matrix with ``len(input_columns)`` columns, one row per event."""
        ...

    def score(self, X: Any) -> np.ndarray:
        """One float64 score per row of ``X`` (any input :func:`as_matrix` takes); higher = more positive."""
        ...


class Model(ABC):
    """Base class of :class:`LoadedModel` implementations: write ``predict``, inherit ``score``.

    Attributes
    ----------
    threshold : float or None
        When set, ``label = score >= threshold`` (implementations apply it).
    sha256 : str
        Hex SHA-256 of the artifact the model was loaded from ("" when there is none).
    descriptor : Descriptor or None
        The registry descriptor it was loaded from (None when it was not).
    """

    name: str
    version: int
    input_columns: tuple[str, ...]
    threshold: float | None = None
    sha256: str = ""
    descriptor: Any = None

    @abstractmethod
    def predict(self, x: np.ndarray) -> Scores:
        """Score a float32 matrix with ``len(input_columns)`` columns, one row per event."""

    def score(self, X: Any) -> np.ndarray:
        """One float64 score per row of ``X`` (NumPy in column order, Polars/pandas/Arrow, or dicts)."""
        return np.asarray(self.predict(as_matrix(X, self.input_columns)).score, dtype=np.float64)

    def _labels(self, score: np.ndarray, label: np.ndarray | None = None) -> np.ndarray | None:
        """``label``, or ``score >= threshold`` when the model has a threshold."""
        if self.threshold is not None:
            return (score >= self.threshold).astype(np.int64)
        return label


def as_matrix(X: Any, features: Sequence[str], dtype: Any = np.float32) -> np.ndarray:
    """Rows of ``X`` (NumPy, Polars, pandas, Arrow, or a list of dicts) as a feature matrix.

    Missing and null values become 0.

    >>> as_matrix([{"b": 2, "a": 1}, {"a": None}], ["a", "b"]).tolist()
    [[1.0, 2.0], [0.0, 0.0]]
    """
    if isinstance(X, np.ndarray):
        return X.astype(dtype, copy=False) if X.ndim == 2 else X.reshape(1, -1).astype(dtype)
    if isinstance(X, list):
        return np.array([[float(r.get(f) or 0.0) for f in features] for r in X], dtype=dtype).reshape(-1, len(features))
    mod = type(X).__module__
    if mod.startswith("pyarrow"):
        import polars as pl

        X = pl.from_arrow(X)
        mod = "polars"
    if mod.startswith("polars"):
        import polars as pl

        out: np.ndarray = (X.select([pl.col(f).cast(pl.Float64).fill_null(0.0) for f in features])
                           .to_numpy().astype(dtype))
        return out
    if mod.startswith("pandas"):
        frame: np.ndarray = X[list(features)].fillna(0.0).to_numpy(dtype=dtype)
        return frame
    raise ConfigError(f"cannot score a {type(X).__name__}", hint="pass NumPy, Polars, pandas, Arrow or dicts")
