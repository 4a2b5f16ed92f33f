"""ONNX models behind the :class:`~streamml.serve.base.LoadedModel` protocol (ONNX Runtime).

A batch is scored in one ``InferenceSession.run`` call. Two input layouts are understood:
one 2-D float tensor with a column per feature (what skl2onnx writes for a NumPy-trained
estimator), or one ``[N, 1]`` tensor per feature named after it. Outputs are read the way
scikit-learn converters write them: a ``label`` plus a ``probabilities`` matrix for
classifiers (the score is the positive-class probability), or one value per row for
regressors.

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

import hashlib
from typing import Any

import numpy as np

from streamml.errors import ModelError
from streamml.serve.base import Scores

__all__ = ["OnnxModel", "sklearn_to_onnx", "sha256"]


def sha256(data: bytes) -> str:
    """Hex SHA-256 of an artifact."""
    return hashlib.sha256(data).hexdigest()


def sklearn_to_onnx(estimator: Any, n_features: int, *, opset: int = 17) -> bytes:
    """Convert a fitted scikit-learn estimator taking ``n_features`` float columns to ONNX bytes."""
    from skl2onnx import to_onnx

    sample = np.zeros((1, n_features), dtype=np.float32)
    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "predict_proba") else None
    return to_onnx(estimator, sample, options=options, target_opset=opset).SerializeToString()


class OnnxModel:
    """One ONNX model version, ready to score float32 batches."""

    def __init__(self, session: Any, *, name: str, version: int, input_columns: tuple[str, ...],
                 threshold: float | None = None, sha: str = "") -> None:
        self.session = session
        self.name, self.version, self.sha256 = name, int(version), sha
        self.threshold = threshold
        inputs = session.get_inputs()
        if len(inputs) == 1 and len(inputs[0].shape or ()) == 2:
            width = inputs[0].shape[1]
            if not input_columns:
                raise ModelError(f"{name} v{version}: the model does not name its input columns",
                                 hint="publish it with an input schema")
            if isinstance(width, int) and width != len(input_columns):
                raise ModelError(f"{name} v{version}: the model takes {width} features but its schema "
                                 f"names {len(input_columns)}")
            self._single: str | None = inputs[0].name
            self._single_type = _np_type(inputs[0].type)
        else:
            self._single = None
            names = tuple(i.name for i in inputs)
            if input_columns and set(input_columns) != set(names):
                raise ModelError(f"{name} v{version}: model inputs {names} differ from its schema {input_columns}")
            input_columns = input_columns or names
            self._types = {i.name: _np_type(i.type) for i in inputs}
        self.input_columns = tuple(input_columns)
        outs = session.get_outputs()
        self._out_names = [o.name for o in outs]
        self._prob = next((i for i, o in enumerate(outs) if o.name in ("probabilities", "output_probability")), None)
        self._label = next((i for i, o in enumerate(outs) if o.name in ("label", "output_label")), None)
        self._score = next((i for i, o in enumerate(outs) if o.name == "score"), None)
        wanted = [i for i in (self._score, self._label) if i is not None]
        if self._score is None:
            wanted += [self._prob] if self._prob is not None else [0]
        self._fetch = [self._out_names[i] for i in wanted]
        self._pos = {i: k for k, i in enumerate(wanted)}

    @classmethod
    def from_bytes(cls, data: bytes, *, name: str, version: int, input_columns: tuple[str, ...] = (),
                   threshold: float | None = None, threads: int = 1) -> "OnnxModel":
        """Build a session from artifact bytes (raises :class:`ModelError` when ONNX Runtime cannot)."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise ModelError(f"{name} v{version}: ONNX Runtime cannot load the artifact: "
                             f"{str(exc).splitlines()[0][:200]}") from None
        return cls(session, name=name, version=version, input_columns=tuple(input_columns),
                   threshold=threshold, sha=sha256(data))

    def predict(self, x: np.ndarray) -> Scores:
        if self._single is not None:
            feeds = {self._single: np.ascontiguousarray(x, dtype=self._single_type)}
        else:
            feeds = {c: np.ascontiguousarray(x[:, [i]], dtype=self._types[c])
                     for i, c in enumerate(self.input_columns)}
        if x.shape[0] == 0:
            return Scores(np.zeros(0), None if self._label is None else np.zeros(0, dtype=np.int64))
        got = self.session.run(self._fetch, feeds)
        return self._scores({i: got[k] for i, k in self._pos.items()}, x.shape[0])

    def _scores(self, outs: dict[int, Any], n: int) -> Scores:
        label = None
        if self._label is not None:
            label = np.asarray(outs[self._label]).reshape(-1)
            label = label.astype(np.int64) if label.dtype.kind in "iub" else None
        if self._score is not None:
            score = np.asarray(outs[self._score], dtype=np.float64).reshape(-1)
        elif self._prob is not None:
            probs = outs[self._prob]
            if isinstance(probs, list):  # ZipMap output: a list of {class: probability}
                keys = sorted(probs[0]) if probs else [0, 1]
                probs = np.array([[d[k] for k in keys] for d in probs], dtype=np.float64)
            probs = np.asarray(probs, dtype=np.float64)
            score = probs[:, 1] if probs.ndim == 2 and probs.shape[1] >= 2 else probs.reshape(-1)
        else:
            score = np.asarray(outs[0], dtype=np.float64).reshape(n, -1)[:, 0]
        if self.threshold is not None:
            label = (score >= self.threshold).astype(np.int64)
        return Scores(np.ascontiguousarray(score, dtype=np.float64), label)

    def __repr__(self) -> str:
        return f"OnnxModel({self.name!r}, version={self.version}, inputs={list(self.input_columns)})"


def _np_type(onnx_type: str) -> Any:
    return {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
            "tensor(int32)": np.int32}.get(onnx_type, np.float32)
