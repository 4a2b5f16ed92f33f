"""Scoring in the stream: micro-batched inference, hot model swap, serving strategies, HTTP.

``Scorer`` runs a :class:`Strategy` over the models a :class:`ModelSource` offers
(``RegistrySource`` for the models topic, ``MemorySource`` in memory); ``create_app`` serves
the same loaded models over HTTP. ``streamml serve`` is the command-line front end.

>>> from streamml.serve import Scorer, ServeOptions, Single, Role
>>> Single([Role("fraud")]).primary
Role(name='fraud', stage='production')
"""

from streamml.serve.base import Candidate, Constant, LoadedModel, MemorySource, ModelRef, ModelSource, Scores, Slow
from streamml.serve.features import FeatureMatrix, to_matrix
from streamml.serve.onnxmodel import OnnxModel, sklearn_to_onnx
from streamml.serve.quality import LiveQuality
from streamml.serve.registry_source import RegistrySource
from streamml.serve.scorer import MODES, Scorer, ScorerStats, ServeOptions
from streamml.serve.strategies import (
    STRATEGIES,
    Batch,
    Canary,
    Consensus,
    Decision,
    QualityBased,
    Shadow,
    Single,
    Speculative,
    Strategy,
)
from streamml.serve.swap import ModelHost, ModelSlot, ModelWatcher, Role, SwapEvent, verify

__all__ = [
    "Scorer", "ServeOptions", "ScorerStats", "MODES",
    "Strategy", "Single", "Shadow", "Canary", "Speculative", "Consensus", "QualityBased", "STRATEGIES",
    "Batch", "Decision", "Role", "ModelHost", "ModelSlot", "ModelWatcher", "SwapEvent", "verify",
    "LoadedModel", "ModelSource", "ModelRef", "Candidate", "MemorySource", "Scores", "Constant", "Slow",
    "OnnxModel", "sklearn_to_onnx", "LiveQuality", "FeatureMatrix", "to_matrix", "RegistrySource",
    "create_app", "serve_http",
]


def __getattr__(name: str) -> object:
    """``create_app`` and ``serve_http`` import FastAPI, so they load on first use."""
    if name in ("create_app", "serve_http"):
        from streamml.serve import http

        return getattr(http, name)
    raise AttributeError(f"module 'streamml.serve' has no attribute {name!r}")
