"""ONNX models for serving: :class:`OnnxModel` and :func:`sklearn_to_onnx`.

Both live in the registry, which owns the model contract and the one export path;
this module keeps the serving names. :class:`OnnxModel` is
:class:`streamml.registry.models.OnnxModel` (what :meth:`Registry.load
<streamml.registry.Registry.load>` returns for an ONNX artifact), and
:func:`sklearn_to_onnx` is :func:`streamml.registry.formats.export_model` for a
scikit-learn estimator over unnamed columns.

>>> import numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> X = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.9], [0.9, 0.1]], dtype=np.float32)
>>> est = LogisticRegression().fit(X, [0, 1, 0, 1])
>>> m = OnnxModel.from_bytes(sklearn_to_onnx(est, 2), name="fraud", version=3, input_columns=("a", "b"))
>>> s = m.predict(X)
>>> s.label.tolist(), bool(np.allclose(s.score, est.predict_proba(X)[:, 1], atol=1e-5))
([0, 1, 0, 1], True)
"""

from __future__ import annotations

from typing import Any

from streamml.registry.formats import export_model
from streamml.registry.models import OnnxModel, sha256

__all__ = ["OnnxModel", "sklearn_to_onnx", "sha256"]


def sklearn_to_onnx(estimator: Any, n_features: int, *, opset: int = 17) -> bytes:
    """ONNX bytes of a fitted scikit-learn estimator taking ``n_features`` float columns.

    Parameters
    ----------
    estimator : sklearn estimator or Pipeline
        Fitted on a float matrix with ``n_features`` columns.
    n_features : int
        Number of input columns.
    opset : int
        The default-domain ONNX opset.

    Returns
    -------
    bytes
        The artifact :func:`~streamml.registry.formats.export_model` writes (outputs ``score``,
        plus the converter's ``label``/``probabilities`` or prediction).
    """
    return export_model(estimator, [f"x{i}" for i in range(n_features)], format="onnx", opset=opset).data
