"""Artifact formats and the ONE export path: ONNX (the default, portable) and signed pickles.

:func:`export_model` is how every part of streamml turns a fitted model into artifact
bytes (training jobs, ``Registry.publish``, the serving fixtures' ``sklearn_to_onnx``);
:func:`load_artifact` checks the bytes against a descriptor and returns the
:class:`~streamml.registry.base.LoadedModel` (see :mod:`streamml.registry.models`).

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

from streamml.errors import ConfigError, IntegrityError, ModelError
from streamml.registry.base import LoadedModel, as_matrix
from streamml.registry.models import load_model, score_one

__all__ = ["Artifact", "export_model", "load_artifact", "verify_bytes", "infer_task", "as_matrix", "score_one",
           "ONNX_OPSET", "FORMATS"]

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
        """Hex SHA-256 of ``data``."""
        return hashlib.sha256(self.data).hexdigest()

    @property
    def size(self) -> int:
        """Length of ``data`` in bytes."""
        return len(self.data)


def _final(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    if isinstance(steps, list) and steps:
        return steps[-1][1]  # scikit-learn Pipeline
    if isinstance(steps, dict) and steps:
        return list(steps.values())[-1]  # River Pipeline
    return model


def infer_task(model: Any) -> str:
    """``classifier``, ``anomaly`` or ``regressor`` for a fitted model.

    >>> from sklearn.ensemble import IsolationForest
    >>> infer_task(IsolationForest()), infer_task(object())
    ('anomaly', 'classifier')
    """
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
                 task: str | None = None, opset: int | None = None) -> Artifact:
    """Serialise a fitted model: the one export path of streamml.

    Parameters
    ----------
    model : object
        A fitted model: scikit-learn (estimator or Pipeline), any object with a
        ``to_onnx(n_features)`` method returning an ``onnx.ModelProto`` (e.g.
        :class:`~streamml.train.Autoencoder`), or a Python model (River...).
    features : sequence of str
        The input columns, in the order the model was trained on.
    format : {"onnx", "pickle"}, optional
        Default: ONNX for scikit-learn and ``to_onnx`` models, else a pickle.
    task : {"classifier", "anomaly", "regressor"}, optional
        Default: :func:`infer_task`.
    opset : int, optional
        The default-domain ONNX opset (default ``ONNX_OPSET[""]``; converted models only).

    Returns
    -------
    Artifact
        Deterministic bytes (same fit, same bytes) and the schemas a descriptor records.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LinearRegression
    >>> art = export_model(LinearRegression().fit(np.eye(2), [0.0, 1.0]), ["a", "b"])
    >>> art.format, art.task, [o["name"] for o in art.output_schema][:1]
    ('onnx', 'regressor', ['score'])
    """
    features = list(features)
    task = task or infer_task(model)
    schema = [{"name": f, "type": "float32"} for f in features]
    fmt = format or ("onnx" if (_is_sklearn(model) or hasattr(model, "to_onnx")) else "pickle")
    if fmt == "onnx":
        onx, outputs = _to_onnx(model, len(features), task, opset)
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
    return bytes(onx.SerializeToString(deterministic=True))


def _elem_type(value_info: Any) -> str:
    """``"float32"``, ``"int64"``... : the element type an ONNX graph output declares."""
    from onnx import helper

    dtype = helper.tensor_dtype_to_np_dtype(value_info.type.tensor_type.elem_type)
    return str(dtype)


def _to_onnx(model: Any, n_features: int, task: str, opset: int | None = None) -> tuple[Any, list[dict[str, Any]]]:
    from onnx import TensorProto, helper

    if hasattr(model, "to_onnx"):
        onx = model.to_onnx(n_features)
        return onx, [{"name": o.name, "type": _elem_type(o)} for o in onx.graph.output]
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
                              target_opset={**ONNX_OPSET, **({"": opset} if opset else {})}, options=options)
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


def load_artifact(descriptor: Any, data: bytes, **kw: Any) -> LoadedModel:
    """Check size and SHA-256 against the descriptor, then load (signature checks are the registry's).

    ``kw`` goes to :func:`~streamml.registry.models.load_model` (``allowed_modules``,
    ``signature_verified``).
    """
    verify_bytes(descriptor, data)
    return load_model(descriptor, data, **kw)


def verify_bytes(descriptor: Any, data: bytes) -> None:
    """Raise :class:`IntegrityError` unless ``data`` has the descriptor's size and SHA-256."""
    if len(data) != descriptor.size:
        raise IntegrityError(f"{descriptor.ref}: artifact is {len(data)} bytes, the descriptor says {descriptor.size}",
                             hint="the artifact is truncated or was replaced; republish the model")
    digest = hashlib.sha256(data).hexdigest()
    if digest != descriptor.sha256:
        raise IntegrityError(f"{descriptor.ref}: artifact SHA-256 {digest[:16]}... does not match the descriptor's "
                             f"{descriptor.sha256[:16]}...",
                             hint="the artifact was corrupted or tampered with; it was not loaded")
