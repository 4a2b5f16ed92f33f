"""Spark ML models into the registry: through ONNX when a converter is installed, else refused with the reason.

The registry serves ONNX (and signed pickles of Python models). A Spark ML ``PipelineModel``
is a JVM object: it cannot be pickled into a Python scorer, and the only Spark ML -> ONNX
converter is ``onnxmltools.convert_sparkml``. Without ``onnxmltools`` a Spark ML model is
refused with that reason; train with scikit-learn on :meth:`SparkDataset.collect` instead (the
same rows), which exports through the one export path.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Sequence

from streamml.errors import ModelError
from streamml.registry.descriptor import Descriptor

__all__ = ["publish_spark_ml", "spark_ml_to_onnx"]


def spark_ml_to_onnx(model: Any, features: Sequence[str], spark: Any) -> Any:
    """A Spark ML model as an ``onnx.ModelProto``; raises :class:`ModelError` when no converter is installed."""
    if importlib.util.find_spec("onnxmltools") is None:
        raise ModelError(f"cannot publish the Spark ML model {type(model).__name__}: the registry serves ONNX, and "
                         "converting Spark ML to ONNX needs onnxmltools (convert_sparkml), which is not installed",
                         hint="pip install onnxmltools, or fit scikit-learn on SparkDataset.collect() "
                              "(the same rows) and publish that")
    from onnxmltools import convert_sparkml  # pragma: no cover - not installed where the tests run
    from onnxmltools.convert.common.data_types import FloatTensorType  # pragma: no cover

    return convert_sparkml(model, "streamml", [("input", FloatTensorType([None, len(features)]))],
                           spark_session=spark)  # pragma: no cover


class _Converted:
    """A converted graph, for :func:`~streamml.registry.formats.export_model` (``to_onnx``)."""

    task = "classifier"

    def __init__(self, onx: Any) -> None:
        self.onx = onx

    def to_onnx(self, n_features: int) -> Any:
        return self.onx


def publish_spark_ml(registry: Any, model: Any, *, name: str, features: Sequence[str], spark: Any,
                     manifest: dict[str, Any] | None = None, stage: str = "candidate",
                     metrics: dict[str, Any] | None = None) -> Descriptor:
    """Publish a fitted Spark ML model (see the module docstring), its training manifest beside it."""
    onx = spark_ml_to_onnx(model, features, spark)
    d: Descriptor = registry.publish(_Converted(onx), name=name, features=list(features), manifest=manifest,
                                     stage=stage, metrics=metrics, trainer=f"spark-ml:{type(model).__name__}")
    return d
