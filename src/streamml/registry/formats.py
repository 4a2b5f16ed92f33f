"""Artifact formats: ONNX (the default, portable) and signed pickles (River and other Python).

Every ONNX model streamml writes has the same contract, whatever it was trained with:
one input ``input`` (float32, shape ``[N, n_features]``, columns in the order of the
descriptor's ``input_schema``) and an output ``score`` (float32, shape ``[N]``), where a
higher score means "more positive" — the probability of the positive class for a
classifier, the anomaly score for IsolationForest (its negated decision function) and for
an autoencoder (mean squared reconstruction error), the prediction for a regressor. The
converter's own outputs (``label``, ``probabilities``...) are kept beside it.

Conversion is made deterministic (fixed graph name, no doc strings, deterministic
serialisation), so the same fitted model always gives the same bytes and SHA-256.

``pickle`` artifacts hold ``{"model", "features", "task"}``; they are loaded only through
:mod:`streamml.registry.signing` (signed descriptor, verified hash, restricted unpickler).
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from streamml.errors import ConfigError, IntegrityError, ModelError

__all__ = ["Artifact", "LoadedModel", "export_model", "load_artifact", "as_matrix", "ONNX_OPSET", "FORMATS"]

ONNX_OPSET = {"": 17, "ai.onnx.ml": 3}
FORMATS = ("onnx", "pickle")


@dataclass(frozen=True)
class Artifact:
    """Serialised model bytes plus what a descriptor needs to know about them."""

    data: bytes
    format: str
    task: str
    input_schema: list[dict[str, Any]]
    output_schema: list[dict[str, Any]] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def size(self) -> int:
        return len(self.data)


def _final(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    if isinstance(steps, list) and steps:
        return steps[-1][1]  # scikit-learn Pipeline
    if isinstance(steps, dict) and steps:
        return list(steps.values())[-1]  # River Pipeline
    return model


def infer_task(model: Any) -> str:
    """``classifier``, ``anomaly`` or ``regressor`` for a fitted model."""
    if hasattr(model, "task"):
        return str(model.task)
    final = _final(model)
    if hasattr(final, "score_one"):
        return "anomaly"
    if hasattr(final, "predict_proba_one"):
        return "classifier"
    if not _is_sklearn(final):
        return "classifier"
    from sklearn.base import is_classifier, is_regressor
    from sklearn.ensemble import IsolationForest

    if isinstance(final, IsolationForest):
        return "anomaly"
    if is_classifier(final):
        return "classifier"
    if is_regressor(final):
        return "regressor"
    return "classifier"


def _is_sklearn(model: Any) -> bool:
    return type(model).__module__.startswith("sklearn.")


def export_model(model: Any, features: Sequence[str], *, format: str | None = None,
                 task: str | None = None) -> Artifact:
    """Serialise a fitted model: ONNX when it can be (scikit-learn, or any object with a
    ``to_onnx(n_features)`` method), else a pickle (River and other Python models)."""
    features = list(features)
    task = task or infer_task(model)
    schema = [{"name": f, "type": "float32"} for f in features]
    fmt = format or ("onnx" if (_is_sklearn(model) or hasattr(model, "to_onnx")) else "pickle")
    if fmt == "onnx":
        onx, outputs = _to_onnx(model, len(features), task)
        return Artifact(_canonical_bytes(onx), "onnx", task, schema, outputs)
    if fmt == "pickle":
        data = pickle.dumps({"streamml": 1, "model": model, "features": features, "task": task}, protocol=5)
        return Artifact(data, "pickle", task, schema, [{"name": "score", "type": "float64"}])
    raise ConfigError(f"unknown model format {fmt!r}", hint="use one of " + ", ".join(FORMATS))


def _canonical_bytes(onx: Any) -> bytes:
    onx.graph.name = "streamml"
    onx.doc_string = ""
    onx.graph.doc_string = ""
    for n in onx.graph.node:
        n.doc_string = ""
    return onx.SerializeToString(deterministic=True)


def _to_onnx(model: Any, n_features: int, task: str) -> tuple[Any, list[dict[str, Any]]]:
    from onnx import TensorProto, helper

    if hasattr(model, "to_onnx"):
        onx = model.to_onnx(n_features)
        return onx, [{"name": o.name, "type": "float32"} for o in onx.graph.output]
    from sklearn.ensemble import IsolationForest

    if type(model) is IsolationForest:
        from streamml.registry.onnx_iforest import iforest_to_onnx

        onx = iforest_to_onnx(model, n_features)
        return onx, [{"name": "score", "type": "float32", "meaning": "anomaly score (higher = more anomalous)"},
                     {"name": "label", "type": "int64", "meaning": "-1 anomaly, 1 normal"}]
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    final = _final(model)
    options = {type(final): {"zipmap": False}} if task == "classifier" else None
    try:
        onx = convert_sklearn(model, initial_types=[("input", FloatTensorType([None, n_features]))],
                              target_opset=dict(ONNX_OPSET), options=options)
    except Exception as exc:  # skl2onnx raises many types for unsupported models
        raise ModelError(f"cannot convert {type(model).__name__} to ONNX: {exc}",
                         hint="pass format='pickle' (signed) or register a skl2onnx converter") from None
    g = onx.graph
    names = [o.name for o in g.output]
    outputs = [{"name": n, "type": "tensor"} for n in names]
    if task == "classifier":
        classes = [c.item() if hasattr(c, "item") else c for c in getattr(final, "classes_", [0, 1])]
        g.initializer.append(helper.make_tensor("sm_positive", TensorProto.INT64, [], [len(classes) - 1]))
        g.node.append(helper.make_node("Gather", ["probabilities", "sm_positive"], ["score"], axis=1,
                                       name="sm_score"))
        score = {"name": "score", "type": "float32", "meaning": f"P(class={classes[-1]!r})"}
    else:
        src = "scores" if task == "anomaly" else names[-1]
        g.initializer.append(helper.make_tensor("sm_flat", TensorProto.INT64, [1], [-1]))
        g.node.append(helper.make_node("Reshape", [src, "sm_flat"], ["sm_score_flat"], name="sm_flatten"))
        if task == "anomaly":
            g.node.append(helper.make_node("Neg", ["sm_score_flat"], ["score"], name="sm_score"))
            score = {"name": "score", "type": "float32", "meaning": "anomaly score (higher = more anomalous)"}
        else:
            g.node.append(helper.make_node("Identity", ["sm_score_flat"], ["score"], name="sm_score"))
            score = {"name": "score", "type": "float32", "meaning": "prediction"}
    g.output.append(helper.make_tensor_value_info("score", TensorProto.FLOAT, [None]))
    return onx, [score, *outputs]


def as_matrix(X: Any, features: Sequence[str], dtype: Any = np.float32) -> np.ndarray:
    """Rows of ``X`` (NumPy, Polars, pandas, Arrow, or a list of dicts) as a feature matrix."""
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

        return X.select([pl.col(f).cast(pl.Float64).fill_null(0.0) for f in features]).to_numpy().astype(dtype)
    if mod.startswith("pandas"):
        return X[list(features)].fillna(0.0).to_numpy(dtype=dtype)
    raise ConfigError(f"cannot score a {type(X).__name__}", hint="pass NumPy, Polars, pandas, Arrow or dicts")


class LoadedModel:
    """A verified, loaded model: ``score(X)`` gives one float per row (higher = more positive)."""

    def __init__(self, descriptor: Any, data: bytes, *, allowed_modules: Sequence[str] | None = None,
                 signature_verified: bool = False) -> None:
        self.descriptor = descriptor
        self.features: list[str] = [c["name"] for c in descriptor.input_schema]
        self.format = descriptor.format
        self.task = descriptor.task
        if self.format == "onnx":
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            try:
                self.session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
            except Exception as exc:
                raise IntegrityError(f"{descriptor.ref}: the ONNX artifact cannot be loaded: {exc}") from None
            self.model: Any = self.session
        elif self.format == "pickle":
            from streamml.registry.signing import ALLOWED_MODULES, restricted_loads

            if not signature_verified:
                raise IntegrityError(f"{descriptor.ref}: refusing to unpickle an artifact whose signature was not "
                                     "verified", hint="load pickled models through Registry.load()")
            obj = restricted_loads(data, allowed_modules or ALLOWED_MODULES)
            if not isinstance(obj, dict) or "model" not in obj:
                raise IntegrityError(f"{descriptor.ref}: not a streamml pickle artifact")
            self.model = obj["model"]
        else:
            raise ModelError(f"{descriptor.ref}: unknown format {self.format!r}")

    def __repr__(self) -> str:
        return f"LoadedModel({self.descriptor.ref}, format={self.format}, task={self.task})"

    def score(self, X: Any) -> np.ndarray:
        """Scores for the rows of ``X`` (NumPy in feature order, Polars/pandas/Arrow, or dicts)."""
        if self.format == "onnx":
            m = as_matrix(X, self.features, np.float32)
            if m.shape[0] == 0:
                return np.zeros(0, dtype=np.float64)
            return np.asarray(self.session.run(["score"], {"input": m})[0], dtype=np.float64).reshape(-1)
        rows = X if isinstance(X, list) and (not X or isinstance(X[0], dict)) else \
            [dict(zip(self.features, map(float, r))) for r in as_matrix(X, self.features, np.float64)]
        return np.array([score_one(self.model, x) for x in rows], dtype=np.float64)


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


def load_artifact(descriptor: Any, data: bytes, **kw: Any) -> LoadedModel:
    """Check size and SHA-256 against the descriptor, then load (signature checks are the registry's)."""
    verify_bytes(descriptor, data)
    return LoadedModel(descriptor, data, **kw)


def verify_bytes(descriptor: Any, data: bytes) -> None:
    if len(data) != descriptor.size:
        raise IntegrityError(f"{descriptor.ref}: artifact is {len(data)} bytes, the descriptor says {descriptor.size}",
                             hint="the artifact is truncated or was replaced; republish the model")
    digest = hashlib.sha256(data).hexdigest()
    if digest != descriptor.sha256:
        raise IntegrityError(f"{descriptor.ref}: artifact SHA-256 {digest[:16]}... does not match the descriptor's "
                             f"{descriptor.sha256[:16]}...",
                             hint="the artifact was corrupted or tampered with; it was not loaded")
