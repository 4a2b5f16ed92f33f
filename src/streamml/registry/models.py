"""The :class:`~streamml.registry.base.LoadedModel` implementations for artifacts, and their loader.

* :class:`OnnxModel` — ONNX Runtime; a batch is scored in one ``InferenceSession.run``
  call. Two input layouts are understood: one 2-D float tensor with a column per feature
  (what :func:`~streamml.registry.formats.export_model` writes), or one ``[N, 1]`` tensor
  per feature named after it. The score is the graph's ``score`` output when it has one
  (every model streamml exports does), else the positive-class column of ``probabilities``,
  else the first output; ``label`` is read when the graph has one.
* :class:`PythonModel` — a Python model (River and other ``learn_one``/``predict_one``
  models) from a signed pickle, scored row by row through :func:`score_one`.

:func:`load_model` turns a descriptor and its (already verified) bytes into one of them.

>>> import numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> from streamml.registry.formats import export_model
>>> X = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.9], [0.9, 0.1]], dtype=np.float32)
>>> est = LogisticRegression().fit(X, [0, 1, 0, 1])
>>> m = OnnxModel.from_bytes(export_model(est, ["a", "b"]).data, name="fraud", version=3, input_columns=("a", "b"))
>>> s = m.predict(X)
>>> s.label.tolist(), bool(np.allclose(s.score, est.predict_proba(X)[:, 1], atol=1e-5))
([0, 1, 0, 1], True)
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np

from streamml.errors import IntegrityError, ModelError
from streamml.registry.base import Model, Scores, as_matrix

__all__ = ["OnnxModel", "PythonModel", "load_model", "onnx_session", "score_one", "sha256"]


def sha256(data: bytes) -> str:
    """Hex SHA-256 of an artifact.

    >>> sha256(b"")[:12]
    'e3b0c44298fc'
    """
    return hashlib.sha256(data).hexdigest()


def onnx_session(data: bytes, *, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session over ``data`` (raises :class:`ModelError` when it cannot load)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise ModelError(f"ONNX Runtime cannot load the artifact: {str(exc).splitlines()[0][:200]}") from None


class OnnxModel(Model):
    """One ONNX model version, ready to score float32 batches.

    Parameters
    ----------
    session : onnxruntime.InferenceSession
        The loaded graph.
    name, version : str, int
        Which model version this is.
    input_columns : tuple of str
        The feature columns in input order (required for a single 2-D input; else taken
        from the graph's input names).
    threshold : float, optional
        Labels become ``score >= threshold``.
    sha : str
        The artifact's SHA-256 (checked by the scorer against the descriptor).
    """

    format = "onnx"

    def __init__(self, session: Any, *, name: str, version: int, input_columns: tuple[str, ...],
                 threshold: float | None = None, sha: str = "", task: str = "classifier") -> None:
        self.session = session
        self.name, self.version, self.sha256 = name, int(version), sha
        self.threshold, self.task = threshold, task
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
                   threshold: float | None = None, threads: int = 1, task: str = "classifier") -> "OnnxModel":
        """Build a session from artifact bytes (raises :class:`ModelError` when ONNX Runtime cannot)."""
        try:
            session = onnx_session(data, threads=threads)
        except ModelError as exc:
            raise ModelError(f"{name} v{version}: {exc.message}") from None
        return cls(session, name=name, version=version, input_columns=tuple(input_columns),
                   threshold=threshold, sha=sha256(data), task=task)

    def predict(self, x: np.ndarray) -> Scores:
        if x.shape[0] == 0:
            return Scores(np.zeros(0), None if self._label is None else np.zeros(0, dtype=np.int64))
        if self._single is not None:
            feeds = {self._single: np.ascontiguousarray(x, dtype=self._single_type)}
        else:
            feeds = {c: np.ascontiguousarray(x[:, [i]], dtype=self._types[c])
                     for i, c in enumerate(self.input_columns)}
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
        return Scores(np.ascontiguousarray(score, dtype=np.float64), self._labels(score, label))

    def __repr__(self) -> str:
        return f"OnnxModel({self.name!r}, version={self.version}, inputs={list(self.input_columns)})"


def _np_type(onnx_type: str) -> Any:
    return {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
            "tensor(int32)": np.int32}.get(onnx_type, np.float32)


class PythonModel(Model):
    """A Python model (River-style ``predict_proba_one`` / ``score_one`` / ``predict_one``), row by row.

    >>> class Echo:
    ...     def predict_one(self, x):
    ...         return x["a"]
    >>> m = PythonModel(Echo(), name="echo", version=1, input_columns=("a",), threshold=1.5)
    >>> s = m.predict(np.array([[1.0], [2.0]], dtype=np.float32))
    >>> s.score.tolist(), s.label.tolist(), m.score([{"a": 4.0}]).tolist()
    ([1.0, 2.0], [0, 1], [4.0])
    """

    format = "pickle"

    def __init__(self, model: Any, *, name: str, version: int, input_columns: Sequence[str],
                 threshold: float | None = None, sha: str = "", task: str = "classifier") -> None:
        self.model = model
        self.name, self.version, self.input_columns = name, int(version), tuple(input_columns)
        self.threshold, self.sha256, self.task = threshold, sha, task

    def predict(self, x: np.ndarray) -> Scores:
        rows = [dict(zip(self.input_columns, map(float, r))) for r in np.asarray(x, dtype=np.float64)]
        score = np.array([score_one(self.model, r) for r in rows], dtype=np.float64)
        return Scores(score, self._labels(score))

    def score(self, X: Any) -> np.ndarray:
        """Scores of ``X``; dicts are given to the model as they are (River models take sparse rows)."""
        if isinstance(X, list) and (not X or isinstance(X[0], dict)):
            return np.array([score_one(self.model, r) for r in X], dtype=np.float64)
        return self.predict(as_matrix(X, self.input_columns, np.float64)).score

    def __repr__(self) -> str:
        return f"PythonModel({self.name!r}, version={self.version}, model={type(self.model).__name__})"


def score_one(model: Any, x: dict[str, Any]) -> float:
    """One row's score from a Python (River-style) model."""
    if hasattr(model, "predict_proba_one"):
        p = model.predict_proba_one(x)
        if not p:
            return 0.0
        for positive in (True, 1, "1"):
            if positive in p:
                return float(p[positive])
        return float(p[sorted(p, key=str)[-1]])
    if hasattr(model, "score_one"):
        return float(model.score_one(x))
    if hasattr(model, "predict_one"):
        return float(model.predict_one(x) or 0.0)
    if hasattr(model, "predict_proba"):
        return float(model.predict_proba(np.array([list(x.values())]))[0, -1])
    raise ModelError(f"cannot score with a {type(model).__name__}")


def load_model(descriptor: Any, data: bytes, *, allowed_modules: Sequence[str] | None = None,
               signature_verified: bool = False) -> OnnxModel | PythonModel:
    """The model of ``descriptor`` from its bytes (size, hash and signature are the caller's checks).

    Parameters
    ----------
    descriptor : Descriptor
        Name, version, format, task, ``input_schema`` (the input columns) and
        ``tags["threshold"]`` (optional) of the model.
    data : bytes
        The artifact.
    allowed_modules : sequence of str, optional
        Modules the restricted unpickler may load classes from (pickles only).
    signature_verified : bool
        Whether the caller verified the descriptor's signature; a pickle is refused without it.

    Returns
    -------
    OnnxModel or PythonModel
        A :class:`~streamml.registry.base.LoadedModel`; its ``descriptor`` attribute is ``descriptor``.
    """
    d = descriptor
    cols = tuple(c["name"] for c in d.input_schema)
    threshold = (getattr(d, "tags", None) or {}).get("threshold")
    common: dict[str, Any] = {"name": d.name, "version": int(d.version), "input_columns": cols,
                              "threshold": float(threshold) if threshold is not None else None,
                              "sha": sha256(data), "task": d.task}
    model: OnnxModel | PythonModel
    if d.format == "onnx":
        try:
            session = onnx_session(data)
        except ModelError as exc:
            raise IntegrityError(f"{d.ref}: the ONNX artifact cannot be loaded: {exc.message}") from None
        model = OnnxModel(session, **common)
    elif d.format == "pickle":
        from streamml.registry.signing import ALLOWED_MODULES, restricted_loads

        if not signature_verified:
            raise IntegrityError(f"{d.ref}: refusing to unpickle an artifact whose signature was not verified",
                                 hint="load pickled models through Registry.load()")
        obj = restricted_loads(data, allowed_modules or ALLOWED_MODULES)
        if not isinstance(obj, dict) or "model" not in obj:
            raise IntegrityError(f"{d.ref}: not a streamml pickle artifact")
        model = PythonModel(obj["model"], **common)
    else:
        raise ModelError(f"{d.ref}: unknown format {d.format!r}")
    model.descriptor = d
    return model
